"""scripts/provision.py creates locally exactly what infra/resources.yaml deploys (SPEC §1, §7)."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import yaml
from moto.server import ThreadedMotoServer

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "resources.yaml"


def _load_provision():
    spec = importlib.util.spec_from_file_location("broker_provision", ROOT / "scripts" / "provision.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


provision = _load_provision()


@pytest.fixture
def endpoint(monkeypatch):
    """moto's server on loopback. Its state is per process and shared with every other moto server
    in this pytest run (tests/conftest.py provisions stage ``local`` there), so these tests never
    reset it and work on their own stage (see ``stage``), removed again at the end."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        yield url
    finally:
        server.stop()


@pytest.fixture
def stage(endpoint):
    name = "t" + secrets.token_hex(5)
    yield name
    _remove_stage(endpoint, name)


def _remove_stage(url: str, stage: str) -> None:
    dynamodb = _client("dynamodb", url)
    for table in dynamodb.list_tables()["TableNames"]:
        if table == f"broker-{stage}" or table.startswith(f"broker-{stage}-"):
            dynamodb.update_table(TableName=table, DeletionProtectionEnabled=False)
            dynamodb.delete_table(TableName=table)
    sqs = _client("sqs", url)
    for queue_url in sqs.list_queues(QueueNamePrefix=f"broker-{stage}-").get("QueueUrls", []):
        sqs.delete_queue(QueueUrl=queue_url)
    sm = _client("secretsmanager", url)
    for secret in sm.list_secrets(IncludePlannedDeletion=True)["SecretList"]:
        if secret["Name"].startswith(f"broker/{stage}/"):
            sm.delete_secret(SecretId=secret["ARN"], ForceDeleteWithoutRecovery=True)


def _client(service: str, url: str):
    return boto3.session.Session().client(service, endpoint_url=url, region_name="us-east-1")


def _unwrap_sub(value, stage: str):
    """Resolve plain ``{"Fn::Sub": "...${Stage}..."}``; other intrinsics are left as they are."""
    if isinstance(value, dict):
        if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
            return value["Fn::Sub"].replace("${Stage}", stage)
        return {k: _unwrap_sub(v, stage) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap_sub(v, stage) for v in value]
    return value


def _template_resources(stage: str, rtype: str) -> dict:
    """Properties of the template's resources of one type, read independently of provision.py."""
    template = yaml.safe_load(TEMPLATE.read_text())
    return {
        logical_id: _unwrap_sub(res["Properties"], stage)
        for logical_id, res in template["Resources"].items()
        if res["Type"] == rtype
    }


def _by_name(items: list[dict]) -> list[dict]:
    return sorted(items, key=lambda d: d["AttributeName"])


def test_local_table_equals_template(endpoint, stage):
    result = provision.provision(stage, endpoint)
    tables = provision.template_tables(stage)
    assert set(tables) == {"BrokerTable"}
    dynamodb = _client("dynamodb", endpoint)
    for logical_id, props in tables.items():
        name = props["TableName"]
        assert name == f"broker-{stage}"
        assert result["resources"][logical_id]["name"] == name
        table = dynamodb.describe_table(TableName=name)["Table"]
        assert table["KeySchema"] == props["KeySchema"]
        made = {i["IndexName"]: (i["KeySchema"], i["Projection"]["ProjectionType"])
                for i in table.get("GlobalSecondaryIndexes", [])}
        assert made == {i["IndexName"]: (i["KeySchema"], i["Projection"]["ProjectionType"])
                        for i in props.get("GlobalSecondaryIndexes", [])}
        assert _by_name(table["AttributeDefinitions"]) == _by_name(props["AttributeDefinitions"])
        assert table["BillingModeSummary"]["BillingMode"] == props["BillingMode"]
        assert table.get("DeletionProtectionEnabled", False) == props.get("DeletionProtectionEnabled", False)
        sse_enabled = table.get("SSEDescription", {}).get("Status") == "ENABLED"
        assert sse_enabled == props.get("SSESpecification", {}).get("SSEEnabled", False)
        ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        want_ttl = "ENABLED" if props["TimeToLiveSpecification"]["Enabled"] else "DISABLED"
        assert ttl["TimeToLiveStatus"] == want_ttl
        assert ttl["AttributeName"] == props["TimeToLiveSpecification"]["AttributeName"]
        pitr = dynamodb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
        assert pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"


def test_template_is_what_the_store_expects():
    # chalicelib/store/dynamo.py: one table, string keys pk/sk, TTL attribute "ttl".
    (props,) = provision.template_tables("local").values()
    assert props["TableName"] == "broker-local"
    assert props["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert _by_name(props["AttributeDefinitions"]) == [
        {"AttributeName": name, "AttributeType": "S"}
        for name in ("email_key", "list_pk", "list_sk", "pk", "sk")
    ]
    # chalicelib/users.py: the two keys-only user indexes it queries.
    indexes = {i["IndexName"]: i for i in props["GlobalSecondaryIndexes"]}
    assert indexes["users"]["KeySchema"] == [{"AttributeName": "list_pk", "KeyType": "HASH"},
                                             {"AttributeName": "list_sk", "KeyType": "RANGE"}]
    assert indexes["user_email"]["KeySchema"] == [{"AttributeName": "email_key", "KeyType": "HASH"}]
    assert {i["Projection"]["ProjectionType"] for i in indexes.values()} == {"KEYS_ONLY"}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert provision.template_tables("prod")["BrokerTable"]["TableName"] == "broker-prod"
    queues = _template_resources("local", "AWS::SQS::Queue")
    assert queues["LogoutQueue"]["QueueName"] == "broker-local-logout"
    assert queues["LogoutDeadLetterQueue"]["QueueName"] == "broker-local-logout-dlq"
    secret = _template_resources("local", "AWS::SecretsManager::Secret")["AdminClientSecret"]
    assert secret["Name"] == "broker/local/admin-client-secret"


def test_queues_with_redrive_policy(endpoint, stage):
    result = provision.provision(stage, endpoint)
    sqs = _client("sqs", endpoint)
    queues = _template_resources(stage, "AWS::SQS::Queue")
    main = queues["LogoutQueue"]

    dlq_url = sqs.get_queue_url(QueueName=queues["LogoutDeadLetterQueue"]["QueueName"])["QueueUrl"]
    dlq_attrs = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]
    url = sqs.get_queue_url(QueueName=main["QueueName"])["QueueUrl"]
    assert result["outputs"]["LogoutQueueUrl"] == url
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq_attrs["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == main["RedrivePolicy"]["maxReceiveCount"] == 5
    assert int(attrs["VisibilityTimeout"]) == main["VisibilityTimeout"] == 60


def test_admin_secret_created_with_template_rules(endpoint, stage):
    result = provision.provision(stage, endpoint)
    name = result["outputs"]["AdminClientSecretName"]
    assert name == f"broker/{stage}/admin-client-secret"
    # the same names chalicelib.settings derives by default for that stage
    from chalicelib.settings import _load

    settings = _load({"BROKER_STAGE": stage, "BROKER_ALLOW_INSECURE_LOOPBACK": "true"})
    assert settings.admin_secret_name == name
    assert settings.table_name == result["outputs"]["BrokerTableName"]

    sm = _client("secretsmanager", endpoint)
    sm.describe_secret(SecretId=name)
    value = sm.get_secret_value(SecretId=name)["SecretString"]
    rules = _template_resources(stage, "AWS::SecretsManager::Secret")["AdminClientSecret"]
    assert len(value) == rules["GenerateSecretString"]["PasswordLength"] == 48
    assert value.isalnum()  # ExcludePunctuation


def test_provision_is_idempotent(endpoint, stage):
    first = provision.provision(stage, endpoint, secret_values={"AdminClientSecret": "given-value"})
    sm = _client("secretsmanager", endpoint)
    name = first["outputs"]["AdminClientSecretName"]
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "given-value"
    table = first["outputs"]["BrokerTableName"]
    dynamodb = _client("dynamodb", endpoint)
    key = {"pk": {"S": "a"}, "sk": {"S": "b"}}
    dynamodb.put_item(TableName=table, Item=key)

    second = provision.provision(stage, endpoint)
    assert second == first
    # existing resources are kept, with their contents
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "given-value"
    assert "Item" in dynamodb.get_item(TableName=table, Key=key)
    queues = _client("sqs", endpoint).list_queues(QueueNamePrefix=f"broker-{stage}-")["QueueUrls"]
    assert len(queues) == 2


def test_secret_scheduled_for_deletion_is_restored(endpoint, stage):
    first = provision.provision(stage, endpoint)
    sm = _client("secretsmanager", endpoint)
    name = first["outputs"]["AdminClientSecretName"]
    sm.delete_secret(SecretId=name, RecoveryWindowInDays=7)
    provision.provision(stage, endpoint)
    assert "DeletedDate" not in sm.describe_secret(SecretId=name)


def test_unknown_resource_type_fails_before_creating_anything(endpoint, stage, tmp_path):
    template = yaml.safe_load(TEMPLATE.read_text())
    template["Resources"]["Bucket"] = {"Type": "AWS::S3::Bucket", "Properties": {}}
    path = tmp_path / "resources.yaml"
    path.write_text(yaml.safe_dump(template))
    with pytest.raises(provision.ProvisionError, match="AWS::S3::Bucket"):
        provision.provision(stage, endpoint, template_path=path)
    assert f"broker-{stage}" not in _client("dynamodb", endpoint).list_tables()["TableNames"]


def test_unknown_property_fails(endpoint, stage, tmp_path):
    template = yaml.safe_load(TEMPLATE.read_text())
    template["Resources"]["BrokerTable"]["Properties"]["ContributorInsightsSpecification"] = {"Enabled": True}
    path = tmp_path / "resources.yaml"
    path.write_text(yaml.safe_dump(template))
    with pytest.raises(provision.ProvisionError, match="ContributorInsightsSpecification"):
        provision.provision(stage, endpoint, template_path=path)


def test_refuses_real_aws_without_endpoint(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with pytest.raises(provision.ProvisionError, match="refusing"):
        provision.provision("local", None)


def test_chalice_stages_match_template_and_policies():
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    assert config["app_name"] == "identity-broker"
    assert config["automatic_layer"] is False
    for stage in ("dev", "prod"):
        st = config["stages"][stage]
        env = st["environment_variables"]
        assert env["BROKER_TABLE"] == provision.template_tables(stage)["BrokerTable"]["TableName"]
        assert env["BROKER_ALLOW_INSECURE_LOOPBACK"] == "false"
        assert st["autogen_policy"] is False
        policy = json.loads((ROOT / ".chalice" / st["iam_policy_file"]).read_text())
        # X-Ray's actions name no resource: its one statement is on "*" (tests/unit/test_iam_policy.py)
        scoped = [s for s in policy["Statement"] if not s["Action"][0].startswith("xray:")]
        patterns = [r for s in scoped for r in s["Resource"]]

        def allowed(arn: str, patterns: list[str] = patterns) -> bool:
            return any(fnmatch.fnmatchcase(arn, pattern) for pattern in patterns)

        assert allowed(f"arn:aws:dynamodb:us-east-1:1:table/broker-{stage}")
        assert not allowed(f"arn:aws:dynamodb:us-east-1:1:table/broker-{stage}-other")
        for queue in _template_resources(stage, "AWS::SQS::Queue").values():
            assert allowed(f"arn:aws:sqs:us-east-1:1:{queue['QueueName']}")
        secret = _template_resources(stage, "AWS::SecretsManager::Secret")["AdminClientSecret"]
        assert allowed(f"arn:aws:secretsmanager:us-east-1:1:secret:{secret['Name']}-AbCdEf")
        assert not any(s["Action"] == "*" or "*" in s["Resource"] for s in scoped)


def test_cfn_lint_passes(tmp_path):
    """The template as the quick start deploys it on its own (scripts/data_template.py: without the
    alarms and dashboard that watch Chalice's functions; the merged template is linted by
    tests/integration/test_infra.py)."""
    exe = Path(sys.executable).parent / "cfn-lint"
    cfn_lint = str(exe) if exe.exists() else shutil.which("cfn-lint")
    assert cfn_lint, "cfn-lint is not installed (requirements-dev.txt)"
    data = tmp_path / "data.yaml"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "data_template.py"), str(data)], check=True,
                   timeout=60)
    proc = subprocess.run([cfn_lint, str(data)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_monitoring_is_left_out_of_the_local_stack(endpoint, stage):
    template = yaml.safe_load(TEMPLATE.read_text())
    cloud_only = {k for k, r in template["Resources"].items() if r["Type"] in provision.CLOUD_ONLY_TYPES}
    assert cloud_only and template.get("Conditions")  # alarms, topic, dashboard; the email condition
    result = provision.provision(stage, endpoint)
    assert not cloud_only & set(result["resources"])
    assert set(result["resources"]) == set(template["Resources"]) - cloud_only
