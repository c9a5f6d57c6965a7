"""The stage IAM policies (.chalice/policy-<stage>.json) allow exactly what the code calls (SPEC §7).

Statically: every boto3 client call in what Chalice ships (``app.py`` and ``chalicelib/``) is found
in the syntax tree and mapped to the IAM actions AWS documents for it. The scanner understands the
patterns the code uses - ``aws.client("sqs").send_message(...)``, a local ``sqs = aws.client(...)``,
methods and lambdas that return a client (``self._client().get_secret_value(...)``, a
``client_factory`` default), and the ``getattr(client, operation)(...)`` dispatcher in
``chalicelib/store/dynamo.py`` with its ``self._call("put_item", ...)`` callers - and fails loudly
on any client use it cannot attribute, so a new call cannot slip past it.

Then: each used action is allowed, every allowed action is used (or is one Lambda itself needs on
the function's behalf), no statement uses ``*`` where an ARN can be named, and the resources are
exactly this stage's table, queues, secrets and log groups.

Dynamically: a representative set of flows through the app records the AWS operations really made;
each must be one the scanner found and the policy allows.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import pytest

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("dev", "prod")

# IAM service prefix of each boto3 service the code may use. A new service fails the scan until
# it is added here (and to the policies).
IAM_PREFIX = {"dynamodb": "dynamodb", "secretsmanager": "secretsmanager", "sqs": "sqs", "kms": "kms"}

# AWS: "TransactWriteItems" is not an IAM action; each item needs the action of its kind.
TRANSACT_KIND_ACTION = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}
# Operations whose IAM actions are not simply "<prefix>:<OperationName>".
NOT_ONE_TO_ONE = {
    ("dynamodb", "TransactGetItems"): {"dynamodb:GetItem"},
    # BatchGetItem is authorised by its own action (not per item as transactions are).
    ("dynamodb", "BatchGetItem"): {"dynamodb:BatchGetItem"},
}

# Actions the code never calls but Lambda needs in the function's role: the runtime writes the
# function's logs, and the SQS event source mapping polls the logout queue with the role
# (Lambda developer guide, "Using Lambda with Amazon SQS": ReceiveMessage, DeleteMessage,
# GetQueueAttributes).
PLATFORM_ACTIONS = {
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
}
# Active tracing ("xray": true in .chalice/config.json): Lambda sends the function's trace
# segments with the execution role (Lambda developer guide, "Visualize Lambda function invocations
# using AWS X-Ray": xray:PutTraceSegments, xray:PutTelemetryRecords). The code has no X-Ray SDK, so
# nothing needs the sampling rules actions (xray:GetSamplingRules, ...) that the SDK's daemon uses.
# X-Ray's actions name no resource (Service Authorization Reference: no resource types), so theirs
# is the one statement whose Resource is "*", and it holds these two actions only.
XRAY_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
# The token vault's KMS key (infra/resources.yaml VaultKey, SPEC §10). A key's ARN holds a random
# id no static policy can name, and an alias ARN in Resource does not authorise a key's use (KMS
# developer guide, "Using aliases to control access to KMS keys"); so the one KMS statement names
# every key and lets through only the key carrying this stage's alias (kms:ResourceAliases), and
# only data keys whose encryption context is exactly connection + user (chalicelib/vault.py).
KMS_ACTIONS = {"kms:GenerateDataKey", "kms:Decrypt"}
KMS_RESOURCE = "arn:aws:kms:*:*:key/*"


class ScanError(AssertionError):
    pass


# --------------------------------------------------------------------------------------------------
# Static scan
# --------------------------------------------------------------------------------------------------


def shipped_sources() -> list[Path]:
    """What `chalice package` puts in the deployment package besides dependencies."""
    return [ROOT / "app.py", *sorted((ROOT / "chalicelib").rglob("*.py"))]


@dataclass
class ScanResult:
    calls: set[tuple[str, str]] = field(default_factory=set)  # (service, boto3 method name)
    where: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    transact_kinds: set[str] = field(default_factory=set)

    def add(self, service: str, method: str, where: str) -> None:
        self.calls.add((service, method))
        self.where.setdefault((service, method), []).append(where)


class _Module:
    """One source file: parents, enclosing scopes, and the client-producing names in it."""

    def __init__(self, path: Path):
        self.path = path
        self.rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
        self.tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        self.parent: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parent[child] = node
        self.aws_modules: set[str] = set()  # names bound to chalicelib.aws
        self.client_functions: set[str] = set()  # names bound to chalicelib.aws.client
        self._imports()
        # client factories: module functions, (class, method), (class, attribute holding a factory)
        self.factory_functions: dict[str, str] = {}
        self.factory_methods: dict[tuple[str, str], str] = {}
        self.factory_attributes: dict[tuple[str, str], str] = {}
        self.factory_lambdas: dict[ast.Lambda, str] = {}

    def where(self, node: ast.AST) -> str:
        return f"{self.rel}:{getattr(node, 'lineno', '?')}"

    def _imports(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ImportFrom) and node.module == "chalicelib":
                for alias in node.names:
                    if alias.name == "aws":
                        self.aws_modules.add(alias.asname or "aws")
            elif isinstance(node, ast.ImportFrom) and node.module == "chalicelib.aws":
                for alias in node.names:
                    if alias.name == "client":
                        self.client_functions.add(alias.asname or "client")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "chalicelib.aws":
                        if not alias.asname:
                            raise ScanError(f"{self.where(node)}: use `from chalicelib import aws`")
                        self.aws_modules.add(alias.asname)
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                self._check_boto3_import(node)

    def _check_boto3_import(self, node: ast.Import | ast.ImportFrom) -> None:
        """Clients come from chalicelib.aws only; boto3 itself just for its type (de)serialisers."""
        if self.rel == "chalicelib/aws.py":
            return
        if isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            modules = [alias.name for alias in node.names]
        for module in modules:
            root = module.split(".")[0]
            if root in ("boto3", "botocore", "aiobotocore") and module not in (
                "boto3.dynamodb.types",
                "botocore.exceptions",
                "botocore.config",
            ):
                raise ScanError(
                    f"{self.where(node)}: imports {module}; AWS clients must come from chalicelib.aws "
                    "so this scan (and the IAM policies) see them"
                )

    # -- scopes --------------------------------------------------------------------------------
    def enclosing(self, node: ast.AST, kinds: tuple[type, ...]) -> ast.AST | None:
        cur = self.parent.get(node)
        while cur is not None and not isinstance(cur, kinds):
            cur = self.parent.get(cur)
        return cur

    def function_of(self, node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        return self.enclosing(node, (ast.FunctionDef, ast.AsyncFunctionDef))  # type: ignore[return-value]

    def class_of(self, node: ast.AST) -> str | None:
        found = self.enclosing(node, (ast.ClassDef,))
        return found.name if isinstance(found, ast.ClassDef) else None

    # -- what is a client ----------------------------------------------------------------------
    def origin_service(self, node: ast.AST) -> str | None:
        """``aws.client("svc")`` (or an imported ``client("svc")``): the service name."""
        if not isinstance(node, ast.Call):
            return None
        func = node.func
        is_factory = (
            isinstance(func, ast.Attribute)
            and func.attr == "client"
            and isinstance(func.value, ast.Name)
            and func.value.id in self.aws_modules
        ) or (isinstance(func, ast.Name) and func.id in self.client_functions)
        if not is_factory:
            return None
        if len(node.args) != 1 or node.keywords or not isinstance(node.args[0], ast.Constant) or not (
            isinstance(node.args[0].value, str)
        ):
            raise ScanError(f"{self.where(node)}: aws.client() needs one literal service name")
        return node.args[0].value

    def client_service(self, node: ast.AST) -> str | None:
        """The service of the client this expression evaluates to, or None if it is no client."""
        service = self.origin_service(node)
        if service:
            return service
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            return self._local_client(node)
        if isinstance(node, ast.Call) and not node.args and not node.keywords:
            func = node.func
            if isinstance(func, ast.Name):
                return self.factory_functions.get(func.id)
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and (
                func.value.id == "self"
            ):
                cls = self.class_of(node)
                if cls is not None:
                    return self.factory_methods.get((cls, func.attr)) or self.factory_attributes.get(
                        (cls, func.attr)
                    )
        return None

    def _local_client(self, name: ast.Name) -> str | None:
        scope = self.function_of(name) or self.tree
        services = set()
        for node in ast.walk(scope):
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name.id for t in node.targets
            ):
                services.add(self.client_service(node.value))
        services.discard(None)
        if len(services) > 1:
            raise ScanError(f"{self.where(name)}: {name.id} holds clients of {sorted(services)}")
        return services.pop() if services else None

    def find_factories(self) -> None:
        """Functions, methods, lambdas and attributes that produce clients (to a fixed point)."""
        changed = True
        while changed:
            changed = False
            for node in ast.walk(self.tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    returns = [
                        r for r in ast.walk(node)
                        if isinstance(r, ast.Return) and self.function_of(r) is node and r.value
                    ]
                    services = {self.client_service(r.value) for r in returns}
                    if returns and len(services) == 1 and None not in services:
                        service = services.pop()
                        cls = self.class_of(node)
                        key_map = self.factory_methods if cls else self.factory_functions
                        key = (cls, node.name) if cls else node.name
                        if key_map.get(key) != service:
                            key_map[key] = service  # type: ignore[index]
                            changed = True
                elif isinstance(node, ast.Lambda) and node not in self.factory_lambdas:
                    service = self.client_service(node.body)
                    if service:
                        self.factory_lambdas[node] = service
                        self._bind_lambda(node, service)
                        changed = True

    def _bind_lambda(self, lam: ast.Lambda, service: str) -> None:
        """A client-factory lambda must be a parameter default stored on ``self`` in ``__init__``."""
        args = self.parent.get(lam)
        func = self.parent.get(args) if isinstance(args, ast.arguments) else None
        if not isinstance(args, ast.arguments) or not isinstance(func, ast.FunctionDef):
            raise ScanError(f"{self.where(lam)}: client factory lambda used in a way the scan cannot follow")
        params = [*args.posonlyargs, *args.args]
        defaults = dict(zip(params[len(params) - len(args.defaults):], args.defaults, strict=True))
        defaults.update({a: d for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d})
        param = next((p.arg for p, d in defaults.items() if d is lam), None)
        cls = self.class_of(func)
        stored = [
            t.attr
            for node in ast.walk(func)
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name) and node.value.id == param
            for t in node.targets
            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
        ]
        if param is None or cls is None or func.name != "__init__" or not stored:
            raise ScanError(f"{self.where(lam)}: client factory lambda used in a way the scan cannot follow")
        for attr in stored:
            self.factory_attributes[(cls, attr)] = service


def _attribute_use(module: _Module, node: ast.AST, service: str, result: ScanResult,
                   dispatchers: list[tuple[_Module, ast.FunctionDef, str, str]]) -> None:
    """Account for one client-valued expression, or fail: no client use goes unattributed."""
    parent = module.parent.get(node)
    grand = module.parent.get(parent) if parent is not None else None
    # client.method(...)
    if isinstance(parent, ast.Attribute) and parent.value is node:
        if isinstance(grand, ast.Call) and grand.func is parent:
            result.add(service, parent.attr, module.where(node))
            return
        raise ScanError(f"{module.where(node)}: {service} client attribute .{parent.attr} is not called")
    # getattr(client, operation)(...) inside a function taking ``operation`` as a parameter
    if (
        isinstance(parent, ast.Call)
        and isinstance(parent.func, ast.Name)
        and parent.func.id == "getattr"
        and parent.args
        and parent.args[0] is node
    ):
        func = module.function_of(parent)
        op = parent.args[1] if len(parent.args) > 1 else None
        if isinstance(op, ast.Constant) and isinstance(op.value, str):
            result.add(service, op.value, module.where(node))
            return
        params = [a.arg for a in (*func.args.posonlyargs, *func.args.args)] if func else []
        if (
            isinstance(op, ast.Name)
            and op.id in params
            and isinstance(grand, ast.Call)
            and grand.func is parent
        ):
            dispatchers.append((module, func, op.id, service))  # type: ignore[arg-type]
            return
        raise ScanError(f"{module.where(node)}: getattr on a {service} client with an operation the scan "
                        "cannot resolve")
    # the definition of a factory: ``return aws.client(...)``, ``lambda: aws.client(...)``
    if isinstance(parent, ast.Return):
        func = module.function_of(parent)
        cls = module.class_of(func) if func else None
        if func is not None and (
            module.factory_functions.get(func.name) == service
            or module.factory_methods.get((cls, func.name)) == service  # type: ignore[arg-type]
        ):
            return
    if isinstance(parent, ast.Lambda) and module.factory_lambdas.get(parent) == service:
        return
    # ``sqs = aws.client("sqs")``: the uses of ``sqs`` are attributed one by one
    if isinstance(parent, ast.Assign) and parent.value is node and all(
        isinstance(t, ast.Name) for t in parent.targets
    ):
        return
    raise ScanError(f"{module.where(node)}: a {service} client is used in a way the scan cannot "
                    f"attribute ({type(parent).__name__}); teach tests/unit/test_iam_policy.py")


def _resolve_dispatchers(modules: list[_Module], dispatchers, result: ScanResult) -> None:
    for module, func, param, service in dispatchers:
        params = [a.arg for a in (*func.args.posonlyargs, *func.args.args)]
        index = params.index(param)
        is_method = module.class_of(func) is not None and params and params[0] == "self"
        position = index - 1 if is_method else index
        callers = 0
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.Call):
                continue
            target = node.func
            name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
            if name != func.name:
                continue
            if isinstance(target, ast.Attribute) and not (
                isinstance(target.value, ast.Name) and target.value.id in ("self", "cls")
            ):
                raise ScanError(f"{module.where(node)}: {func.name}() called on another object")
            values = [k.value for k in node.keywords if k.arg == param]
            if len(node.args) > position:
                values.append(node.args[position])
            if len(values) != 1 or not isinstance(values[0], ast.Constant) or not isinstance(
                values[0].value, str
            ):
                raise ScanError(f"{module.where(node)}: {func.name}() without a literal operation name")
            result.add(service, values[0].value, module.where(node))
            callers += 1
        for other in modules:  # the dispatcher is private to its module
            if other is not module and any(
                isinstance(n, ast.Attribute) and n.attr == func.name for n in ast.walk(other.tree)
            ):
                raise ScanError(f"{other.rel}: uses {func.name}() of {module.rel}; the scan cannot follow")
        if not callers:
            raise ScanError(f"{module.where(func)}: dispatcher {func.name}() is never called")


def _transact_kinds(module: _Module) -> set[str]:
    """TransactItems entries the code builds: ``{"Put": {"Item": ...}}``, ``{"Update": {"Key": ...}}``,
    or a unit-of-work write, ``cls("ConditionCheck", key=...)`` (store/unit_of_work.py's Write)."""
    kinds = set()
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Call) and node.args:
            first = node.args[0]
            if (isinstance(first, ast.Constant) and first.value in TRANSACT_KIND_ACTION
                    and any(k.arg in ("item", "key") for k in node.keywords)):
                kinds.add(first.value)
            continue
        if not isinstance(node, ast.Dict) or len(node.keys) != 1:
            continue
        key, value = node.keys[0], node.values[0]
        if not (isinstance(key, ast.Constant) and key.value in TRANSACT_KIND_ACTION):
            continue
        if isinstance(value, ast.Dict) and any(
            isinstance(k, ast.Constant) and k.value in ("Item", "Key") for k in value.keys
        ):
            kinds.add(key.value)
    return kinds


def scan(paths: list[Path] | None = None) -> ScanResult:
    modules = [_Module(p) for p in (paths or shipped_sources())]
    result = ScanResult()
    dispatchers: list = []
    for module in modules:
        module.find_factories()
    for module in modules:
        for node in ast.walk(module.tree):
            # a bare reference to the factory itself (``aws.client`` passed around) is not followed
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "client"
                and isinstance(node.value, ast.Name)
                and node.value.id in module.aws_modules
                and not (isinstance(module.parent.get(node), ast.Call) and module.parent[node].func is node)
            ):
                raise ScanError(f"{module.where(node)}: aws.client referenced without being called")
            if isinstance(node, (ast.Call, ast.Name)):
                service = module.client_service(node)
                if service:
                    _attribute_use(module, node, service, result, dispatchers)
        result.transact_kinds |= _transact_kinds(module)
    _resolve_dispatchers(modules, dispatchers, result)
    return result


def _operation_name(service: str, method: str) -> str:
    import botocore.session

    client = botocore.session.get_session().create_client(
        service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    mapping = client.meta.method_to_api_mapping
    if method not in mapping:
        raise ScanError(f"{service}.{method} is not an API operation (paginators, waiters and "
                        "resources are not mapped here)")
    return mapping[method]


def iam_actions(result: ScanResult) -> dict[str, set[tuple[str, str]]]:
    """IAM action -> the boto3 calls that need it."""
    actions: dict[str, set[tuple[str, str]]] = {}
    for service, method in sorted(result.calls):
        if service not in IAM_PREFIX:
            raise ScanError(f"service {service!r} has no IAM prefix in this test; add it and a policy")
        operation = _operation_name(service, method)
        if (service, operation) == ("dynamodb", "TransactWriteItems"):
            if not result.transact_kinds:
                raise ScanError("transact_write_items is called but no TransactItems entries were found")
            needed = {TRANSACT_KIND_ACTION[k] for k in result.transact_kinds}
        elif (service, operation) in NOT_ONE_TO_ONE:
            needed = NOT_ONE_TO_ONE[(service, operation)]
        elif operation.startswith(("Batch", "Transact", "ExecuteStatement", "ExecuteTransaction")):
            raise ScanError(f"{service}.{method}: map its IAM actions in NOT_ONE_TO_ONE first")
        else:
            needed = {f"{IAM_PREFIX[service]}:{operation}"}
        for action in needed:
            actions.setdefault(action, set()).add((service, method))
    return actions


# --------------------------------------------------------------------------------------------------
# Policy evaluation (Allow statements with Action/Resource lists, IAM wildcards * and ?)
# --------------------------------------------------------------------------------------------------


def load_policy(stage: str) -> dict:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    name = config["stages"][stage]["iam_policy_file"]
    return json.loads((ROOT / ".chalice" / name).read_text())


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def allowed_actions(policy: dict) -> set[str]:
    return {a for s in policy["Statement"] for a in _as_list(s["Action"])}


def allows(policy: dict, action: str, arn: str) -> bool:
    return any(
        action in _as_list(s["Action"]) and any(fnmatch.fnmatchcase(arn, r) for r in _as_list(s["Resource"]))
        for s in policy["Statement"]
    )


def _names(stage: str) -> dict:
    """Physical names of the stage's resources, from the template and the code that names them."""
    sys.path.insert(0, str(ROOT))
    from chalicelib.secrets import connection_secret_name, signing_keys_secret_name
    from scripts.provision import load_template, template_tables

    template = load_template()
    resources = template["Resources"]

    def sub(value) -> str:
        assert set(value) == {"Fn::Sub"}, value
        return value["Fn::Sub"].replace("${Stage}", stage)

    prefix = f"broker/{stage}/"
    return {
        "table": template_tables(stage)["BrokerTable"]["TableName"],
        "queue": sub(resources["LogoutQueue"]["Properties"]["QueueName"]),
        "dlq": sub(resources["LogoutDeadLetterQueue"]["Properties"]["QueueName"]),
        "admin_secret": sub(resources["AdminClientSecret"]["Properties"]["Name"]),
        "signing_secret": signing_keys_secret_name(prefix),
        "connection_secret": connection_secret_name(prefix, "con_AbCdEf0123456789"),
    }


# --------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scanned() -> ScanResult:
    return scan()


@pytest.fixture(scope="module")
def used(scanned) -> dict[str, set[tuple[str, str]]]:
    return iam_actions(scanned)


def test_scanner_finds_the_calls_the_code_makes(scanned, used):
    # Known anchors, so a scanner that silently finds nothing fails here.
    for call in [
        ("dynamodb", "get_item"),
        ("dynamodb", "put_item"),
        ("dynamodb", "transact_write_items"),
        ("secretsmanager", "get_secret_value"),
        ("secretsmanager", "create_secret"),
        ("sqs", "send_message"),
        ("sqs", "get_queue_url"),
    ]:
        assert call in scanned.calls, (call, sorted(scanned.calls))
    assert {"Put", "Delete"} <= scanned.transact_kinds
    assert "dynamodb:TransactWriteItems" not in used  # not an IAM action


@pytest.mark.parametrize("stage", STAGES)
def test_every_call_is_allowed(stage, used):
    allowed = allowed_actions(load_policy(stage))
    missing = {a: sorted(c) for a, c in used.items() if a not in allowed}
    assert not missing, f"policy-{stage}.json lacks actions the code needs: {missing}"


def _stage_config(stage: str) -> dict:
    return json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"][stage]


@pytest.mark.parametrize("stage", STAGES)
def test_nothing_beyond_what_is_used(stage, used):
    allowed = allowed_actions(load_policy(stage))
    traced = _stage_config(stage).get("xray") is True
    platform = PLATFORM_ACTIONS | (XRAY_ACTIONS if traced else set())
    extra = allowed - set(used) - platform
    assert not extra, f"policy-{stage}.json allows actions nothing uses: {sorted(extra)}"
    for action in platform:
        assert action in allowed, f"Lambda needs {action} in the function role"


@pytest.mark.parametrize("stage", STAGES)
def test_the_stages_are_traced_with_exactly_the_x_ray_statement(stage):
    """SPEC §9: X-Ray tracing on; the role can send traces and do nothing else with X-Ray."""
    assert _stage_config(stage)["xray"] is True
    xray = [s for s in load_policy(stage)["Statement"]
            if any(a.startswith("xray:") for a in _as_list(s["Action"]))]
    assert len(xray) == 1
    assert set(_as_list(xray[0]["Action"])) == XRAY_ACTIONS
    assert _as_list(xray[0]["Resource"]) == ["*"]


def vault_alias(stage: str) -> str:
    """The vault key's alias: the template's, which is also the stage's BROKER_VAULT_KEY_ID."""
    sys.path.insert(0, str(ROOT))
    from chalicelib.settings import _load
    from scripts.provision import load_template

    props = load_template()["Resources"]["VaultKeyAlias"]["Properties"]
    alias = props["AliasName"]["Fn::Sub"].replace("${Stage}", stage)
    assert props["TargetKeyId"] == {"Ref": "VaultKey"}
    assert _load({"BROKER_STAGE": stage, "BROKER_ISSUER": "https://broker.example/"}).vault_key_id == alias
    return alias


def check_vault_key_statement(statement: dict, stage: str) -> None:
    assert set(statement) == {"Sid", "Effect", "Action", "Resource", "Condition"}, statement
    assert set(_as_list(statement["Action"])) == KMS_ACTIONS, statement
    assert _as_list(statement["Resource"]) == [KMS_RESOURCE], statement
    assert statement["Condition"] == {
        "ForAnyValue:StringEquals": {"kms:ResourceAliases": [vault_alias(stage)]},
        # Both keys present (Null false) and no other (ForAllValues): the vault's context only.
        "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["connection", "user"]},
        "Null": {"kms:EncryptionContext:connection": "false", "kms:EncryptionContext:user": "false"},
    }, statement


def check_scoped(policy: dict, stage: str) -> None:
    """Every statement names this stage's resources (region and account the only wildcards),
    except the one X-Ray statement, which can name none, and the vault key's, which names its
    key by alias in a condition."""
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        if any(str(a).startswith("kms:") for a in _as_list(statement["Action"])):
            check_vault_key_statement(statement, stage)
            continue
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource"}, statement  # no NotAction...
        actions = _as_list(statement["Action"])
        services = {a.split(":", 1)[0] for a in actions}
        assert len(services) == 1, statement
        for action in actions:
            assert "*" not in action and "?" not in action, action
        if services == {"xray"}:
            assert set(actions) == XRAY_ACTIONS and _as_list(statement["Resource"]) == ["*"], statement
            continue
        for resource in _as_list(statement["Resource"]):
            parts = resource.split(":", 5)
            assert len(parts) == 6 and parts[0] == "arn" and parts[1] == "aws", resource
            assert parts[2] in services, (resource, services)
            # region and account are the only wildcards: a static policy file cannot know them
            assert parts[3] == "*" and parts[4] == "*", resource
            name = parts[5]
            assert stage in name and not name.startswith("*"), resource
            assert name.split("*")[0].rstrip("/-:") not in ("", "table", "secret", "log-group"), resource


@pytest.mark.parametrize("stage", STAGES)
def test_statements_are_scoped_to_named_resources(stage):
    assert _stage_config(stage)["autogen_policy"] is False
    check_scoped(load_policy(stage), stage)


def _condition(policy: dict, sid: str) -> dict:
    return next(s for s in policy["Statement"] if s["Sid"] == sid).get("Condition", {})


def _with_statement(policy: dict, sid: str, **changes) -> dict:
    copy = json.loads(json.dumps(policy))
    for statement in copy["Statement"]:
        if statement["Sid"] == sid:
            statement.update(changes)
    return copy


@pytest.mark.parametrize("broken", [
    # "*" is for X-Ray's two actions only
    lambda p: _with_statement(p, "BrokerTable", Resource=["*"]),
    lambda p: _with_statement(p, "XRayTraces", Action=sorted(XRAY_ACTIONS) + ["xray:GetSamplingRules"]),
    lambda p: _with_statement(p, "XRayTraces", Action=["xray:PutTraceSegments"]),
    lambda p: _with_statement(p, "XRayTraces", Action=sorted(XRAY_ACTIONS) + ["dynamodb:GetItem"]),
    lambda p: _with_statement(p, "XRayTraces", Resource=["arn:aws:xray:*:*:group/*"]),
    # every key, but only the vault's by alias and only under the vault's context
    lambda p: _with_statement(p, "VaultDataKeys", Condition={}),
    lambda p: _with_statement(p, "VaultDataKeys", Resource=["*"]),
    lambda p: _with_statement(p, "VaultDataKeys", Action=sorted(KMS_ACTIONS) + ["kms:Encrypt"]),
    lambda p: _with_statement(p, "VaultDataKeys", Condition={
        **_condition(p, "VaultDataKeys"),
        "ForAnyValue:StringEquals": {"kms:ResourceAliases": ["alias/broker-prod-vault"]}}),
    lambda p: _with_statement(p, "VaultDataKeys", Condition={
        k: v for k, v in _condition(p, "VaultDataKeys").items() if k != "Null"}),
    lambda p: _with_statement(p, "BrokerTable", Condition={
        "ForAnyValue:StringEquals": {"kms:ResourceAliases": ["alias/broker-dev-vault"]}}),
])
def test_the_scope_check_refuses_wildcards_beyond_x_ray(broken):
    policy = load_policy("dev")
    check_scoped(policy, "dev")  # the real one passes
    with pytest.raises(AssertionError):
        check_scoped(broken(policy), "dev")


@pytest.mark.parametrize("stage", STAGES)
def test_resources_are_exactly_this_stage(stage):
    policy = load_policy(stage)
    n = _names(stage)
    region_account = "us-east-1:123456789012"
    table = f"arn:aws:dynamodb:{region_account}:table/{n['table']}"
    queue = f"arn:aws:sqs:{region_account}:{n['queue']}"
    dlq = f"arn:aws:sqs:{region_account}:{n['dlq']}"

    def secret(name: str) -> str:
        return f"arn:aws:secretsmanager:{region_account}:secret:{name}-AbC123"

    def log_group(name: str) -> str:
        return f"arn:aws:logs:{region_account}:log-group:/aws/lambda/{name}:*"

    for action in ("GetItem", "Query", "PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem"):
        assert allows(policy, f"dynamodb:{action}", table)
        assert not allows(policy, f"dynamodb:{action}", table + "-other")
        # The table's indexes (users, user_email) can be queried, nothing else done to them.
        assert allows(policy, f"dynamodb:{action}", table + "/index/user_email") == (action == "Query")
        assert not allows(policy, f"dynamodb:{action}", table + "-other/index/user_email")
    for name in ("admin_secret", "signing_secret", "connection_secret"):
        assert allows(policy, "secretsmanager:GetSecretValue", secret(n[name])), name
    for action in ("CreateSecret", "PutSecretValue", "RestoreSecret"):
        assert allows(policy, f"secretsmanager:{action}", secret(n["signing_secret"]))
        assert allows(policy, f"secretsmanager:{action}", secret(n["connection_secret"]))
        # the bootstrap admin secret belongs to CloudFormation: the app only reads it
        assert not allows(policy, f"secretsmanager:{action}", secret(n["admin_secret"]))
    assert allows(policy, "secretsmanager:DeleteSecret", secret(n["connection_secret"]))
    assert not allows(policy, "secretsmanager:DeleteSecret", secret(n["signing_secret"]))
    assert not allows(policy, "secretsmanager:DeleteSecret", secret(n["admin_secret"]))
    assert not allows(policy, "secretsmanager:GetSecretValue", secret(f"broker/{stage}-other/x"))
    for action in ("SendMessage", "GetQueueUrl"):
        assert allows(policy, f"sqs:{action}", queue) and allows(policy, f"sqs:{action}", dlq)
        assert not allows(policy, f"sqs:{action}", queue + "-other")
    for action in ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes"):
        assert allows(policy, f"sqs:{action}", queue)
        assert not allows(policy, f"sqs:{action}", dlq)
    # chalice deploy names the functions identity-broker-<stage>[-<handler>]; the packaged stack,
    # deployed as identity-broker-<stage> (docs/DEPLOY.md), names them <stack>-<LogicalId>-<suffix>.
    for function in (f"identity-broker-{stage}", f"identity-broker-{stage}-deliver_backchannel_logout",
                     f"identity-broker-{stage}-APIHandler-1A2B3C4D5E6F"):
        for action in ("CreateLogStream", "PutLogEvents"):
            assert allows(policy, f"logs:{action}", log_group(function)), function
    assert not allows(policy, "logs:PutLogEvents", log_group("some-other-function"))
    # The vault key (its condition, checked by check_vault_key_statement, names it by alias).
    key = f"arn:aws:kms:{region_account}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    for action in KMS_ACTIONS:
        assert allows(policy, action, key)
    for action in ("kms:Encrypt", "kms:GenerateDataKeyWithoutPlaintext", "kms:CreateGrant",
                   "kms:ReEncryptFrom", "kms:ScheduleKeyDeletion"):
        assert not allows(policy, action, key)
    vault = next(s for s in policy["Statement"] if s["Sid"] == "VaultDataKeys")
    check_vault_key_statement(vault, stage)

    other = next(s for s in STAGES if s != stage)
    o = _names(other)
    assert not allows(policy, "dynamodb:GetItem", f"arn:aws:dynamodb:{region_account}:table/{o['table']}")
    assert not allows(policy, "sqs:SendMessage", f"arn:aws:sqs:{region_account}:{o['queue']}")
    assert not allows(policy, "secretsmanager:GetSecretValue", secret(o["admin_secret"]))
    assert not allows(policy, "logs:PutLogEvents", log_group(f"identity-broker-{other}"))


def test_stage_policies_differ_only_in_the_stage_name():
    dev = json.dumps(load_policy("dev"), sort_keys=True)
    prod = json.dumps(load_policy("prod"), sort_keys=True)
    assert dev.replace("dev", "STAGE") == prod.replace("prod", "STAGE")


# -- the scanner itself ----------------------------------------------------------------------------


def _scan_source(tmp_path: Path, source: str) -> ScanResult:
    path = tmp_path / "probe.py"
    path.write_text(source)
    return scan([path])


@pytest.mark.parametrize("source", [
    # passed along: where it goes is unknown
    "from chalicelib import aws\ndef f(g):\n    g(aws.client('sqs'))\n",
    # a local client handed to another function
    "from chalicelib import aws\ndef f(g):\n    c = aws.client('sqs')\n    g(c)\n",
    # the factory itself passed around
    "from chalicelib import aws\nfactory = aws.client\n",
    # computed service name
    "from chalicelib import aws\ndef f(s):\n    aws.client(s).list_queues()\n",
    # computed operation name from somewhere the scan cannot see
    "from chalicelib import aws\ndef f(op):\n    getattr(aws.client('sqs'), op.name)()\n",
    # a dispatcher called with a variable operation
    "from chalicelib import aws\nclass T:\n    def _c(self, op):\n"
    "        return getattr(aws.client('sqs'), op)()\n    def g(self, x):\n        self._c(x)\n",
    # boto3 directly
    "import boto3\ndef f():\n    boto3.client('s3').list_buckets()\n",
])
def test_scanner_fails_loudly_on_what_it_cannot_attribute(tmp_path, source):
    with pytest.raises(ScanError):
        _scan_source(tmp_path, source)


def test_scanner_follows_factories_and_dispatchers(tmp_path):
    result = _scan_source(tmp_path, (
        "from chalicelib import aws\n"
        "class Store:\n"
        "    def __init__(self, client_factory=lambda: aws.client('secretsmanager')):\n"
        "        self._factory = client_factory\n"
        "    def _client(self):\n"
        "        return self._factory()\n"
        "    def get(self, n):\n"
        "        return self._client().get_secret_value(SecretId=n)\n"
        "class Table:\n"
        "    def _c(self):\n"
        "        return aws.client('dynamodb')\n"
        "    def _call(self, operation, **kw):\n"
        "        return getattr(self._c(), operation)(**kw)\n"
        "    def q(self):\n"
        "        self._call('query', TableName='t')\n"
        "        self._call(operation='batch_write_item')\n"
        "def worker():\n"
        "    sqs = aws.client('sqs')\n"
        "    sqs.receive_message(QueueUrl='u')\n"
    ))
    assert result.calls == {
        ("secretsmanager", "get_secret_value"),
        ("dynamodb", "query"),
        ("dynamodb", "batch_write_item"),
        ("sqs", "receive_message"),
    }
    with pytest.raises(ScanError, match="NOT_ONE_TO_ONE"):
        iam_actions(result)  # BatchWriteItem: mapped on purpose, not by name


def test_unknown_operation_fails(tmp_path):
    result = _scan_source(tmp_path, "from chalicelib import aws\ndef f():\n"
                                    "    aws.client('sqs').get_paginator('list_queues')\n")
    with pytest.raises(ScanError, match="not an API operation"):
        iam_actions(result)


# -- dynamically: what a representative run really calls ------------------------------------------


@pytest.fixture()
def recorded(monkeypatch, aws_endpoint):
    """Every AWS operation made through chalicelib.aws clients while the test runs (secrets are
    read afresh: a warm cache would hide the reads)."""
    from chalicelib import aws
    from chalicelib.secrets import secret_store

    secret_store().forget()

    calls: list[tuple[str, str]] = []
    hooked = []

    def record(model, **_kwargs):
        calls.append((model.service_model.service_name, model.name))

    real = aws.client

    def client(service):
        found = real(service)
        if found not in hooked:
            found.meta.events.register("before-call", record, unique_id="iam-policy-test")
            hooked.append(found)
        return found

    monkeypatch.setattr(aws, "client", client)
    yield calls
    for found in hooked:
        found.meta.events.unregister("before-call", unique_id="iam-policy-test")


def test_a_representative_run_stays_within_scan_and_policy(client, api, recorded, scanned, used):
    from chalicelib import aws
    from chalicelib.logout import backchannel

    audience = "http://127.0.0.1:8000/api/v2/"
    created = api.call("POST", "/api/v2/clients", body={"name": "iam-policy-probe",
                                                        "app_type": "non_interactive"})
    assert created.status_code == 201, created.data
    app = created.data
    grant = api.call("POST", "/api/v2/client-grants", body={
        "client_id": app["client_id"], "audience": audience, "scope": ["read:clients"]})
    assert grant.status_code == 201, grant.data
    token = client.http.post("/oauth/token", body=urlencode({
        "grant_type": "client_credentials", "client_id": app["client_id"],
        "client_secret": app["client_secret"], "audience": audience,
    }), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert token.status_code == 200, token.body
    assert client.http.get("/.well-known/jwks.json").status_code == 200
    assert api.call("POST", "/api/v2/keys/signing/rotate").status_code == 201
    connection = api.call("POST", "/api/v2/connections", body={
        "name": "iam-policy-probe", "strategy": "oidc", "enabled_clients": [app["client_id"]],
        "options": {"client_id": "c", "client_secret": "probe-secret-0123456789",
                    "issuer": "http://127.0.0.1:9/", "authorization_endpoint": "http://127.0.0.1:9/auth",
                    "token_endpoint": "http://127.0.0.1:9/token", "jwks_uri": "http://127.0.0.1:9/jwks"}})
    assert connection.status_code == 201, connection.data
    assert api.call("DELETE", f"/api/v2/connections/{connection.data['id']}").status_code == 204
    assert api.call("DELETE", f"/api/v2/client-grants/{grant.data['id']}").status_code == 204
    assert api.call("DELETE", f"/api/v2/clients/{app['client_id']}").status_code == 204

    # back-channel logout: a failed delivery is re-queued, the last attempt parked in the DLQ
    message = {"client_id": app["client_id"], "url": "http://127.0.0.1:9/backchannel",
               "sub": "oidc|probe|u1", "sid": "sid-probe", "attempt": 0}
    try:
        assert backchannel.handle(message) == "requeued"
        assert backchannel.handle({**message, "attempt": backchannel.MAX_ATTEMPTS - 1}) == "dead_letter"
        backchannel.process_queue_once(max_messages=1)
    finally:  # leave the shared local queues as the other tests expect them: empty
        for dead_letter in (False, True):
            aws.client("sqs").purge_queue(QueueUrl=backchannel.queue_url(dead_letter))

    operations = {(service, op) for service, op in recorded if op != "PurgeQueue"}  # the cleanup
    for expected in [("secretsmanager", "GetSecretValue"), ("secretsmanager", "DeleteSecret"),
                     ("dynamodb", "TransactWriteItems"), ("sqs", "SendMessage"),
                     ("sqs", "ReceiveMessage")]:
        assert expected in operations, (expected, sorted(operations))
    scanned_ops = {(s, _operation_name(s, m)) for s, m in scanned.calls}
    unseen = operations - scanned_ops
    assert not unseen, f"the static scan missed calls made at run time: {sorted(unseen)}"
    for stage in STAGES:
        allowed = allowed_actions(load_policy(stage))
        for service, op in operations:
            if (service, op) == ("dynamodb", "TransactWriteItems"):
                needed = {a for a in TRANSACT_KIND_ACTION.values() if a in used}
            else:
                needed = {f"{IAM_PREFIX[service]}:{op}"}
            assert needed and needed <= allowed, (stage, service, op)
