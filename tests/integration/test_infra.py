"""The deployable stack (SPEC §7, docs/DEPLOY.md): `chalice package --merge-template infra/resources.yaml`.

Every stage is packaged into a temporary directory with this venv's chalice and the merged template
is checked: cfn-lint, the table, the queues, how the functions get their environment, the SQS event
source, API throttling, log retention, the IAM roles. The release build (`make package`, which runs
chalice on the Lambda runtime's Python) is checked too: lint-clean as it is, and its zip imports.
Last, the local run's resources (scripts/provision.py on moto) are the merged template's.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STAGES = ("dev", "prod")
LAMBDA_PYTHON = "3.13"  # the Makefile's default LAMBDA_PYTHON
# cfn-lint's Lambda runtime lifecycle rules: the only findings allowed on this venv's package, whose
# runtime is this venv's Python (3.11, which Lambda no longer creates). `make package` builds on
# LAMBDA_PYTHON and is linted with every rule (test_release_package_*).
RUNTIME_LIFECYCLE_RULES = {"E2531", "E2533", "W2531"}


def _env(stage: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BROKER_"))}
    env.update(AWS_DEFAULT_REGION="us-east-1", BROKER_LOGOUT_QUEUE_NAME=f"broker-{stage}-logout")
    return env


def _lint(path: Path) -> list[dict]:
    proc = subprocess.run([str(BIN / "cfn-lint"), "--format", "json", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 2, 4, 6, 8, 10, 12, 14), proc.stderr  # bit flags: error/warn/info
    return json.loads(proc.stdout or "[]")


def _transform(template: dict, path: Path) -> dict:
    """The template as CloudFormation runs it: SAM's transform applied (cfn-lint's copy of it)."""
    from cfnlint.template.transforms._sam import Transform

    saved = os.environ.get("AWS_DEFAULT_REGION")
    try:
        transform = Transform(str(path), json.loads(json.dumps(template)), "us-east-1")
        matches = transform.transform_template()
        assert not matches, matches
        return transform.template()
    finally:  # the transform sets AWS_DEFAULT_REGION for the process
        if saved is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = saved


def _of_type(template: dict, rtype: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == rtype}


def _sub(value, stage: str) -> str:
    assert isinstance(value, dict) and set(value) == {"Fn::Sub"}, value
    return value["Fn::Sub"].replace("${Stage}", stage)


class Packaged:
    def __init__(self, stage: str, out: Path):
        self.stage = stage
        self.out = out
        self.path = out / "sam.yaml"  # YAML, because the merge template is YAML (chalice 1.34)
        self.template = yaml.safe_load(self.path.read_text())
        self.deployed = _transform(self.template, self.path)
        self.config = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"][stage]

    @property
    def resources(self) -> dict:
        return self.template["Resources"]

    def functions(self) -> dict[str, dict]:
        return _of_type(self.deployed, "AWS::Lambda::Function")


def _package(stage: str, out: Path) -> Packaged:
    proc = subprocess.run(
        [str(BIN / "chalice"), "package", "--stage", stage, "--merge-template", "infra/resources.yaml",
         str(out)],
        cwd=ROOT, env=_env(stage), capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Could not install dependencies" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert (out / "deployment.zip").is_file()
    from scripts.fix_package import fix  # the same step `make package` runs

    fix(out / "sam.yaml")
    return Packaged(stage, out)


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> dict[str, Packaged]:
    return {stage: _package(stage, tmp_path_factory.mktemp(f"package-{stage}") / "out") for stage in STAGES}


@pytest.fixture(params=STAGES)
def packaged(request, packages) -> Packaged:
    return packages[request.param]


def test_merged_template_passes_cfn_lint(packaged):
    findings = _lint(packaged.path)
    other = [f for f in findings if f["Rule"]["Id"] not in RUNTIME_LIFECYCLE_RULES]
    assert not other, json.dumps(other, indent=1)
    for finding in findings:  # only ever about the runtime this venv's Python implies
        assert finding["Location"]["Path"][-1] == "Runtime", finding
    runtimes = {f["Properties"]["Runtime"] for f in packaged.functions().values()}
    assert runtimes == {"python%d.%d" % sys.version_info[:2]}


def test_table_is_on_demand_with_ttl_pitr_encryption_and_protection(packaged):
    table = packaged.resources["BrokerTable"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    props = table["Properties"]
    assert _sub(props["TableName"], packaged.stage) == f"broker-{packaged.stage}"
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert "ProvisionedThroughput" not in props
    assert props["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["DeletionProtectionEnabled"] is True
    assert len(_of_type(packaged.template, "AWS::DynamoDB::Table")) == 1


def test_logout_queue_and_dead_letter_queue(packaged):
    stage = packaged.stage
    queue = packaged.resources["LogoutQueue"]["Properties"]
    dlq = packaged.resources["LogoutDeadLetterQueue"]["Properties"]
    assert _sub(queue["QueueName"], stage) == f"broker-{stage}-logout"
    assert _sub(dlq["QueueName"], stage) == f"broker-{stage}-logout-dlq"
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["LogoutDeadLetterQueue", "Arn"]}
    assert 1 <= queue["RedrivePolicy"]["maxReceiveCount"] <= 10
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600  # the maximum: time to look into failures
    assert queue["SqsManagedSseEnabled"] is True and dlq["SqsManagedSseEnabled"] is True
    # Lambda refuses an SQS event source whose visibility timeout is below the function timeout;
    # AWS recommends six times it.
    worker = packaged.functions()["DeliverBackchannelLogout"]["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * worker["Timeout"]


def test_sqs_event_source_is_the_logout_queue(packaged):
    stage = packaged.stage
    mappings = _of_type(packaged.deployed, "AWS::Lambda::EventSourceMapping")
    assert len(mappings) == 1
    (mapping,) = mappings.values()
    props = mapping["Properties"]
    assert props["FunctionName"] == {"Ref": "DeliverBackchannelLogout"}
    arn = props["EventSourceArn"]["Fn::Sub"]
    queue_name = _sub(packaged.resources["LogoutQueue"]["Properties"]["QueueName"], stage)
    assert arn == "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:" + queue_name
    assert props["BatchSize"] == 1
    # the mapping needs the queue: the function it belongs to references it (Globals below)
    env = packaged.functions()["DeliverBackchannelLogout"]["Properties"]["Environment"]["Variables"]
    assert env["BROKER_LOGOUT_QUEUE_URL"] == {"Ref": "LogoutQueue"}


def test_functions_get_their_environment_from_the_template(packaged):
    stage = packaged.stage
    functions = packaged.functions()
    assert set(functions) == {"APIHandler", "DeliverBackchannelLogout"}
    table_name = _sub(packaged.resources["BrokerTable"]["Properties"]["TableName"], stage)
    admin_secret = _sub(packaged.resources["AdminClientSecret"]["Properties"]["Name"], stage)
    for name, function in functions.items():
        env = function["Properties"]["Environment"]["Variables"]
        assert env["BROKER_STAGE"] == stage, name
        assert env["BROKER_ALLOW_INSECURE_LOOPBACK"] == "false", name
        assert env["BROKER_LOGOUT_QUEUE_URL"] == {"Ref": "LogoutQueue"}, name
        assert env["BROKER_ADMIN_SECRET_NAME"] == {"Ref": "AdminClientSecret"}, name
        assert env["BROKER_ISSUER"] == {"Ref": "Issuer"}, name
        assert env["BROKER_ADMIN_CLIENT_ID"] == {"Ref": "AdminClientId"}, name
        # config.json's literal wins over the template's Ref (SAM merges Globals that way): equal
        assert env["BROKER_TABLE"] in ({"Ref": "BrokerTable"}, table_name), name
        prefix = env.get("BROKER_SECRET_PREFIX", f"broker/{stage}/")
        assert prefix == f"broker/{stage}/" and admin_secret.startswith(prefix), name
        assert "BROKER_LOGOUT_QUEUE_NAME" not in env  # package-time only (chalicelib/api/events.py)


def test_parameters(packaged):
    params = packaged.template["Parameters"]
    assert "Default" not in params["Stage"]  # deployers must say which stage: docs/DEPLOY.md
    assert re.fullmatch(params["Stage"]["AllowedPattern"], packaged.stage)
    issuer = params["Issuer"]["AllowedPattern"]
    for good in ("", "https://abc123.execute-api.eu-west-1.amazonaws.com/api/", "https://id.example.com/"):
        assert re.fullmatch(issuer, good), good
    for bad in ("http://id.example.com/", "https://id.example.com", "https://id.example.com/?x=1"):
        assert not re.fullmatch(issuer, bad), bad
    admin = params["AdminClientId"]["AllowedPattern"]
    assert re.fullmatch(admin, "") and re.fullmatch(admin, "a" * 32) and not re.fullmatch(admin, "short")


def test_api_throttling(packaged):
    stages = _of_type(packaged.deployed, "AWS::ApiGateway::Stage")
    assert len(stages) == 1
    (api_stage,) = stages.values()
    settings = api_stage["Properties"]["MethodSettings"]
    assert settings == [{"ResourcePath": "/*", "HttpMethod": "*",
                         "ThrottlingRateLimit": {"Ref": "ApiThrottlingRateLimit"},
                         "ThrottlingBurstLimit": {"Ref": "ApiThrottlingBurstLimit"}}]
    params = packaged.template["Parameters"]
    rate = int(params["ApiThrottlingRateLimit"]["Default"])
    burst = int(params["ApiThrottlingBurstLimit"]["Default"])
    assert 0 < rate <= burst <= 10000  # below the account-wide default of 10,000 rps



def _gateway_responses(deployed: dict) -> dict[str, dict]:
    """Gateway responses as CloudFormation creates them: SAM writes them into the REST API's
    OpenAPI body (x-amazon-apigateway-gateway-responses)."""
    (api,) = _of_type(deployed, "AWS::ApiGateway::RestApi").values()
    return api["Properties"]["Body"]["x-amazon-apigateway-gateway-responses"]


GATEWAY_STATUSES = {"MISSING_AUTHENTICATION_TOKEN": 404, "RESOURCE_NOT_FOUND": 404, "THROTTLED": 429,
                    "QUOTA_EXCEEDED": 429, "REQUEST_TOO_LARGE": 413, "UNSUPPORTED_MEDIA_TYPE": 415,
                    "INTEGRATION_TIMEOUT": 503, "INTEGRATION_FAILURE": 503, "DEFAULT_5XX": 503}


def test_gateway_answers_carry_the_broker_error_shapes(packaged):
    """API Gateway's own answers (unknown route, throttling, body too large, timeouts) read like
    the broker's: OAuth's error/error_description and Auth0's statusCode/message/errorCode, no
    cache, and never a bare 5xx (SPEC §8)."""
    responses = _gateway_responses(packaged.deployed)
    assert set(GATEWAY_STATUSES) | {"DEFAULT_4XX"} <= set(responses)
    for rtype, response in responses.items():
        template = response["responseTemplates"]["application/json"]
        # Fixed text only: API Gateway's own message for an unknown route quotes the request's
        # Authorization header (a bearer token), so no $context variable may reach the body.
        assert "$" not in template, rtype
        body = json.loads(template)
        assert body["error"] in ("invalid_request", "temporarily_unavailable"), rtype
        assert body["error_description"] == body["message"] and body["message"], rtype
        assert body["errorCode"], rtype
        assert response["responseParameters"]["gatewayresponse.header.Cache-Control"] == "'no-store'"
        if rtype in GATEWAY_STATUSES:
            assert int(response["statusCode"]) == GATEWAY_STATUSES[rtype] == body["statusCode"], rtype
        if GATEWAY_STATUSES.get(rtype) == 429:
            assert response["responseParameters"]["gatewayresponse.header.Retry-After"] == "'1'"


def test_log_retention(packaged):
    groups = _of_type(packaged.template, "AWS::Logs::LogGroup")
    functions = packaged.functions()
    retention = packaged.config["lambda_functions"]["deliver_backchannel_logout"]["log_retention_in_days"]
    by_function = {}
    for group in groups.values():
        name = group["Properties"]["LogGroupName"]["Fn::Sub"]
        match = re.fullmatch(r"/aws/lambda/\$\{(\w+)\}", name)
        assert match and match.group(1) in functions, name  # a group of a function that exists
        by_function[match.group(1)] = group["Properties"]["RetentionInDays"]
    assert by_function["DeliverBackchannelLogout"] == retention
    assert 14 <= retention <= 3653
    # The API handler too (chalice names its group after ${ApiHandler}: scripts/fix_package.py).
    assert by_function["APIHandler"] == packaged.config["log_retention_in_days"]


def test_lambda_memory_and_timeout(packaged):
    functions = packaged.functions()
    api = functions["APIHandler"]["Properties"]
    worker = functions["DeliverBackchannelLogout"]["Properties"]
    assert api["Timeout"] == packaged.config["lambda_timeout"] < 29  # API Gateway's integration limit
    assert api["MemorySize"] == worker["MemorySize"] == packaged.config["lambda_memory_size"]
    # a delivery is one 5 s POST plus a queue write; fail fast, the queue retries
    assert worker["Timeout"] == packaged.config["lambda_functions"]["deliver_backchannel_logout"][
        "lambda_timeout"]
    assert 5 < worker["Timeout"] <= 15


def test_roles_carry_exactly_the_stage_policy(packaged):
    policy = json.loads((ROOT / ".chalice" / f"policy-{packaged.stage}.json").read_text())
    roles = _of_type(packaged.template, "AWS::IAM::Role")
    assert set(roles) == {"ApiHandlerRole", "DeliverBackchannelLogoutRole"}
    for role in roles.values():
        props = role["Properties"]
        assert [p["PolicyDocument"] for p in props["Policies"]] == [policy]
        assert "ManagedPolicyArns" not in props
        (statement,) = props["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}
    for function in packaged.functions().values():
        assert function["Properties"]["Role"]["Fn::GetAtt"][0] in roles


def test_template_is_region_and_account_neutral(packaged):
    text = packaged.path.read_text()
    assert not re.search(r"\b\d{12}\b", text)
    assert "us-east-1" not in text


# -- operability (SPEC §9, docs/OPERATIONS.md): logs, tracing, alarms, dashboard ----------------------


def test_functions_write_lambdas_json_log_format(packaged):
    """chalicelib/logs.py leaves Lambda's formatter in place only when the format is JSON."""
    for name, function in packaged.functions().items():
        assert function["Properties"]["LoggingConfig"] == {
            "LogFormat": "JSON", "ApplicationLogLevel": "INFO", "SystemLogLevel": "INFO"}, name


def test_x_ray_traces_the_api_and_both_functions(packaged):
    assert packaged.config["xray"] is True
    for name, function in packaged.functions().items():
        assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}, name
    (api_stage,) = _of_type(packaged.deployed, "AWS::ApiGateway::Stage").values()
    assert api_stage["Properties"]["TracingEnabled"] is True


API_NAME = {"Fn::Sub": "identity-broker-${Stage}"}
ALARMS = {
    "LogoutDeadLetterAlarm": "logout-dead-letters",
    "ApiServerErrorRateAlarm": "api-5xx-rate",
    "DynamoDbThrottleAlarm": "dynamodb-throttles",
    "LoginFailureRatioAlarm": "login-failure-ratio",
    "ApiHandlerErrorsAlarm": "lambda-errors",
    "ApiHandlerThrottlesAlarm": "lambda-throttles",
    "LogoutWorkerErrorsAlarm": "lambda-errors",
    "LogoutWorkerThrottlesAlarm": "lambda-throttles",
}
FUNCTION_ALARMS = {"ApiHandlerErrorsAlarm", "ApiHandlerThrottlesAlarm", "LogoutWorkerErrorsAlarm",
                   "LogoutWorkerThrottlesAlarm"}


def _alarms(template: dict) -> dict[str, dict]:
    return {k: v["Properties"] for k, v in _of_type(template, "AWS::CloudWatch::Alarm").items()}


def _metrics_of(alarm: dict) -> list[tuple[str, str, dict, str, int]]:
    """(namespace, metric, dimensions, statistic, period) of each metric an alarm reads."""
    if "MetricName" in alarm:
        dims = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        return [(alarm["Namespace"], alarm["MetricName"], dims, alarm["Statistic"], alarm["Period"])]
    found = []
    for query in alarm["Metrics"]:
        if "MetricStat" in query:
            stat = query["MetricStat"]
            metric = stat["Metric"]
            dims = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
            found.append((metric["Namespace"], metric["MetricName"], dims, stat["Stat"], stat["Period"]))
    return found


def _headings_anchors(markdown: str) -> set[str]:
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE):
        anchors.add(re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-"))
    return anchors


def test_every_alarm_notifies_the_topic_and_says_where_its_runbook_is(packaged):
    alarms = _alarms(packaged.template)
    assert set(alarms) == set(ALARMS)
    anchors = _headings_anchors((ROOT / "docs" / "OPERATIONS.md").read_text())
    names = set()
    for logical_id, alarm in alarms.items():
        assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": "AlarmTopic"}], logical_id
        names.add(_sub(alarm["AlarmName"], packaged.stage))
        assert f"docs/OPERATIONS.md#{ALARMS[logical_id]}" in alarm["AlarmDescription"], logical_id
        assert ALARMS[logical_id] in anchors, f"docs/OPERATIONS.md has no section {ALARMS[logical_id]}"
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["TreatMissingData"] == "notBreaching" and alarm["EvaluationPeriods"] >= 1
        if "Metrics" in alarm:  # metric math: one result, every input used by it
            (result,) = [q for q in alarm["Metrics"] if q.get("ReturnData")]
            inputs = {q["Id"] for q in alarm["Metrics"] if "MetricStat" in q}
            assert inputs and all(re.search(rf"\b{i}\b", result["Expression"]) for i in inputs)
            assert not (set(alarm) & {"MetricName", "Namespace", "Statistic"})
    assert len(names) == len(alarms) and all(n.startswith(f"broker-{packaged.stage}-") for n in names)
    topic = packaged.resources["AlarmTopic"]
    assert topic["Type"] == "AWS::SNS::Topic"
    assert _sub(topic["Properties"]["TopicName"], packaged.stage) == f"broker-{packaged.stage}-alarms"


def test_the_alarm_email_is_optional(packaged):
    subscription = packaged.resources["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"] == {"TopicArn": {"Ref": "AlarmTopic"}, "Protocol": "email",
                                          "Endpoint": {"Ref": "AlarmEmail"}}
    assert packaged.template["Conditions"]["HasAlarmEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}
    params = packaged.template["Parameters"]
    assert params["AlarmEmail"]["Default"] == ""
    email = params["AlarmEmail"]["AllowedPattern"]
    for good in ("", "ops@example.com", "a.b+alarms@sub.example.org"):
        assert re.fullmatch(email, good), good
    for bad in ("ops", "ops@", "ops@example", "a b@example.com", "@example.com"):
        assert not re.fullmatch(email, bad), bad
    for name in ("Api5xxAlarmPercent", "LoginFailureAlarmPercent"):
        pattern, default = params[name]["AllowedPattern"], params[name]["Default"]
        assert re.fullmatch(pattern, default) and 1 <= int(default) <= 50
        assert re.fullmatch(pattern, "99") and not re.fullmatch(pattern, "0")
        assert not re.fullmatch(pattern, "100") and not re.fullmatch(pattern, "5%")


def test_dead_letter_alarm_watches_the_logout_dead_letter_queue(packaged):
    alarm = _alarms(packaged.template)["LogoutDeadLetterAlarm"]
    assert _metrics_of(alarm) == [("AWS/SQS", "ApproximateNumberOfMessagesVisible",
                                   {"QueueName": {"Fn::GetAtt": ["LogoutDeadLetterQueue", "QueueName"]}},
                                   "Maximum", 300)]
    assert alarm["Threshold"] == 0  # a single parked message is an application never told


def test_5xx_rate_alarm_reads_this_stages_api(packaged):
    (api,) = _of_type(packaged.deployed, "AWS::ApiGateway::RestApi").values()
    assert api["Properties"]["Name"] == API_NAME  # one name per stage: metrics keyed by ApiName
    alarm = _alarms(packaged.template)["ApiServerErrorRateAlarm"]
    dims = {"ApiName": API_NAME, "Stage": packaged.config["api_gateway_stage"]}
    assert {(ns, name, json.dumps(d, sort_keys=True)) for ns, name, d, stat, _ in _metrics_of(alarm)} == {
        ("AWS/ApiGateway", "5XXError", json.dumps(dims, sort_keys=True)),
        ("AWS/ApiGateway", "Count", json.dumps(dims, sort_keys=True))}
    assert {stat for *_, stat, _ in _metrics_of(alarm)} == {"Sum"}
    assert alarm["Threshold"] == {"Ref": "Api5xxAlarmPercent"}


def test_throttle_alarm_reads_the_table_and_each_of_its_indexes(packaged):
    table = packaged.resources["BrokerTable"]["Properties"]
    indexes = [i["IndexName"] for i in table["GlobalSecondaryIndexes"]]
    alarm = _alarms(packaged.template)["DynamoDbThrottleAlarm"]
    read = {(name, d.get("GlobalSecondaryIndexName")) for ns, name, d, *_ in _metrics_of(alarm)}
    want = {(m, i) for m in ("ReadThrottleEvents", "WriteThrottleEvents") for i in [None, *indexes]}
    assert read == want
    for ns, _, dims, stat, _ in _metrics_of(alarm):
        assert ns == "AWS/DynamoDB" and dims["TableName"] == {"Ref": "BrokerTable"} and stat == "Sum"
    assert alarm["Threshold"] == 0


def test_lambda_alarms_cover_errors_and_throttles_of_both_functions(packaged):
    alarms = _alarms(packaged.template)
    watched = set()
    for logical_id in FUNCTION_ALARMS:
        ((ns, metric, dims, stat, _),) = _metrics_of(alarms[logical_id])
        assert ns == "AWS/Lambda" and stat == "Sum" and alarms[logical_id]["Threshold"] == 0
        watched.add((dims["FunctionName"]["Ref"], metric))
    assert watched == {(f, m) for f in packaged.functions() for m in ("Errors", "Throttles")}


@pytest.fixture
def emf_names(monkeypatch, capsys) -> dict[str, set[tuple[str, ...]]]:
    """What chalicelib/metrics.py emits: {metric name: its dimension sets}, from sample events."""
    sys.path.insert(0, str(ROOT))
    from chalicelib import metrics

    monkeypatch.setenv("BROKER_STAGE", "dev")
    monkeypatch.setenv("BROKER_ISSUER", "https://id.example.com/")
    for type_ in ("s", "f", "seacft", "feacft", "sgtr", "fbcl"):
        metrics.for_event({"type": type_, "connection": "acme", "connection_id": "con_1",
                           "details": {}})
    metrics.for_request("/authorize", 200, 1.0)
    found: dict[str, set[tuple[str, ...]]] = {}
    for line in capsys.readouterr().out.splitlines():
        for directive in json.loads(line)["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "IdentityBroker"
            for metric in directive["Metrics"]:
                found.setdefault(metric["Name"], set()).update(tuple(d) for d in directive["Dimensions"])
    return found


def test_login_failure_ratio_alarm_reads_the_metrics_the_app_emits(packaged, emf_names):
    alarm = _alarms(packaged.template)["LoginFailureRatioAlarm"]
    read = _metrics_of(alarm)
    assert {name for _, name, *_ in read} == {"Logins", "LoginFailures"}
    for ns, name, dims, stat, period in read:
        assert ns == "IdentityBroker" and stat == "Sum" and period == 900
        assert dims == {"Stage": {"Ref": "Stage"}}
        assert tuple(dims) in emf_names[name]  # the app publishes it with exactly these dimensions
    assert alarm["Threshold"] == {"Ref": "LoginFailureAlarmPercent"}


def _dashboard(packaged: Packaged) -> dict:
    """The dashboard body as CloudFormation makes it, with placeholder values for its variables."""
    dashboard = packaged.resources["Dashboard"]["Properties"]
    assert _sub(dashboard["DashboardName"], packaged.stage) == f"broker-{packaged.stage}"
    text = dashboard["DashboardBody"]["Fn::Sub"]
    known = set(packaged.template["Resources"]) | set(packaged.template["Parameters"])
    for name in re.findall(r"\$\{([^}]+)\}", text):
        assert name.split(".")[0] in known or name.startswith("AWS::"), name
    return json.loads(re.sub(r"\$\{([^}]+)\}", lambda m: f"<{m.group(1)}>", text))


def test_dashboard_shows_the_alarms_and_every_metric_they_and_the_app_have(packaged, emf_names):
    body = _dashboard(packaged)
    widgets = body["widgets"]
    for widget in widgets:
        assert 0 <= widget["x"] and widget["x"] + widget["width"] <= 24 and widget["height"] > 0
    (alarm_widget,) = [w for w in widgets if w["type"] == "alarm"]
    assert set(alarm_widget["properties"]["alarms"]) == {f"<{a}.Arn>" for a in ALARMS}
    shown: set[tuple[str, str]] = set()
    searched: set[tuple[str, tuple[str, ...]]] = set()
    for widget in widgets:
        if widget["type"] != "metric":
            continue
        assert widget["properties"]["region"] == "<AWS::Region>"
        for row in widget["properties"]["metrics"]:
            if isinstance(row[0], dict) and "SEARCH(" in row[0]["expression"]:
                match = re.search(r"\{IdentityBroker,([^}]*)\} Stage=\"<Stage>\" MetricName=\"(\w+)\"",
                                  row[0]["expression"])
                assert match, row
                searched.add((match.group(2), tuple(match.group(1).split(","))))
            elif isinstance(row[0], str):
                shown.add((row[0], row[1]))
    # every alarm's metrics are on the dashboard
    for alarm in _alarms(packaged.template).values():
        for ns, name, *_ in _metrics_of(alarm):
            assert (ns, name) in shown, (ns, name)
    # and the app's metrics, by their dimensions: logins per connection, grants per type, ...
    for name, dims in searched:
        assert dims in emf_names[name], (name, dims)
    assert {name for name, _ in searched} >= {
        "Logins", "LoginFailures", "TokenGrants", "TokenGrantFailures", "GlobalTokenRevocations",
        "BackchannelLogouts", "Duration", "Http5xx"}
    assert ("LoginFailures", ("Stage", "Connection")) in searched


def test_quick_start_data_template_stands_alone(packages, tmp_path):
    """docs/DEPLOY.md's quick start deploys the template without what needs Chalice's functions."""
    sys.path.insert(0, str(ROOT))
    from scripts import data_template

    path = tmp_path / "data.yaml"
    assert data_template.main([str(path)]) == 0
    findings = _lint(path)
    assert not findings, json.dumps(findings, indent=1)
    data = yaml.safe_load(path.read_text())
    source = yaml.safe_load((ROOT / "infra" / "resources.yaml").read_text())
    dropped = set(source["Resources"]) - set(data["Resources"])
    assert dropped == FUNCTION_ALARMS | {"Dashboard"}
    assert {"BrokerTable", "LogoutQueue", "LogoutDeadLetterQueue", "AdminClientSecret",
            "AlarmTopic"} <= set(data["Resources"])
    assert data["Outputs"] == source["Outputs"]
    assert data_template.names_used({"Fn::Sub": ["${A.Arn} ${B} ${!C}", {"B": {"Ref": "D"}}]}) == {"A", "D"}


# -- the release build: `make package` --------------------------------------------------------------


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Packaged:
    out = tmp_path_factory.mktemp("release") / "out"
    # -o: never reinstall the dev venv from here (make test did that)
    proc = subprocess.run(["make", "-s", "-o", ".venv/.installed", "package", "STAGE=dev", f"OUT={out}"],
                          cwd=ROOT, env=_env("dev"), capture_output=True, text=True, timeout=1800)
    if proc.returncode and "make package: no Python" in proc.stderr:
        # Not on this machine: the template checks above still ran, with this venv's runtime.
        pytest.skip(proc.stderr.strip().splitlines()[0])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Could not install dependencies" not in proc.stdout + proc.stderr, proc.stdout
    return Packaged("dev", out)


def test_release_package_is_lint_clean_on_a_supported_runtime(release):
    assert _lint(release.path) == []
    runtimes = {f["Properties"]["Runtime"] for f in release.functions().values()}
    assert runtimes == {f"python{LAMBDA_PYTHON}"}


def test_release_package_imports_on_its_runtime(release, tmp_path):
    abi = "cpython-" + LAMBDA_PYTHON.replace(".", "")
    with zipfile.ZipFile(release.out / "deployment.zip") as zipped:
        names = zipped.namelist()
        assert any(n.startswith("pydantic_core/") and abi in n for n in names), "pydantic-core wheel"
        assert not any(n.endswith(".so") and "cpython-311" in n for n in names)
        assert not any(n.startswith(("boto3/", "botocore/")) for n in names)
        zipped.extractall(tmp_path)
    python = ROOT / ".venv" / f"lambda-python{LAMBDA_PYTHON}" / "bin" / "python"
    # -S -I: only the standard library and the package, as in Lambda (plus its boto3, not needed here)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import app, chalicelib.api.events as e, "
            "pydantic, joserfc; print(app.app.app_name, e.LOGOUT_QUEUE)")
    proc = subprocess.run([str(python), "-S", "-I", "-c", code, str(tmp_path)], capture_output=True,
                          text=True, timeout=120, env={"BROKER_LOGOUT_QUEUE_NAME": "broker-dev-logout"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["identity-broker", "broker-dev-logout"]


# -- the local run's resources are the template's ----------------------------------------------------


def _provision_module():
    sys.path.insert(0, str(ROOT))
    from scripts import provision

    return provision


@pytest.fixture
def moto_endpoint(monkeypatch):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _client(service: str, url: str):
    return boto3.session.Session().client(service, endpoint_url=url, region_name="us-east-1")


def test_local_run_creates_the_packaged_templates_resources(packages, moto_endpoint):
    packaged = packages["dev"]  # the merged template is the same for every stage but names
    provision = _provision_module()
    stage = "t" + secrets.token_hex(5)  # moto's state is shared by the whole test run
    url = moto_endpoint
    try:
        result = provision.provision(stage, url)
        # the tables provision() creates are exactly the packaged template's tables
        packaged_tables = {
            k: json.loads(json.dumps(v["Properties"]).replace("${Stage}", stage))
            for k, v in _of_type(packaged.template, "AWS::DynamoDB::Table").items()
        }
        assert set(provision.template_tables(stage)) == set(packaged_tables)
        dynamodb = _client("dynamodb", url)
        for logical_id, props in packaged_tables.items():
            name = props["TableName"]["Fn::Sub"]
            assert result["resources"][logical_id]["name"] == name
            table = dynamodb.describe_table(TableName=name)["Table"]
            assert table["KeySchema"] == props["KeySchema"]
            want = sorted(props["AttributeDefinitions"], key=str)
            assert sorted(table["AttributeDefinitions"], key=str) == want
            assert table["BillingModeSummary"]["BillingMode"] == props["BillingMode"]
            assert table["DeletionProtectionEnabled"] is props["DeletionProtectionEnabled"]
            assert (table["SSEDescription"]["Status"] == "ENABLED") is props["SSESpecification"]["SSEEnabled"]
            ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            assert ttl == {"TimeToLiveStatus": "ENABLED",
                           "AttributeName": props["TimeToLiveSpecification"]["AttributeName"]}
            backups = dynamodb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
            assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
        # the queues and the admin secret too
        sqs = _client("sqs", url)
        for logical_id in ("LogoutQueue", "LogoutDeadLetterQueue"):
            props = packaged.resources[logical_id]["Properties"]
            queue_url = sqs.get_queue_url(QueueName=_sub(props["QueueName"], stage))["QueueUrl"]
            attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
            for key in ("VisibilityTimeout", "MessageRetentionPeriod"):
                if key in props:
                    assert int(attrs[key]) == props[key], (logical_id, key)
            if "RedrivePolicy" in props:
                redrive = json.loads(attrs["RedrivePolicy"])
                assert int(redrive["maxReceiveCount"]) == props["RedrivePolicy"]["maxReceiveCount"]
                assert redrive["deadLetterTargetArn"].endswith(":" + f"broker-{stage}-logout-dlq")
        secret_name = _sub(packaged.resources["AdminClientSecret"]["Properties"]["Name"], stage)
        assert result["outputs"]["AdminClientSecretName"] == secret_name
        _client("secretsmanager", url).describe_secret(SecretId=secret_name)
    finally:
        _remove_stage(url, stage)


def _remove_stage(url: str, stage: str) -> None:
    dynamodb = _client("dynamodb", url)
    for table in dynamodb.list_tables()["TableNames"]:
        if table == f"broker-{stage}":
            dynamodb.update_table(TableName=table, DeletionProtectionEnabled=False)
            dynamodb.delete_table(TableName=table)
    sqs = _client("sqs", url)
    for queue_url in sqs.list_queues(QueueNamePrefix=f"broker-{stage}-").get("QueueUrls", []):
        sqs.delete_queue(QueueUrl=queue_url)
    sm = _client("secretsmanager", url)
    for secret in sm.list_secrets(IncludePlannedDeletion=True)["SecretList"]:
        if secret["Name"].startswith(f"broker/{stage}/"):
            sm.delete_secret(SecretId=secret["ARN"], ForceDeleteWithoutRecovery=True)
