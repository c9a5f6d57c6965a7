"""Create the resources ``infra/resources.yaml`` defines, in an AWS endpoint (moto during ``make run``).

The template is the single source of truth: deployed stages get it through
``chalice package --merge-template infra/resources.yaml``; the local run gets it through this script,
which reads every property (key schema, attribute definitions, billing mode, TTL, queue attributes,
redrive policy, secret generation rules) from the template instead of keeping a second copy.

Only the small subset of CloudFormation the template uses is understood: ``Parameters``, ``Ref``,
``Fn::GetAtt``, ``Fn::Sub`` (and ``Fn::Join``), and the resource types in ``_HANDLERS``. Anything else
(another resource type, an unknown property, another intrinsic, conditions) fails loudly before a
single resource is created, so the local stack can never silently drift from the deployed one. The
monitoring (``CLOUD_ONLY_TYPES``: the SNS topic, the alarms, the dashboard, and the conditions only
they use) has no local counterpart and is left out.

Provisioning is idempotent: existing tables, queues, secrets and KMS keys are kept (a secret keeps its
value; a key is found again by its description, an alias pointed at it);
TTL, point-in-time recovery and queue attributes are converged to what the template says.

    python scripts/provision.py --stage local [--endpoint-url http://127.0.0.1:5000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets as _secrets
import string
import sys
from pathlib import Path
from typing import Any, Callable

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "infra" / "resources.yaml"
DEFAULT_REGION = "us-east-1"


class ProvisionError(Exception):
    """The template uses something this script does not understand, or the endpoint disagrees."""


_NO_VALUE = object()  # Ref AWS::NoValue: the property is dropped


# --------------------------------------------------------------------------------------------------
# Template loading and intrinsic resolution
# --------------------------------------------------------------------------------------------------


# Monitoring exists only in AWS (docs/OPERATIONS.md); it may watch resources Chalice generates.
CLOUD_ONLY_TYPES = frozenset({
    "AWS::SNS::Topic", "AWS::SNS::Subscription", "AWS::CloudWatch::Alarm", "AWS::CloudWatch::Dashboard",
})


def load_template(path: Path | str = TEMPLATE_PATH) -> dict:
    """The template as the local stack sees it: without the cloud-only resources."""
    with open(path, encoding="utf-8") as fh:
        template = yaml.safe_load(fh)
    if not isinstance(template, dict) or not isinstance(template.get("Resources"), dict):
        raise ProvisionError(f"{path}: not a CloudFormation template with a Resources mapping")
    template["Resources"] = {
        logical_id: resource for logical_id, resource in template["Resources"].items()
        if not (isinstance(resource, dict) and resource.get("Type") in CLOUD_ONLY_TYPES)
    }
    # Conditions serve the cloud-only resources; one used by anything created here still fails
    # (a resource's "Condition" key, Fn::If, an output's "Condition").
    template.pop("Conditions", None)
    return template


def _parameter_values(template: dict, given: dict[str, str]) -> dict[str, str]:
    values: dict[str, str] = {}
    declared = template.get("Parameters") or {}
    unknown = set(given) - set(declared)
    if unknown:
        raise ProvisionError(f"values given for undeclared parameters: {sorted(unknown)}")
    for name, spec in declared.items():
        spec = spec or {}
        if spec.get("Type", "String") != "String":
            raise ProvisionError(f"parameter {name}: only String parameters are supported")
        if name in given:
            value = str(given[name])
        elif "Default" in spec:
            value = str(spec["Default"])
        else:
            raise ProvisionError(f"parameter {name} has no value and no Default")
        pattern = spec.get("AllowedPattern")
        if pattern and not re.fullmatch(pattern, value):
            raise ProvisionError(f"parameter {name}={value!r} does not match {pattern}")
        allowed = spec.get("AllowedValues")
        if allowed and value not in [str(v) for v in allowed]:
            raise ProvisionError(f"parameter {name}={value!r} not in {allowed}")
        values[name] = value
    return values


_SUB_RE = re.compile(r"\$\{([^}]*)\}")


class _Resolver:
    """Evaluates Ref / Fn::GetAtt / Fn::Sub / Fn::Join against parameters and created resources."""

    def __init__(
        self, template: dict, parameters: dict[str, str], pseudo: Callable[[str], str] | None = None
    ):
        self.resources = template["Resources"]
        self.parameters = parameters
        self._pseudo = pseudo
        self.physical: dict[str, dict[str, Any]] = {}  # logical id -> {"Ref": ..., attr: ...}

    # -- dependencies (before anything is created) --------------------------------------------
    def dependencies(self, value: Any) -> set[str]:
        found: set[str] = set()
        self._walk_deps(value, found)
        return found

    def _walk_deps(self, value: Any, found: set[str]) -> None:
        if isinstance(value, list):
            for item in value:
                self._walk_deps(item, found)
            return
        if not isinstance(value, dict):
            return
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                if arg in self.resources:
                    found.add(arg)
                return
            if key == "Fn::GetAtt":
                found.add(self._getatt_target(arg)[0])
                return
            if key == "Fn::Sub":
                text, variables = self._sub_args(arg)
                self._walk_deps(variables, found)
                for name in _SUB_RE.findall(text):
                    if name.startswith("!") or name in variables:
                        continue
                    target = name.split(".", 1)[0]
                    if target in self.resources:
                        found.add(target)
                return
        for item in value.values():
            self._walk_deps(item, found)

    # -- evaluation --------------------------------------------------------------------------
    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Fn::GetAtt":
                return self._getatt(*self._getatt_target(arg))
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Join":
                if not (isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], list)):
                    raise ProvisionError(f"malformed Fn::Join: {arg!r}")
                return str(arg[0]).join(str(self.resolve(v)) for v in arg[1])
            if key.startswith("Fn::") or key == "Condition":
                raise ProvisionError(f"intrinsic {key} is not supported by the local provisioner")
        out = {}
        for k, v in value.items():
            resolved = self.resolve(v)
            if resolved is not _NO_VALUE:
                out[k] = resolved
        return out

    def _ref(self, name: Any) -> Any:
        if not isinstance(name, str):
            raise ProvisionError(f"malformed Ref: {name!r}")
        if name in self.parameters:
            return self.parameters[name]
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name.startswith("AWS::"):
            if self._pseudo is None:
                raise ProvisionError(f"pseudo parameter {name} is not available here")
            return self._pseudo(name)
        if name in self.resources:
            return self._getatt(name, "Ref")
        raise ProvisionError(f"Ref to unknown name {name!r}")

    def _getatt_target(self, arg: Any) -> tuple[str, str]:
        if isinstance(arg, str):
            arg = arg.split(".", 1)
        if not (isinstance(arg, list) and len(arg) == 2 and all(isinstance(a, str) for a in arg)):
            raise ProvisionError(f"malformed Fn::GetAtt: {arg!r}")
        if arg[0] not in self.resources:
            raise ProvisionError(f"Fn::GetAtt on unknown resource {arg[0]!r}")
        return arg[0], arg[1]

    def _getatt(self, logical_id: str, attribute: str) -> Any:
        attrs = self.physical.get(logical_id)
        if attrs is None:
            raise ProvisionError(f"{logical_id} is referenced before it exists")
        if attribute not in attrs or attrs[attribute] is None:
            raise ProvisionError(f"{logical_id} has no attribute {attribute!r} locally")
        return attrs[attribute]

    @staticmethod
    def _sub_args(arg: Any) -> tuple[str, dict]:
        if isinstance(arg, str):
            return arg, {}
        if isinstance(arg, list) and len(arg) == 2 and isinstance(arg[0], str) and isinstance(arg[1], dict):
            return arg[0], arg[1]
        raise ProvisionError(f"malformed Fn::Sub: {arg!r}")

    def _sub(self, arg: Any) -> str:
        text, variables = self._sub_args(arg)
        variables = {k: self.resolve(v) for k, v in variables.items()}

        def replace(match: re.Match) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                return str(self._getatt(*self._getatt_target(name)))
            return str(self._ref(name))

        return _SUB_RE.sub(replace, text)


# --------------------------------------------------------------------------------------------------
# Resource handlers
# --------------------------------------------------------------------------------------------------


class _Context:
    def __init__(self, endpoint_url: str | None, region: str, secret_values: dict[str, str]):
        self.endpoint_url = endpoint_url
        self.region = region
        self.secret_values = secret_values
        self._clients: dict[str, Any] = {}

    def client(self, service: str):
        if service not in self._clients:
            import boto3
            from botocore.config import Config

            self._clients[service] = boto3.session.Session().client(
                service,
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                config=Config(
                    connect_timeout=5, read_timeout=30, retries={"max_attempts": 5, "mode": "standard"}
                ),
            )
        return self._clients[service]


def _error_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def _check_properties(
    logical_id: str, rtype: str, props: dict, allowed: set[str], required: set[str]
) -> None:
    unknown = set(props) - allowed
    if unknown:
        raise ProvisionError(
            f"{logical_id} ({rtype}): properties {sorted(unknown)} are not supported by the local "
            "provisioner; teach scripts/provision.py about them"
        )
    missing = required - set(props)
    if missing:
        raise ProvisionError(f"{logical_id} ({rtype}): required properties missing: {sorted(missing)}")


# ---- AWS::DynamoDB::Table ------------------------------------------------------------------------

_TABLE_PROPS = {
    "TableName",
    "KeySchema",
    "AttributeDefinitions",
    "BillingMode",
    "ProvisionedThroughput",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "TimeToLiveSpecification",
    "PointInTimeRecoverySpecification",
    "SSESpecification",
    "StreamSpecification",
    "DeletionProtectionEnabled",
    "TableClass",
    "Tags",
}
_TABLE_REQUIRED = {"TableName", "KeySchema", "AttributeDefinitions"}


def _create_table_request(props: dict) -> dict:
    """The CreateTable request the template's properties describe (CloudFormation -> API shapes)."""
    request: dict[str, Any] = {
        "TableName": props["TableName"],
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": props.get("BillingMode", "PROVISIONED"),
    }
    if "ProvisionedThroughput" in props:
        request["ProvisionedThroughput"] = {k: int(v) for k, v in props["ProvisionedThroughput"].items()}
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "TableClass", "Tags"):
        if key in props:
            request[key] = props[key]
    if "SSESpecification" in props:
        sse = props["SSESpecification"]
        api_sse: dict[str, Any] = {"Enabled": bool(sse.get("SSEEnabled", False))}
        if "SSEType" in sse:
            api_sse["SSEType"] = sse["SSEType"]
        if "KMSMasterKeyId" in sse:
            api_sse["KMSMasterKeyId"] = sse["KMSMasterKeyId"]
        request["SSESpecification"] = api_sse
    if "StreamSpecification" in props:
        request["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": props["StreamSpecification"]["StreamViewType"],
        }
    if "DeletionProtectionEnabled" in props:
        request["DeletionProtectionEnabled"] = bool(props["DeletionProtectionEnabled"])
    return request


def _key_signature(key_schema: list, attribute_definitions: list) -> list[tuple[str, str, str]]:
    types = {a["AttributeName"]: a["AttributeType"] for a in attribute_definitions}
    return [(k["AttributeName"], k["KeyType"], types.get(k["AttributeName"], "?")) for k in key_schema]


def _dynamodb_table(ctx: _Context, logical_id: str, props: dict) -> dict:
    from botocore.exceptions import ClientError

    client = ctx.client("dynamodb")
    request = _create_table_request(props)
    name = request["TableName"]
    try:
        client.create_table(**request)
    except ClientError as exc:
        if _error_code(exc) != "ResourceInUseException":
            raise
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    table = client.describe_table(TableName=name)["Table"]
    want = _key_signature(request["KeySchema"], request["AttributeDefinitions"])
    have = _key_signature(table["KeySchema"], table.get("AttributeDefinitions", []))
    if want != have:
        raise ProvisionError(
            f"table {name} exists with key schema {have}, the template says {want}; delete it first"
        )

    ttl = props.get("TimeToLiveSpecification")
    if ttl:
        current = client.describe_time_to_live(TableName=name).get("TimeToLiveDescription", {})
        enabled = bool(ttl.get("Enabled", False))
        is_on = current.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
        if enabled != is_on or (enabled and current.get("AttributeName") != ttl["AttributeName"]):
            client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": enabled},
            )

    pitr = props.get("PointInTimeRecoverySpecification")
    if pitr and pitr.get("PointInTimeRecoveryEnabled"):
        spec: dict[str, Any] = {"PointInTimeRecoveryEnabled": True}
        if "RecoveryPeriodInDays" in pitr:
            spec["RecoveryPeriodInDays"] = int(pitr["RecoveryPeriodInDays"])
        client.update_continuous_backups(TableName=name, PointInTimeRecoverySpecification=spec)

    return {"Ref": name, "Arn": table["TableArn"], "StreamArn": table.get("LatestStreamArn"), "name": name}


# ---- AWS::SQS::Queue -----------------------------------------------------------------------------

_QUEUE_ATTRIBUTES = {
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "RedrivePolicy",
    "RedriveAllowPolicy",
    "SqsManagedSseEnabled",
    "DelaySeconds",
    "MaximumMessageSize",
    "ReceiveMessageWaitTimeSeconds",
    "FifoQueue",
    "ContentBasedDeduplication",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "DeduplicationScope",
    "FifoThroughputLimit",
}
_QUEUE_PROPS = _QUEUE_ATTRIBUTES | {"QueueName", "Tags"}
_QUEUE_CREATE_ONLY = {"FifoQueue"}


def _queue_attribute_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _sqs_queue(ctx: _Context, logical_id: str, props: dict) -> dict:
    from botocore.exceptions import ClientError

    client = ctx.client("sqs")
    name = props["QueueName"]
    attributes = {k: _queue_attribute_value(v) for k, v in props.items() if k in _QUEUE_ATTRIBUTES}
    try:
        url = client.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as exc:
        if _error_code(exc) not in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
            raise
        request: dict[str, Any] = {"QueueName": name, "Attributes": attributes}
        if props.get("Tags"):
            request["tags"] = {t["Key"]: str(t["Value"]) for t in props["Tags"]}
        url = client.create_queue(**request)["QueueUrl"]
    else:
        mutable = {k: v for k, v in attributes.items() if k not in _QUEUE_CREATE_ONLY}
        if mutable:
            client.set_queue_attributes(QueueUrl=url, Attributes=mutable)
    arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return {"Ref": url, "Arn": arn, "QueueName": name, "QueueUrl": url, "name": name, "url": url}


# ---- AWS::SecretsManager::Secret -----------------------------------------------------------------

_SECRET_PROPS = {"Name", "Description", "GenerateSecretString", "SecretString", "KmsKeyId", "Tags"}
_GENERATE_PROPS = {
    "PasswordLength",
    "ExcludeCharacters",
    "ExcludeLowercase",
    "ExcludeUppercase",
    "ExcludeNumbers",
    "ExcludePunctuation",
    "IncludeSpace",
    "RequireEachIncludedType",
    "SecretStringTemplate",
    "GenerateStringKey",
}
# Secrets Manager's punctuation set for GetRandomPassword / GenerateSecretString.
_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"


def generate_secret_string(spec: dict) -> str:
    """A value following CloudFormation's GenerateSecretString rules (defaults included)."""
    unknown = set(spec) - _GENERATE_PROPS
    if unknown:
        raise ProvisionError(f"GenerateSecretString: unsupported keys {sorted(unknown)}")
    length = int(spec.get("PasswordLength", 32))
    excluded = set(str(spec.get("ExcludeCharacters", "")))
    groups = []
    for flag, chars in (
        ("ExcludeLowercase", string.ascii_lowercase),
        ("ExcludeUppercase", string.ascii_uppercase),
        ("ExcludeNumbers", string.digits),
        ("ExcludePunctuation", _PUNCTUATION),
    ):
        if not spec.get(flag, False):
            group = "".join(c for c in chars if c not in excluded)
            if group:
                groups.append(group)
    if spec.get("IncludeSpace", False) and " " not in excluded:
        groups.append(" ")
    if not groups or length < 1:
        raise ProvisionError("GenerateSecretString: no characters left to generate from")
    alphabet = "".join(groups)
    require_each = spec.get("RequireEachIncludedType", True)
    if require_each and length < len(groups):
        raise ProvisionError("GenerateSecretString: PasswordLength too short for required types")
    while True:
        value = "".join(_secrets.choice(alphabet) for _ in range(length))
        if not require_each or all(any(c in g for c in value) for g in groups):
            break
    if "SecretStringTemplate" in spec or "GenerateStringKey" in spec:
        if "SecretStringTemplate" not in spec or "GenerateStringKey" not in spec:
            raise ProvisionError(
                "GenerateSecretString: SecretStringTemplate and GenerateStringKey go together"
            )
        document = json.loads(spec["SecretStringTemplate"])
        document[spec["GenerateStringKey"]] = value
        return json.dumps(document)
    return value


def _secret(ctx: _Context, logical_id: str, props: dict) -> dict:
    from botocore.exceptions import ClientError

    if ("SecretString" in props) == ("GenerateSecretString" in props):
        raise ProvisionError(f"{logical_id}: give exactly one of SecretString, GenerateSecretString")
    client = ctx.client("secretsmanager")
    name = props.get("Name")
    if not name:
        raise ProvisionError(f"{logical_id}: the local provisioner needs an explicit Name")
    try:
        described = client.describe_secret(SecretId=name)
    except ClientError as exc:
        if _error_code(exc) != "ResourceNotFoundException":
            raise
        value = ctx.secret_values.get(logical_id) or ctx.secret_values.get(name)
        if not value:
            value = props.get("SecretString") or generate_secret_string(props["GenerateSecretString"])
        request: dict[str, Any] = {"Name": name, "SecretString": value}
        for key in ("Description", "KmsKeyId", "Tags"):
            if key in props:
                request[key] = props[key]
        arn = client.create_secret(**request)["ARN"]
    else:
        arn = described["ARN"]
        if described.get("DeletedDate"):  # scheduled for deletion: bring it back, keep its value
            client.restore_secret(SecretId=name)
    return {"Ref": arn, "Id": arn, "name": name, "arn": arn}


# ---- AWS::KMS::Key and AWS::KMS::Alias ----------------------------------------------------------

_KEY_PROPS = {"Description", "KeyPolicy", "KeySpec", "KeyUsage", "EnableKeyRotation", "Enabled",
              "PendingWindowInDays", "MultiRegion", "Tags"}
_ALIAS_PROPS = {"AliasName", "TargetKeyId"}


def _kms_key(ctx: _Context, logical_id: str, props: dict) -> dict:
    """A customer managed key. KMS keys have no name: the one whose description is the template's
    (and still enabled) is kept, so provisioning again creates no second key."""
    if not props.get("Description"):
        raise ProvisionError(f"{logical_id}: the local provisioner finds a key by its Description")
    if props.get("MultiRegion") or props.get("Enabled") is False:
        raise ProvisionError(f"{logical_id}: only enabled single-region keys are supported locally")
    client = ctx.client("kms")
    found = None
    for page in client.get_paginator("list_keys").paginate():
        for entry in page["Keys"]:
            meta = client.describe_key(KeyId=entry["KeyId"])["KeyMetadata"]
            if meta.get("Description") == props["Description"] and meta.get("KeyState") == "Enabled":
                found = meta
                break
        if found:
            break
    if found is None:
        request: dict[str, Any] = {"Description": props["Description"],
                                   "KeySpec": props.get("KeySpec", "SYMMETRIC_DEFAULT"),
                                   "KeyUsage": props.get("KeyUsage", "ENCRYPT_DECRYPT")}
        if "KeyPolicy" in props:
            policy = props["KeyPolicy"]
            request["Policy"] = policy if isinstance(policy, str) else json.dumps(policy)
        if props.get("Tags"):
            request["Tags"] = [{"TagKey": t["Key"], "TagValue": str(t["Value"])} for t in props["Tags"]]
        found = client.create_key(**request)["KeyMetadata"]
    if props.get("EnableKeyRotation"):
        client.enable_key_rotation(KeyId=found["KeyId"])
    return {"Ref": found["KeyId"], "Arn": found["Arn"], "KeyId": found["KeyId"],
            "name": found["KeyId"], "arn": found["Arn"]}


def _kms_alias(ctx: _Context, logical_id: str, props: dict) -> dict:
    """The alias, created or pointed at the template's key."""
    from botocore.exceptions import ClientError

    name = props["AliasName"]
    if not str(name).startswith("alias/") or str(name).startswith("alias/aws/"):
        raise ProvisionError(f"{logical_id}: AliasName must start with alias/ (not alias/aws/)")
    client = ctx.client("kms")
    try:
        client.create_alias(AliasName=name, TargetKeyId=props["TargetKeyId"])
    except ClientError as exc:
        if _error_code(exc) != "AlreadyExistsException":
            raise
        client.update_alias(AliasName=name, TargetKeyId=props["TargetKeyId"])
    return {"Ref": name, "name": name}


_HANDLERS: dict[str, tuple[Callable[[_Context, str, dict], dict], set[str], set[str]]] = {
    "AWS::DynamoDB::Table": (_dynamodb_table, _TABLE_PROPS, _TABLE_REQUIRED),
    "AWS::SQS::Queue": (_sqs_queue, _QUEUE_PROPS, {"QueueName"}),
    "AWS::SecretsManager::Secret": (_secret, _SECRET_PROPS, {"Name"}),
    "AWS::KMS::Key": (_kms_key, _KEY_PROPS, {"Description"}),
    "AWS::KMS::Alias": (_kms_alias, _ALIAS_PROPS, {"AliasName", "TargetKeyId"}),
}
_RESOURCE_KEYS = {"Type", "Properties", "DependsOn", "DeletionPolicy", "UpdateReplacePolicy", "Metadata"}


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def _validate(template: dict) -> None:
    """Fail before creating anything if the template holds something we cannot reproduce."""
    for logical_id, resource in template["Resources"].items():
        if not isinstance(resource, dict):
            raise ProvisionError(f"resource {logical_id} is not a mapping")
        rtype = resource.get("Type")
        if rtype not in _HANDLERS:
            raise ProvisionError(
                f"resource {logical_id} has type {rtype!r}, which scripts/provision.py does not "
                f"know how to create locally (known: {sorted(_HANDLERS)})"
            )
        extra = set(resource) - _RESOURCE_KEYS
        if extra:
            raise ProvisionError(f"resource {logical_id}: unsupported keys {sorted(extra)}")
        _, allowed, required = _HANDLERS[rtype]
        _check_properties(logical_id, rtype, resource.get("Properties") or {}, allowed, required)


def _creation_order(template: dict, resolver: _Resolver) -> list[str]:
    resources = template["Resources"]
    deps: dict[str, set[str]] = {}
    for logical_id, resource in resources.items():
        found = resolver.dependencies(resource.get("Properties") or {})
        depends_on = resource.get("DependsOn") or []
        if isinstance(depends_on, str):
            depends_on = [depends_on]
        for dep in depends_on:
            if dep not in resources:
                raise ProvisionError(f"{logical_id} DependsOn unknown resource {dep!r}")
            found.add(dep)
        deps[logical_id] = found
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(resources):
        ready = [r for r in resources if r not in done and deps[r] <= done]
        if not ready:
            raise ProvisionError(f"dependency cycle among {sorted(set(resources) - done)}")
        for r in ready:
            order.append(r)
            done.add(r)
    return order


def template_tables(stage: str = "local", path: Path | str = TEMPLATE_PATH) -> dict[str, dict]:
    """The DynamoDB table definitions of the template, resolved for ``stage``: {logical id: props}."""
    template = load_template(path)
    _validate(template)
    resolver = _Resolver(
        template,
        _parameter_values(template, {"Stage": stage}),
        pseudo=lambda name: _static_pseudo(name, DEFAULT_REGION),
    )
    return {
        logical_id: resolver.resolve(resource.get("Properties") or {})
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::DynamoDB::Table"
    }


def _static_pseudo(name: str, region: str) -> str:
    if name == "AWS::Region":
        return region
    if name == "AWS::Partition":
        return "aws"
    if name == "AWS::URLSuffix":
        return "amazonaws.com"
    raise ProvisionError(f"pseudo parameter {name} is not supported by the local provisioner")


def provision(
    stage: str,
    endpoint_url: str | None,
    *,
    secret_values: dict[str, str] | None = None,
    template_path: Path | str = TEMPLATE_PATH,
    region: str | None = None,
    allow_real_aws: bool = False,
) -> dict:
    """Create (or keep) every resource of the template for ``stage``; return names, URLs, outputs.

    ``endpoint_url`` None means boto3's default, i.e. ``AWS_ENDPOINT_URL`` when set. Without any
    endpoint this would create resources in a real AWS account outside CloudFormation, so that is
    refused unless ``allow_real_aws``. ``secret_values`` maps a secret's logical id or name to the
    value it is created with (GenerateSecretString secrets are generated otherwise); a secret that
    already exists keeps its value.
    """
    if endpoint_url is None and not os.environ.get("AWS_ENDPOINT_URL") and not allow_real_aws:
        raise ProvisionError(
            "no endpoint_url and AWS_ENDPOINT_URL is unset: refusing to create resources in real "
            "AWS (deployed stages get them from `chalice package --merge-template`)"
        )
    region = region or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or DEFAULT_REGION
    template = load_template(template_path)
    _validate(template)
    ctx = _Context(endpoint_url, region, dict(secret_values or {}))

    account: list[str] = []

    def pseudo(name: str) -> str:
        if name == "AWS::AccountId":
            if not account:
                account.append(ctx.client("sts").get_caller_identity()["Account"])
            return account[0]
        return _static_pseudo(name, region)

    resolver = _Resolver(template, _parameter_values(template, {"Stage": stage}), pseudo)
    result: dict[str, Any] = {"stage": stage, "region": region, "resources": {}, "outputs": {}}
    for logical_id in _creation_order(template, resolver):
        resource = template["Resources"][logical_id]
        handler = _HANDLERS[resource["Type"]][0]
        props = resolver.resolve(resource.get("Properties") or {})
        attrs = handler(ctx, logical_id, props)
        resolver.physical[logical_id] = attrs
        result["resources"][logical_id] = {
            "type": resource["Type"],
            **{k: v for k, v in attrs.items() if k in ("name", "url", "arn") and v is not None},
        }
        if "arn" not in result["resources"][logical_id] and attrs.get("Arn"):
            result["resources"][logical_id]["arn"] = attrs["Arn"]
    for key, output in (template.get("Outputs") or {}).items():
        if "Condition" in output:
            raise ProvisionError(f"output {key}: Conditions are not supported")
        result["outputs"][key] = resolver.resolve(output["Value"])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", default="local")
    parser.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"))
    args = parser.parse_args(argv)
    try:
        result = provision(args.stage, args.endpoint_url)
    except ProvisionError as exc:
        print(f"provision: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
