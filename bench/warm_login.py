"""Warm federated login: CPU per login, and AWS requests per login.

The broker runs in this process through its Lambda handler (``app(event, context)`` with API Gateway
REST proxy events): ``GET /authorize`` -> (upstream IdP) -> ``GET /login/callback`` (back-channel code
exchange, ID token check, one transaction) -> ``POST /oauth/token`` (code exchange, two signed
tokens). The upstream IdP answers in-process (bench/common.FakeIdp; the CPU it spends signing its ID
token is subtracted), DynamoDB and Secrets Manager are the embedded endpoint in another process.

CPU is ``time.process_time`` around each handler call only (no driver code). The floor, measured in
the same run with the same client: the signatures a login needs (2 RS256 signatures of broker
tokens, 1 RS256 verification of the upstream ID token, raw ``cryptography``) plus the minimum number
of DynamoDB round trips a login needs (MIN_DYNAMODB_CALLS, see below), timed as PutItem/GetItem
round trips with the broker's own boto3 client.

It also meters each route for bench/cost.py and bench/latency.py (``routes`` in the JSON): CPU per
request (the three login routes, a refresh grant, discovery, JWKS), DynamoDB calls by operation with
the request units they bill (item sizes from the requests and from the items they touch, read
before and after each write with a separate client), the items of each TransactWriteItems, Secrets
Manager and SQS calls, upstream IdP calls and the bytes of log lines written.

    .venv/bin/python bench/warm_login.py [--logins 150] [--json PATH]
"""
from __future__ import annotations

import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import cost  # noqa: E402
from bench.common import (  # noqa: E402
    Attribution,
    AwsCounter,
    AwsServer,
    cpu,
    emit,
    figure,
    login,
    profile,
    refresh,
    start_broker,
)

CPU_BUDGET = 2.0
DYNAMODB_BUDGET = 7
# The fewest DynamoDB calls a warm login can make with server-side, single-use state:
#   /authorize       PutItem            the login transaction (state, nonce, PKCE verifier, binding)
#   /login/callback  DeleteItem         consume it (conditional: single use, browser binding)
#                    TransactWriteItems user + session + grant + code, all or nothing
#   /oauth/token     GetItem            the code record (needed to build the tokens)
#                    TransactWriteItems consume the code + refresh token + grant still active
# Client and connection records come from a warm-container cache (as connections already do).
MIN_DYNAMODB_CALLS = 5
FLOOR_SEQUENCE = ("put", "put", "put", "get", "put")  # same shape: 4 writes, 1 read


def crypto_floor(iterations: int = 200) -> dict:
    """CPU of one RS256 signature and one RS256 verification (2048-bit keys, raw cryptography)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key()
    message = secrets.token_urlsafe(520).encode()  # a JWT signing input is ~500-900 bytes
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    for _ in range(10):
        key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    start = cpu()
    for _ in range(iterations):
        key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    sign = (cpu() - start) / iterations
    start = cpu()
    for _ in range(iterations):
        public.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    verify = (cpu() - start) / iterations
    return {"sign": sign, "verify": verify}


MINIMUM_WHY = (
    "Minimum DynamoDB calls per warm login: 5. /authorize must store the login transaction "
    "(PutItem: state, nonce, PKCE verifier and browser binding survive between two Lambda "
    "invocations). /login/callback must consume it exactly once (conditional DeleteItem with the "
    "binding in the condition) and write user, session, grant and code all-or-nothing (one "
    "TransactWriteItems). /oauth/token must read the code record to build the tokens (GetItem) "
    "and consume it together with the refresh token and the grant-still-active check (one "
    "TransactWriteItems). Client and connection records can come from a warm-container TTL cache "
    "(connections already do); the user's claims can travel in the code record. Without a client "
    "cache the minimum is 7 (the client is read at /authorize and at /oauth/token)."
)


def dynamodb_round_trip(iterations: int = 40, client=None) -> float:
    """Client CPU of one GetItem/PutItem round trip, averaged over FLOOR_SEQUENCE."""
    from chalicelib import aws
    from chalicelib.settings import get_settings

    client = client or aws.client("dynamodb")
    table = get_settings().table_name
    now = int(time.time())

    def item(i):
        # About the size of a code or transaction record: a dozen short attributes.
        return {"pk": {"S": f"BENCH#{i}"}, "sk": {"S": "BENCH"}, "ttl": {"N": str(now + 600)},
                **{f"a{j}": {"S": secrets.token_urlsafe(24)} for j in range(10)}}

    def sequence(i):
        for step, kind in enumerate(FLOOR_SEQUENCE):
            if kind == "put":
                client.put_item(TableName=table, Item=item(f"{i}-{step}"))
            else:
                client.get_item(TableName=table, ConsistentRead=True,
                                Key={"pk": {"S": f"BENCH#{i}-0"}, "sk": {"S": "BENCH"}})

    for i in range(5):
        sequence(f"warm{i}")
    start = cpu()
    for i in range(iterations):
        sequence(i)
    return (cpu() - start) / (iterations * len(FLOOR_SEQUENCE))


def _unvalidated_client():
    """The broker's DynamoDB client configuration plus ``parameter_validation=False``."""
    import boto3
    from botocore.config import Config

    from chalicelib import aws

    config = aws._config().merge(Config(parameter_validation=False))
    return boto3.session.Session().client("dynamodb", config=config, region_name="us-east-1")


# --------------------------------------------------------------------------- per-route metering

# The table's keys-only global secondary indexes (infra/resources.yaml BrokerTable).
TABLE_INDEXES = {"users": ("list_pk", "list_sk"), "user_email": ("email_key",)}
LAMBDA_REQUEST_ID = "3604209a-e9a3-11e6-939a-754dd98c7be3"  # 36 characters, like every request id


def route_name(method: str, path: str, phase: str) -> str:
    if path == "/authorize":
        return "authorize"
    if path.startswith("/login/callback/"):
        return "callback"
    if path == "/oauth/token":
        return "token_refresh" if phase == "refresh" else "token_code"
    if path == "/.well-known/openid-configuration":
        return "discovery"
    if path == "/.well-known/jwks.json":
        return "jwks"
    return f"{method} {path}"


def platform_log_bytes(duration_ms: float = 12.34, memory_mb: int = 512) -> int:
    """Lambda's own lines per invocation (START, END, REPORT), as the runtime writes them."""
    lines = [f"START RequestId: {LAMBDA_REQUEST_ID} Version: $LATEST",
             f"END RequestId: {LAMBDA_REQUEST_ID}",
             f"REPORT RequestId: {LAMBDA_REQUEST_ID}\tDuration: {duration_ms:.2f} ms\t"
             f"Billed Duration: {int(duration_ms) + 1} ms\tMemory Size: {memory_mb} MB\t"
             f"Max Memory Used: 90 MB\t"]
    return sum(len(line.encode()) + 1 for line in lines)


class _LogBytes:
    """A logging handler that counts the bytes the Lambda runtime would write for each record:
    root-logger records as ``[LEVEL]\\t<timestamp>\\t<request id>\\t<message>``, Chalice's app logger
    as its own stdout format ``<name> - <LEVEL> - <message>``."""

    def __init__(self, lambda_format: bool):
        import logging

        class Handler(logging.Handler):
            def emit(handler, record):  # noqa: N805 - closure over the meter
                message = record.getMessage()
                if record.exc_info:
                    message += "\n" + logging.Formatter().formatException(record.exc_info)
                if lambda_format:
                    line = f"[{record.levelname}]\t2026-01-01T00:00:00.000Z\t{LAMBDA_REQUEST_ID}\t{message}"
                else:
                    line = f"{record.name} - {record.levelname} - {message}"
                handler.bytes += len(line.encode()) + 1

        self.handler = Handler(level=logging.INFO)
        self.handler.bytes = 0


class RouteMeter:
    """Meters the broker per route while active (see the module docstring)."""

    def __init__(self, setup):
        import boto3

        self.setup = setup
        self.phase = "login"
        self.route = "?"
        self.routes: dict[str, dict] = {}
        self.requests: dict[str, int] = {}
        # A separate client (not the broker's, so not metered) reads items before/after writes.
        self.probe = boto3.session.Session().client("dynamodb", region_name="us-east-1")
        self._pending: list = []

    def _row(self) -> dict:
        return self.routes.setdefault(self.route, {
            "calls": {}, "wru": 0.0, "rru": 0.0, "transact_items": [], "secretsmanager": 0,
            "sqs": 0, "upstream_calls": 0, "log_bytes": 0, "app_log_bytes": 0})

    def _get(self, table: str, key: dict) -> dict | None:
        return self.probe.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")

    @staticmethod
    def _key(item: dict) -> dict:
        return {k: item[k] for k in ("pk", "sk") if k in item}

    def _before(self, model, params, **_):
        """``before-parameter-build``: ``params`` are the API parameters, before serialisation."""
        self._consistent = bool(params.get("ConsistentRead", False))
        service = model.service_model.service_name
        row = self._row()
        operation = f"{service}.{model.name}"
        row["calls"][operation] = row["calls"].get(operation, 0) + 1
        if service == "secretsmanager":
            row["secretsmanager"] += 1
        elif service == "sqs":
            row["sqs"] += 1
        if service != "dynamodb":
            return
        writes = []  # (table, key, transactional, kind)
        if model.name == "PutItem":
            writes.append((params["TableName"], self._key(params["Item"]), False, "Put"))
        elif model.name in ("DeleteItem", "UpdateItem"):
            writes.append((params["TableName"], params["Key"], False, model.name[:-4]))
        elif model.name == "TransactWriteItems":
            row["transact_items"].append(len(params["TransactItems"]))
            for entry in params["TransactItems"]:
                (kind, body), = entry.items()
                key = self._key(body["Item"]) if kind == "Put" else body["Key"]
                writes.append((body["TableName"], key, True, kind))
        self._pending = [(table, key, transactional, kind, self._get(table, key))
                         for table, key, transactional, kind in writes]

    def _after(self, model, parsed, **_):
        if model.service_model.service_name != "dynamodb":
            return
        row = self._row()
        if model.name == "GetItem":
            row["rru"] += cost.read_units(cost.item_size(parsed.get("Item")),
                                          consistent=self._consistent)
        elif model.name == "Query":
            size = sum(cost.item_size(item) for item in parsed.get("Items", []))
            row["rru"] += cost.read_units(size, consistent=self._consistent)
        failed = "Error" in parsed
        for table, key, transactional, kind, before in self._pending:
            after = None if failed else self._get(table, key)
            if failed:  # a refused write still bills its size (a conditional check failure)
                after = before
            size = max(cost.item_size(before), cost.item_size(after))
            row["wru"] += cost.write_units(size, transactional=transactional)
            if kind != "ConditionCheck" and not failed:
                row["wru"] += cost.index_write_units(before, after, TABLE_INDEXES)
        self._pending = []

    def call(self, original, method, path, **kwargs):
        self.route = route_name(method, path, self.phase)
        self.requests[self.route] = self.requests.get(self.route, 0) + 1
        fetched = len(self.setup.idp.fetched)
        response = original(method, path, **kwargs)
        self._row()["upstream_calls"] += len(self.setup.idp.fetched) - fetched
        self.attribute_logs()
        return response

    def __enter__(self):
        import functools
        import logging

        from chalicelib import aws

        broker = self.setup.broker
        self._original_call = broker.call
        broker.call = functools.partial(self.call, self._original_call)
        for service in AwsCounter.SERVICES:
            events = aws.client(service).meta.events
            events.register("before-parameter-build", self._before)
            events.register("after-call", self._after)
        self._logs = [(_LogBytes(True), logging.getLogger()),
                      (_LogBytes(False), broker.app.log)]
        for counter, logger in self._logs:
            logger.addHandler(counter.handler)
        self._log_mark = 0
        return self

    def __exit__(self, *exc):
        from chalicelib import aws

        broker = self.setup.broker
        broker.call = self._original_call
        for service in AwsCounter.SERVICES:
            events = aws.client(service).meta.events
            events.unregister("before-parameter-build", self._before)
            events.unregister("after-call", self._after)
        for counter, logger in self._logs:
            logger.removeHandler(counter.handler)

    def attribute_logs(self) -> None:
        """Book the log bytes written since the last call to the current route."""
        written = sum(counter.handler.bytes for counter, _logger in self._logs)
        self._row()["app_log_bytes"] += written - self._log_mark
        self._log_mark = written

    def per_request(self) -> dict:
        """Averages per request of each route, with Lambda's START/END/REPORT lines added."""
        found = {}
        for name, row in self.routes.items():
            n = self.requests.get(name) or 1
            found[name] = {
                "requests_metered": n,
                "calls": {k: v / n for k, v in sorted(row["calls"].items())},
                "wru": row["wru"] / n, "rru": row["rru"] / n,
                "transact_items": sorted(set(row["transact_items"])),
                "secretsmanager": row["secretsmanager"] / n, "sqs": row["sqs"] / n,
                "upstream_calls": row["upstream_calls"] / n,
                "app_log_bytes": row["app_log_bytes"] / n,
                "log_bytes": row["app_log_bytes"] / n + platform_log_bytes(),
            }
        return found


def meter_routes(setup, n: int = 3) -> dict:
    """Per-route counts and billed units over ``n`` logins, ``n`` refresh grants and ``n`` discovery
    and JWKS requests (warm)."""
    broker = setup.broker
    with RouteMeter(setup) as meter:
        tokens = None
        for _ in range(n):
            tokens = login(setup)
        meter.phase = "refresh"
        for _ in range(n):
            refresh(setup, tokens["refresh_token"])
        meter.phase = "other"
        for _ in range(n):
            broker.call("GET", "/.well-known/openid-configuration")
            broker.call("GET", "/.well-known/jwks.json")
    return meter.per_request()


def cpu_per_route(setup, n: int) -> dict:
    """Broker CPU per request of the non-login routes: refresh grant, discovery, JWKS (ms)."""
    broker = setup.broker
    tokens = login(setup)
    found = {}
    for name, action in (
            ("token_refresh", lambda: refresh(setup, tokens["refresh_token"])),
            ("discovery", lambda: broker.call("GET", "/.well-known/openid-configuration")),
            ("jwks", lambda: broker.call("GET", "/.well-known/jwks.json"))):
        for _ in range(5):
            action()
        start = broker.handler_cpu
        for _ in range(n):
            action()
        found[name] = (broker.handler_cpu - start) / n * 1000
    return found


def measure(setup, n: int) -> dict:
    broker, idp = setup.broker, setup.idp
    by_path = dict(broker.by_path)
    handler0, idp0 = broker.handler_cpu, idp.cpu
    for _ in range(n):
        login(setup)
    spent = (broker.handler_cpu - handler0) - (idp.cpu - idp0)
    paths = {p: (broker.by_path[p] - by_path.get(p, 0.0)) / n for p in broker.by_path
             if broker.by_path[p] > by_path.get(p, 0.0)}
    return {"per_login": spent / n, "idp_per_login": (idp.cpu - idp0) / n, "by_path": paths}


def attribute(setup, n: int) -> tuple[str, dict]:
    """Exact CPU split of a warm login (no profiler): AWS SDK calls, signing, ID token check, rest."""
    broker, idp = setup.broker, setup.idp
    handler0, idp0 = broker.handler_cpu, idp.cpu
    with Attribution() as attribution:
        for _ in range(n):
            login(setup)
    total = (broker.handler_cpu - handler0) - (idp.cpu - idp0)
    parts = {label: spent / n for label, spent in attribution.cpu.items()}
    calls = {label: count / n for label, count in attribution.calls.items()}
    parts["rest: Chalice routing, request/response handling, flow logic"] = (
        total / n - sum(parts.values()))
    lines = ["ms per login  share  where (exact CPU, no profiler)"]
    for label, value in parts.items():
        count = f" ({calls[label]:g} calls, {value / calls[label] * 1000:.2f} ms each)" if calls.get(
            label) else ""
        lines.append(f"{value * 1000:12.2f}  {100 * value / (total / n):4.0f}%  {label}{count}")
    lines.append(f"{total / n * 1000:12.2f}  100%  total")
    return "\n".join(lines), {"total": total / n, **parts}


def count_requests(setup, n: int = 3) -> dict:
    idp = setup.idp
    idp.fetched.clear()
    with AwsCounter(setup.broker) as counter:
        for _ in range(n):
            login(setup)
    calls = {k: v / n for k, v in sorted(counter.calls.items())}
    # First-call order, i.e. the order of the flow.
    sites = [(path, operation, site, count / n)
             for (path, operation, site), count in counter.sites.items()]
    fetched = list(idp.fetched)
    endpoints = idp.endpoints
    return {
        "calls": calls,
        "dynamodb": sum(v for k, v in calls.items() if k.startswith("dynamodb.")),
        "secretsmanager": sum(v for k, v in calls.items() if k.startswith("secretsmanager.")),
        "jwks_or_discovery": sum(1 for u in fetched if u == endpoints["jwks_uri"]
                                 or u.endswith("/.well-known/openid-configuration")) / n,
        "token_endpoint": sum(1 for u in fetched if u == endpoints["token_endpoint"]) / n,
        "sites": sites,
    }


def main(argv: list[str]) -> dict:
    n = int(argv[argv.index("--logins") + 1]) if "--logins" in argv else 150
    with AwsServer() as aws_server:
        setup = start_broker(aws_server)
        from chalicelib.secrets import secret_store

        # What a login reads again once the 10-minute secrets cache has expired (provisioning and
        # the setup above filled it): empty it, then count the first login's reads.
        secret_store()._cache.clear()
        with AwsCounter(setup.broker) as cold:
            login(setup)  # cold: secrets, signing keys, JWKS, connection cache, lazy imports
        secrets_per_fill = sum(v for k, v in cold.calls.items() if k.startswith("secretsmanager."))
        for _ in range(10):
            login(setup)
        requests = count_requests(setup)
        crypto = crypto_floor()
        round_trip_a = dynamodb_round_trip()
        first = measure(setup, n // 2)
        round_trip_b = dynamodb_round_trip()
        second = measure(setup, n - n // 2)
        round_trip = (round_trip_a + round_trip_b) / 2
        round_trip_unvalidated = dynamodb_round_trip(client=_unvalidated_client())
        per_login = (first["per_login"] * (n // 2) + second["per_login"] * (n - n // 2)) / n
        by_path = {p: (first["by_path"].get(p, 0) * (n // 2) + second["by_path"].get(p, 0)
                       * (n - n // 2)) / n for p in second["by_path"]}
        floor = 2 * crypto["sign"] + crypto["verify"] + MIN_DYNAMODB_CALLS * round_trip
        ratio = per_login / floor
        figures = [figure(
            "warm login CPU (authorize + callback + token, broker process)", per_login * 1000,
            "ms", ref_name="floor", ref_value=floor * 1000, budget=f"<= {CPU_BUDGET}x floor",
            ok=ratio <= CPU_BUDGET,
            note=(f"{n} logins; per endpoint: "
                  + ", ".join(f"{p} {v * 1000:.2f} ms" for p, v in sorted(by_path.items()))
                  + f"; upstream IdP signing subtracted: {first['idp_per_login'] * 1000:.2f} ms. "
                  f"Floor = 2 x RS256 sign {crypto['sign'] * 1000:.2f} ms + 1 x RS256 verify "
                  f"{crypto['verify'] * 1000:.3f} ms (2048-bit, raw cryptography) + {MIN_DYNAMODB_CALLS} x "
                  f"DynamoDB round trip "
                  f"{round_trip * 1000:.2f} ms (client CPU, boto3, same run). With the "
                  f"{requests['dynamodb']:.0f} calls the broker makes now the floor would be "
                  f"{(2 * crypto['sign'] + crypto['verify'] + requests['dynamodb'] * round_trip) * 1000:.2f}"
                  " ms."))]
        ok_requests = (requests["dynamodb"] <= DYNAMODB_BUDGET and requests["secretsmanager"] == 0
                       and requests["jwks_or_discovery"] == 0)
        figures.append(figure(
            "AWS requests per warm login (DynamoDB)", requests["dynamodb"], "calls",
            ref_name="minimum", ref_value=MIN_DYNAMODB_CALLS,
            budget=f"DynamoDB <= {DYNAMODB_BUDGET}, Secrets Manager 0, no discovery/JWKS fetch",
            ok=ok_requests,
            note=("by operation: " + ", ".join(f"{k} {v:g}" for k, v in requests["calls"].items())
                  + f"; Secrets Manager {requests['secretsmanager']:g}; discovery/JWKS fetches "
                  f"{requests['jwks_or_discovery']:g}; upstream token endpoint "
                  f"{requests['token_endpoint']:g}")))
        sites_text = "\n".join(["per login  endpoint              operation                   made by"]
                               + [f"{count:9g}  {path:20s}  {operation:26s}  {site}"
                                  for path, operation, site, count in requests["sites"]])
        split_text, split = attribute(setup, 30)
        routes = meter_routes(setup)
        other_cpu = cpu_per_route(setup, max(20, n // 3))
        for path, spent in by_path.items():
            name = route_name("", path, "login")
            if name in routes:
                routes[name]["cpu_ms"] = spent * 1000
        for name, spent in other_cpu.items():
            routes.setdefault(name, {"calls": {}, "wru": 0.0, "rru": 0.0})["cpu_ms"] = spent
        notes = [MINIMUM_WHY,
                 f"Client CPU per DynamoDB round trip in this run: {round_trip * 1000:.2f} ms with "
                 f"the broker's client configuration (chalicelib/aws.py _config), "
                 f"{round_trip_unvalidated * 1000:.2f} ms with parameter_validation=False added."]
        from chalicelib.secrets import CACHE_SECONDS

        result = {"script": "warm_login", "figures": figures, "notes": notes, "requests": requests,
                  "routes": routes, "secrets_per_cache_fill": secrets_per_fill,
                  "secrets_cache_seconds": CACHE_SECONDS,
                  "split": split, "round_trip_ms": round_trip * 1000,
                  "round_trip_unvalidated_ms": round_trip_unvalidated * 1000,
                  "profile_title": "Where a warm login's CPU and AWS calls go",
                  "profile": sites_text + "\n\n" + split_text}
        if not all(f["ok"] for f in figures):
            units = 20
            _breakdown, top = profile(lambda: [login(setup) for _ in range(units)], units, top=18)
            result["profile"] += (f"\n\ncProfile (CPU clock) of {units} warm logins, top functions "
                                  f"by own time:\n" + top)
    return result


if __name__ == "__main__":
    emit(main(sys.argv[1:]), sys.argv[1:])
