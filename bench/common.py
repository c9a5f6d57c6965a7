"""Shared harness of the benchmarks: environment, the embedded AWS endpoint in its own process,
API Gateway REST proxy events for the Lambda handler, an in-process upstream IdP with prepared
answers, and a federated login driver.

Nothing here asserts anything about performance: the scripts print figures.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ADMIN_CLIENT_ID = "AdminBootstrapClient0000000000001"
ISSUER = "http://127.0.0.1:8000/"
# The upstream IdP lives in this process (prepared answers); its URLs name a loopback port nobody
# listens on, so a request that escaped the patches would fail at once and never leave the host.
UPSTREAM = "http://127.0.0.1:9/idp"
APP_CALLBACK = "https://app.example.com/callback"

ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "BROKER_STAGE": "local",
    "BROKER_ISSUER": ISSUER,
    "BROKER_ALLOW_INSECURE_LOOPBACK": "true",
    "BROKER_ADMIN_CLIENT_ID": ADMIN_CLIENT_ID,
}


def apply_env(endpoint: str) -> None:
    os.environ.update(ENV)
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    os.environ.pop("AWS_PROFILE", None)


def cpu() -> float:
    """CPU seconds (user + system) of this process so far."""
    return time.process_time()


def median(values):
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


# --------------------------------------------------------------------------- AWS endpoint

class AwsServer:
    """scripts/embedded_aws.EmbeddedAws in a child process, so its CPU is not ours."""

    def __init__(self, max_seconds: int = 900):
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "aws_server.py"), str(max_seconds)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            cwd=str(ROOT))
        line = _readline(self.proc, 60)
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"embedded AWS did not start: {line!r}")
        self.endpoint = line.split(" ", 1)[1].strip()

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return box[0] if box else ""


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of another process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        raw = fh.read()
    fields = raw[raw.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_PROVISION = """
import os, sys
sys.path.insert(0, sys.argv[1])
from chalicelib import aws
from chalicelib.settings import get_settings
from scripts.provision import provision
provision("local", os.environ["AWS_ENDPOINT_URL"])
aws.client("secretsmanager").put_secret_value(SecretId=get_settings().admin_secret_name,
                                              SecretString=sys.stdin.read())
"""


def provision_stack(endpoint: str, admin_secret: str) -> None:
    """scripts/provision.py in a child process: the template tooling and the STS/SQS models it
    loads must not count in the broker process's memory or imports."""
    env = dict(os.environ, **ENV, AWS_ENDPOINT_URL=endpoint)
    done = subprocess.run([sys.executable, "-c", _PROVISION, str(ROOT)], input=admin_secret,
                          env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"provisioning failed: {done.stderr[-2000:]}")


# --------------------------------------------------------------------------- Lambda events

class LambdaContext:
    function_name = "identity-broker-dev"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:identity-broker-dev"
    log_group_name = "/aws/lambda/identity-broker-dev"
    log_stream_name = "bench"

    def __init__(self):
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 28_000


def api_event(method: str, path: str, query: dict | None = None, headers: dict | None = None,
              body: str | None = None, route: tuple[str, dict] | None = None) -> dict:
    """An API Gateway REST proxy event; ``route`` is (resource template, path parameters) for a
    route with path parameters."""
    resource, path_params = route or (path, None)
    headers = {"Host": "127.0.0.1:8000", "X-Forwarded-Proto": "http", **(headers or {})}
    multi_query = None
    if query:
        multi_query = {k: (v if isinstance(v, list) else [v]) for k, v in query.items()}
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} if multi_query else None,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": path_params,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource, "httpMethod": method, "path": "/api" + path, "stage": "api",
            "requestId": str(uuid.uuid4()), "accountId": "123456789012", "apiId": "bench",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "bench"},
            "protocol": "HTTP/1.1", "requestTimeEpoch": int(time.time() * 1000),
        },
        "body": body,
        "isBase64Encoded": False,
    }


class Response:
    def __init__(self, raw: dict):
        self.raw = raw
        self.status = raw["statusCode"]
        self.body = raw.get("body") or ""
        self.headers = {k.lower(): v for k, v in (raw.get("headers") or {}).items()}
        self.multi = {k.lower(): v for k, v in (raw.get("multiValueHeaders") or {}).items()}

    def header(self, name: str) -> str | None:
        name = name.lower()
        if name in self.headers:
            return self.headers[name]
        values = self.multi.get(name)
        return values[0] if values else None

    def cookies(self) -> dict[str, str]:
        values = list(self.multi.get("set-cookie") or [])
        if not values and "set-cookie" in self.headers:
            values = [self.headers["set-cookie"]]
        jar = {}
        for value in values:
            name, _, rest = value.partition("=")
            jar[name.strip()] = "" if "Max-Age=0" in value else rest.split(";", 1)[0]
        return jar

    def json(self):
        return json.loads(self.body)

    def location_params(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.header("location")).query).items()}


class Broker:
    """Calls ``app(event, context)`` and adds the CPU spent inside the handler to ``handler_cpu``."""

    def __init__(self, app):
        self.app = app
        self.handler_cpu = 0.0
        self.requests = 0
        self.by_path: dict[str, float] = {}
        self.current_path = ""

    def call(self, method, path, *, query=None, headers=None, body=None, route=None) -> Response:
        event = api_event(method, path, query, headers, body, route)
        context = LambdaContext()
        self.current_path = f"{method} {path}"
        start = cpu()
        raw = self.app(event, context)
        spent = cpu() - start
        self.handler_cpu += spent
        self.by_path[path] = self.by_path.get(path, 0.0) + spent
        self.requests += 1
        return Response(raw)

    def form(self, path, fields: dict, headers=None) -> Response:
        return self.call("POST", path, body=urlencode(fields),
                         headers={"Content-Type": "application/x-www-form-urlencoded",
                                  **(headers or {})})

    def api(self, method, path, token, body=None) -> Response:
        headers = {"Authorization": f"Bearer {token}"}
        payload = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            payload = json.dumps(body)
        return self.call(method, path, headers=headers, body=payload)


# --------------------------------------------------------------------------- upstream IdP

def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class FakeIdp:
    """The upstream OpenID Provider, answered in this process.

    ``chalicelib.netguard.safe_post_form`` (token endpoint) and ``safe_get`` (JWKS) are replaced:
    the token endpoint returns an ID token signed with a key of ours (the nonce is only known at
    /authorize, so it is signed per login and that CPU is booked in ``cpu`` to be subtracted from
    the broker's), the JWKS answers from memory. Every outbound URL is recorded in ``fetched``.
    """

    def __init__(self, client_id="broker-client", client_secret="broker-secret"):
        from joserfc.jwk import RSAKey

        self.issuer = UPSTREAM
        self.client_id = client_id
        self.client_secret = client_secret
        self.key = RSAKey.generate_key(2048, parameters={"kid": "bench-1", "use": "sig",
                                                         "alg": "RS256"}, private=True)
        self.jwks = {"keys": [self.key.as_dict(private=False)]}
        self.codes: dict[str, dict] = {}
        self.cpu = 0.0
        self.fetched: list[str] = []
        self.sub = "alice"

    @property
    def endpoints(self) -> dict:
        return {"issuer": self.issuer, "authorization_endpoint": self.issuer + "/auth",
                "token_endpoint": self.issuer + "/token", "jwks_uri": self.issuer + "/jwks"}

    def install(self) -> None:
        import chalicelib.login.jwks_cache as jwks_cache
        import chalicelib.netguard as netguard

        netguard.safe_get = self.safe_get
        netguard.safe_post_form = self.safe_post_form
        jwks_cache.safe_get = self.safe_get

    def _response(self, url: str, status: int, body: dict):
        from chalicelib.netguard import SafeResponse

        return SafeResponse(status_code=status, headers={"Content-Type": "application/json"},
                            content=json.dumps(body).encode(), url=url)

    def safe_get(self, url, **_kwargs):
        start = cpu()
        self.fetched.append(url)
        if url == self.endpoints["jwks_uri"]:
            response = self._response(url, 200, self.jwks)
        else:
            response = self._response(url, 404, {"error": "not_found"})
        self.cpu += cpu() - start
        return response

    def safe_post_form(self, url, data, *, auth=None, headers=None, **_kwargs):
        from joserfc import jwt

        start = cpu()
        self.fetched.append(url)
        try:
            if url != self.endpoints["token_endpoint"]:
                return self._response(url, 404, {"error": "not_found"})
            auth = auth or _basic_credentials(headers or {})
            client_id = auth[0] if auth else data.get("client_id")
            secret = auth[1] if auth else data.get("client_secret")
            grant = self.codes.pop(data.get("code"), None)
            if client_id != self.client_id or secret != self.client_secret or grant is None:
                return self._response(url, 400, {"error": "invalid_grant"})
            if grant.get("code_challenge") and s256(data.get("code_verifier", "")) != grant[
                    "code_challenge"]:
                return self._response(url, 400, {"error": "invalid_grant"})
            now = int(time.time())
            claims = {"iss": self.issuer, "sub": self.sub, "aud": self.client_id, "iat": now,
                      "exp": now + 300, "auth_time": now, "email": "alice@example.com",
                      "email_verified": True, "name": "Alice Liddell", "given_name": "Alice",
                      "family_name": "Liddell"}
            if grant.get("nonce"):
                claims["nonce"] = grant["nonce"]
            id_token = jwt.encode({"alg": "RS256", "kid": "bench-1", "typ": "JWT"}, claims,
                                  self.key, algorithms=["RS256"])
            return self._response(url, 200, {"access_token": secrets.token_urlsafe(32),
                                             "token_type": "Bearer", "expires_in": 300,
                                             "id_token": id_token, "scope": "openid profile email"})
        finally:
            self.cpu += cpu() - start

    def authorize(self, location: str) -> dict[str, str]:
        """The browser at the IdP: the user logs in, the IdP answers with a code (query mode)."""
        start = cpu()
        params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        if params.get("client_id") != self.client_id or params.get("response_type") != "code":
            raise RuntimeError(f"unexpected upstream authorization request: {location[:200]}")
        code = secrets.token_urlsafe(24)
        self.codes[code] = {"nonce": params.get("nonce"),
                            "code_challenge": params.get("code_challenge")}
        self.cpu += cpu() - start
        return {"code": code, "state": params["state"], "iss": self.issuer}



def _basic_credentials(headers: dict) -> tuple[str, str] | None:
    """client_secret_basic as the broker's upstream client sends it (RFC 6749 §2.3.1: each part
    form-urlencoded, then Base64)."""
    import base64
    from urllib.parse import unquote_plus

    value = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
    if not value.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(value[6:]).decode().partition(":")
    return unquote_plus(user), unquote_plus(password)

# --------------------------------------------------------------------------- the flow

class Setup:
    """One provisioned stack: an application (confidential client) and a back-channel connection."""

    def __init__(self, broker: Broker, idp: FakeIdp, admin_secret: str):
        self.broker = broker
        self.idp = idp
        token = broker.form("/oauth/token", {
            "grant_type": "client_credentials", "client_id": ADMIN_CLIENT_ID,
            "client_secret": admin_secret, "audience": ISSUER + "api/v2/"})
        if token.status != 200:
            raise RuntimeError(f"admin token: {token.status} {token.body[:300]}")
        self.admin_token = token.json()["access_token"]
        created = broker.api("POST", "/api/v2/clients", self.admin_token,
                             {"name": "bench-app", "callbacks": [APP_CALLBACK]})
        if created.status != 201:
            raise RuntimeError(f"create client: {created.status} {created.body[:300]}")
        self.app = created.json()
        self.connection_name = f"bench-{secrets.token_hex(3)}"
        connection = broker.api("POST", "/api/v2/connections", self.admin_token, {
            "name": self.connection_name, "strategy": "oidc",
            "enabled_clients": [self.app["client_id"]],
            "options": {"type": "back_channel", **idp.endpoints, "client_id": idp.client_id,
                        "client_secret": idp.client_secret,
                        "token_endpoint_auth_method": "client_secret_basic",
                        "connection_settings": {"pkce": "S256"},
                        "scope": "openid profile email"}})
        if connection.status != 201:
            raise RuntimeError(f"create connection: {connection.status} {connection.body[:300]}")
        self.connection = connection.json()


def login(setup: Setup, *, scope="openid profile email offline_access") -> dict:
    """One full federated login from a fresh browser: /authorize -> IdP -> /login/callback
    (back-channel code exchange with the IdP) -> POST /oauth/token. Returns the token response."""
    broker, idp, app = setup.broker, setup.idp, setup.app
    verifier = secrets.token_urlsafe(48)
    start = broker.call("GET", "/authorize", query={
        "client_id": app["client_id"], "redirect_uri": APP_CALLBACK, "response_type": "code",
        "scope": scope, "state": "st", "nonce": "nn", "code_challenge": s256(verifier),
        "code_challenge_method": "S256", "connection": setup.connection_name})
    if start.status != 302:
        raise RuntimeError(f"/authorize: {start.status} {start.body[:300]}")
    cookies = start.cookies()
    answer = idp.authorize(start.header("location"))
    # The connection's own redirect URI (mix-up defence): where the IdP sends the browser back.
    callback_path = urlsplit(parse_qs(urlsplit(start.header("location")).query)["redirect_uri"][0]).path
    callback = broker.call("GET", callback_path, query=answer,
                           route=("/login/callback/{connection_name}",
                                  {"connection_name": callback_path.rsplit("/", 1)[1]}),
                           headers={"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())})
    if callback.status != 303:
        raise RuntimeError(f"/login/callback: {callback.status} {callback.body[:300]}")
    params = callback.location_params()
    if "code" not in params:
        raise RuntimeError(f"/login/callback error: {params}")
    tokens = broker.form("/oauth/token", {
        "grant_type": "authorization_code", "code": params["code"], "redirect_uri": APP_CALLBACK,
        "code_verifier": verifier, "client_id": app["client_id"],
        "client_secret": app["client_secret"]})
    if tokens.status != 200:
        raise RuntimeError(f"/oauth/token: {tokens.status} {tokens.body[:300]}")
    return tokens.json()


def refresh(setup: Setup, refresh_token: str) -> dict:
    app = setup.app
    response = setup.broker.form("/oauth/token", {
        "grant_type": "refresh_token", "refresh_token": refresh_token,
        "client_id": app["client_id"], "client_secret": app["client_secret"]})
    if response.status != 200:
        raise RuntimeError(f"refresh: {response.status} {response.body[:300]}")
    return response.json()


class AwsCounter:
    """Counts AWS API calls by ``service.Operation`` with botocore's before-call events; with a
    ``broker``, also by endpoint and by the chalicelib functions that made them."""

    SERVICES = ("dynamodb", "secretsmanager", "sqs")

    def __init__(self, broker: "Broker | None" = None):
        import collections

        self.broker = broker
        self.calls = collections.Counter()
        self.sites = collections.Counter()  # (endpoint, "service.Operation", "caller > callee")

    def _on_call(self, model, **_):
        operation = f"{model.service_model.service_name}.{model.name}"
        self.calls[operation] += 1
        if self.broker is not None:
            self.sites[(self.broker.current_path, operation, _call_site())] += 1

    def __enter__(self):
        from chalicelib import aws

        for service in self.SERVICES:
            aws.client(service).meta.events.register("before-call.*.*", self._on_call)
        return self

    def __exit__(self, *exc):
        from chalicelib import aws

        for service in self.SERVICES:
            aws.client(service).meta.events.unregister("before-call.*.*", self._on_call)


def _call_site(depth: int = 3) -> str:
    """The innermost chalicelib functions on the stack, outside the storage/client modules."""
    frames = []
    frame = sys._getframe(2)
    while frame is not None and len(frames) < depth:
        path = frame.f_code.co_filename.replace("\\", "/")
        if "/chalicelib/" in path and not path.endswith(("/store/dynamo.py", "/chalicelib/aws.py",
                                                          "/chalicelib/secrets.py")):
            short = path.split("/chalicelib/", 1)[1]
            frames.append(f"{short}:{frame.f_code.co_name}")
        frame = frame.f_back
    return " > ".join(reversed(frames)) or "?"


def start_broker(aws_server: AwsServer):
    """Environment, provisioning, the app, the fake IdP and one application + connection."""
    apply_env(aws_server.endpoint)
    admin_secret = "bench-admin-" + secrets.token_urlsafe(24)
    provision_stack(aws_server.endpoint, admin_secret)
    from app import app

    idp = FakeIdp()
    idp.install()
    broker = Broker(app)
    return Setup(broker, idp, admin_secret)


# --------------------------------------------------------------------------- output

def figure(name: str, value: float, unit: str, *, ref_name: str | None = None,
           ref_value: float | None = None, budget: str = "", ok: bool | None = None,
           ratio: float | None = None, note: str = "") -> dict:
    if ratio is None and ref_value:
        ratio = value / ref_value
    return {"name": name, "value": value, "unit": unit, "ref_name": ref_name,
            "ref_value": ref_value, "ratio": ratio, "budget": budget, "ok": ok, "note": note}


def emit(result: dict, argv: list[str]) -> None:
    """Print the figures; with ``--json PATH`` also write them for run_all.py."""
    for fig in result.get("figures", []):
        ref = ""
        if fig["ref_value"] is not None:
            ref = f"  vs {fig['ref_name']} {fig['ref_value']:.4g} {fig['unit']}"
        ratio = f"  ratio {fig['ratio']:.2f}x" if fig["ratio"] is not None else ""
        verdict = {True: "MEETS", False: "MISSES", None: ""}[fig["ok"]]
        print(f"{fig['name']}: {fig['value']:.4g} {fig['unit']}{ref}{ratio}  "
              f"budget {fig['budget']} {verdict}")
        if fig.get("note"):
            print(f"    {fig['note']}")
    for line in result.get("notes", []):
        print("  -", line)
    if result.get("profile"):
        print(result["profile"])
    if "--json" in argv:
        path = Path(argv[argv.index("--json") + 1])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2))


class Attribution:
    """Exact CPU (process_time) spent inside a few functions while active, without a profiler:
    AWS SDK calls (botocore ``BaseClient._make_api_call`` and the store's lean DynamoDB caller
    ``chalicelib.aws.DynamoJson.call``), the broker's token signing
    (``chalicelib.keys.sign_jwt``) and the upstream ID token check (``validate_id_token``)."""

    def __init__(self):
        self.cpu: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._undo: list = []

    def _wrap(self, owner, name: str, label: str) -> None:
        original = getattr(owner, name)
        spent, calls = self.cpu, self.calls

        def wrapper(*args, **kwargs):
            start = cpu()
            try:
                return original(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + cpu() - start
                calls[label] = calls.get(label, 0) + 1

        setattr(owner, name, wrapper)
        self._undo.append((owner, name, original))

    def __enter__(self):
        import botocore.client

        import chalicelib.keys
        import chalicelib.login.id_token
        import chalicelib.provider.issue

        import chalicelib.aws

        self._wrap(botocore.client.BaseClient, "_make_api_call", "AWS SDK calls (boto3/botocore)")
        # The store's DynamoDB calls: chalicelib.aws's lean JSON caller (botocore's events).
        self._wrap(chalicelib.aws.DynamoJson, "call", "AWS SDK calls (boto3/botocore)")
        self._wrap(chalicelib.keys, "sign_jwt", "signing broker tokens (sign_jwt)")
        self._wrap(chalicelib.provider.issue, "sign_jwt", "signing broker tokens (sign_jwt)")
        self._wrap(chalicelib.login.id_token, "validate_id_token", "upstream ID token check")
        return self

    def __exit__(self, *exc):
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)


# Where a request's CPU goes: (path suffix, function) -> label. Cumulative times, so nested
# entries overlap (the botocore parts are inside "AWS SDK calls").
PROFILE_BUCKETS = [
    (("chalice/app.py", "__call__"), "whole Lambda handler (Chalice.__call__)"),
    (("botocore/client.py", "_make_api_call"), "AWS SDK calls (botocore _make_api_call)"),
    (("chalicelib/aws.py", "call"), "DynamoDB calls (chalicelib.aws DynamoJson.call)"),
    (("chalicelib/aws.py", "_signed_headers"), "  SigV4 signing (lean)"),
    (("chalicelib/aws.py", "exchange"), "  HTTP send/receive (lean)"),
    (("botocore/auth.py", "add_auth"), "  SigV4 signing"),
    (("botocore/client.py", "_convert_to_request_dict"), "  request validation + serialisation"),
    (("botocore/endpoint.py", "_send"), "  HTTP send/receive (urllib3)"),
    (("botocore/parsers.py", "parse"), "  response parsing"),
    (("botocore/hooks.py", "emit"), "  event hooks (all emits)"),
    (("chalicelib/store/dynamo.py", "to_dynamo"), "to_dynamo (TypeSerializer)"),
    (("chalicelib/store/dynamo.py", "from_dynamo"), "from_dynamo (TypeDeserializer)"),
    (("chalicelib/keys.py", "sign_jwt"), "broker token signing (sign_jwt)"),
    (("chalicelib/login/id_token.py", "validate_id_token"), "upstream ID token check"),
    (("chalicelib/registry/clients.py", "secret_matches"), "client secret check"),
    (("chalicelib/login/pages.py", "read_cookies"), "cookie parsing"),
]


def profile(func, per: int, *, top: int = 22) -> tuple[str, str]:
    """cProfile ``func`` (which does ``per`` units of work) with a CPU clock: (breakdown per unit,
    top functions). The profiler inflates times (most for code making many small calls); read the
    figures as shares and rankings, and the exact split from :class:`Attribution`."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile(time.process_time)  # CPU, not time spent waiting for AWS
    profiler.enable()
    try:
        func()
    finally:
        profiler.disable()
    stats = pstats.Stats(profiler)
    found: dict[str, float] = {}
    for (filename, _line, name), (_cc, _nc, _tt, cumulative, _callers) in stats.stats.items():
        for (suffix, function), label in PROFILE_BUCKETS:
            if name == function and filename.replace("\\", "/").endswith(suffix):
                found[label] = found.get(label, 0.0) + cumulative
    total = found.get(PROFILE_BUCKETS[0][1]) or 1.0
    lines = ["ms per unit (profiled)  share  where"]
    for _key, label in PROFILE_BUCKETS:
        if label in found:
            lines.append(f"{1000 * found[label] / per:22.2f}  {100 * found[label] / total:4.0f}%  {label}")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime").print_stats(top)
    text = out.getvalue()
    index = text.find("   ncalls")
    return "\n".join(lines), (text[index:] if index >= 0 else text).rstrip()
