"""A bounded load run for `make bench`: concurrent federated logins, then refresh grants, over real
HTTP through chalice's local server (what ``chalice local`` runs), storage on the embedded AWS
endpoint (moto) in its own process, the upstream IdP answered in-process (bench/common.FakeIdp).

Reports p50/p95/p99 per route as the clients saw them, errors, and two write checks:

- every login made exactly one session, one authorization code and one user write, and one grant
  (counted on the broker's DynamoDB client: the items of its PutItem/TransactWriteItems calls);
- afterwards every refresh token issued is in the table, live, with its grant.

The latency figures come from one 2-core machine holding the broker's threads, the IdP and the
clients (moto in another process): they measure contention, not Lambda (see bench/latency.py for
the AWS model). Reuses the Stats/percentile helpers of tests/resilience/test_load.py.

    .venv/bin/python bench/load_run.py [--logins 50] [--refreshes 200] [--workers 50] [--json PATH]
"""
from __future__ import annotations

import collections
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    APP_CALLBACK,
    AwsServer,
    Broker,
    FakeIdp,
    Setup,
    apply_env,
    emit,
    figure,
    provision_stack,
    s256,
)

ROUTES = ("authorize", "callback", "token (code)", "token (refresh)")
# The pk prefix of each record a login writes once (chalicelib/sessions.py, provider/grant_store,
# store/users.py key formats).
ONCE_PER_LOGIN = {"session": "SESSION#", "code": "CODE#", "grant": "GRANT#", "user": "USER#"}


class DistinctUsersIdp(FakeIdp):
    """The bench IdP, answering each login as a different user (``sub``), as real concurrent
    logins are; FakeIdp answers every login as alice, and concurrent logins of one user contend
    for the same user record."""

    _local = threading.local()

    @property
    def sub(self):
        return getattr(self._local, "sub", "alice")

    @sub.setter
    def sub(self, value):
        self._local.sub = value

    def authorize(self, location: str) -> dict:
        import secrets

        answer = super().authorize(location)
        self.codes[answer["code"]]["sub"] = f"load-{secrets.token_hex(6)}"
        return answer

    def safe_post_form(self, url, data, **kwargs):
        self._local.sub = (self.codes.get(data.get("code")) or {}).get("sub", "alice")
        return super().safe_post_form(url, data, **kwargs)


def start_load_broker(aws_server: AwsServer) -> Setup:
    """bench.common.start_broker with the distinct-users IdP."""
    import secrets

    apply_env(aws_server.endpoint)
    admin_secret = "bench-admin-" + secrets.token_urlsafe(24)
    provision_stack(aws_server.endpoint, admin_secret)
    from app import app

    idp = DistinctUsersIdp()
    idp.install()
    return Setup(Broker(app), idp, admin_secret)


def _arg(argv, name, default):
    return int(argv[argv.index(name) + 1]) if name in argv else default


class WriteCounter:
    """Counts the records the broker writes, by pk prefix, from its DynamoDB requests' parameters."""

    def __init__(self):
        self.puts: collections.Counter = collections.Counter()
        self.retries: collections.Counter = collections.Counter()  # by operation
        self.lock = threading.Lock()

    def _on_response(self, model, parsed, **_):
        attempts = parsed.get("ResponseMetadata", {}).get("RetryAttempts", 0)
        if attempts:
            with self.lock:
                self.retries[model.name] += attempts

    def _on_params(self, model, params, **_):
        # Records created (Put) and the user profile, upserted (Update) at each login; the other
        # Updates (consuming a code, sliding a grant) change records that exist.
        items = []
        if model.name == "PutItem":
            items.append(params["Item"])
        elif model.name == "TransactWriteItems":
            for entry in params["TransactItems"]:
                if "Put" in entry:
                    items.append(entry["Put"]["Item"])
                elif "Update" in entry and entry["Update"]["Key"]["sk"]["S"] == "PROFILE":
                    items.append(entry["Update"]["Key"])
        with self.lock:
            for item in items:
                pk, sk = item["pk"]["S"], item["sk"]["S"]
                for kind, prefix in ONCE_PER_LOGIN.items():
                    # The record itself, not the references kept in other partitions (USER#/SESSION#).
                    if pk.startswith(prefix) and (kind != "user" or sk == "PROFILE"):
                        self.puts[kind] += 1

    def __enter__(self):
        from chalicelib import aws

        events = aws.client("dynamodb").meta.events
        events.register("before-parameter-build.dynamodb", self._on_params)
        events.register("after-call.dynamodb", self._on_response)
        return self

    def __exit__(self, *exc):
        from chalicelib import aws

        events = aws.client("dynamodb").meta.events
        events.unregister("before-parameter-build.dynamodb", self._on_params)
        events.unregister("after-call.dynamodb", self._on_response)


def one_login(base: str, http, setup, stats) -> dict:
    import secrets

    verifier = secrets.token_urlsafe(48)
    query = urlencode({
        "client_id": setup.app["client_id"], "redirect_uri": APP_CALLBACK, "response_type": "code",
        "scope": "openid profile email offline_access", "state": "st", "nonce": "nn",
        "code_challenge": s256(verifier), "code_challenge_method": "S256",
        "connection": setup.connection_name})
    started = stats.timed("authorize", lambda: http.get(f"{base}/authorize?{query}",
                                                        allow_redirects=False, timeout=60))
    if started.status_code != 302:
        raise RuntimeError(f"authorize: {started.status_code} {started.text[:200]}")
    location = started.headers["Location"]
    answer = setup.idp.authorize(location)  # the browser at the IdP
    callback_path = urlsplit(parse_qs(urlsplit(location).query)["redirect_uri"][0]).path
    cookie = "; ".join(f"{c.name}={c.value}" for c in http.cookies)
    back = stats.timed("callback", lambda: http.get(
        f"{base}{callback_path}?{urlencode(answer)}", allow_redirects=False, timeout=60,
        headers={"Cookie": cookie}))
    if back.status_code != 303:
        raise RuntimeError(f"callback: {back.status_code} {back.text[:200]}")
    code = parse_qs(urlsplit(back.headers["Location"]).query).get("code", [None])[0]
    if not code:
        raise RuntimeError(f"callback without a code: {back.headers['Location'][:200]}")
    tokens = stats.timed("token (code)", lambda: http.post(f"{base}/oauth/token", timeout=60, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": APP_CALLBACK,
        "code_verifier": verifier, "client_id": setup.app["client_id"],
        "client_secret": setup.app["client_secret"]}))
    if tokens.status_code != 200:
        raise RuntimeError(f"token: {tokens.status_code} {tokens.text[:200]}")
    return tokens.json()


def one_refresh(base: str, http, setup, token: str, stats) -> str:
    response = stats.timed("token (refresh)", lambda: http.post(f"{base}/oauth/token", timeout=60,
                                                               data={
        "grant_type": "refresh_token", "refresh_token": token,
        "client_id": setup.app["client_id"], "client_secret": setup.app["client_secret"]}))
    if response.status_code != 200:
        raise RuntimeError(f"refresh: {response.status_code} {response.text[:200]}")
    return response.json().get("refresh_token", token)


def check_tokens(tokens: list[str]) -> list[str]:
    """Every refresh token issued is in the table, live, and its grant record too."""
    import boto3

    from chalicelib.settings import get_settings
    from chalicelib.tokens import digest

    client = boto3.session.Session().client("dynamodb", region_name="us-east-1")
    table = get_settings().table_name
    now = int(time.time())
    problems = []
    for token in tokens:
        item = client.get_item(TableName=table, ConsistentRead=True,
                               Key={"pk": {"S": f"RT#{digest(token)}"}, "sk": {"S": "RT"}}).get("Item")
        if item is None:
            problems.append(f"refresh token {digest(token)[:8]} missing")
            continue
        if int(item.get("ttl", {"N": str(now + 1)})["N"]) <= now:
            problems.append(f"refresh token {digest(token)[:8]} expired")
        grant_id = next((item[k]["S"] for k in ("grant_id", "family_id") if k in item), None)
        if grant_id is None:
            problems.append(f"refresh token {digest(token)[:8]} names no grant")
            continue
        grant = client.get_item(TableName=table, ConsistentRead=True,
                                Key={"pk": {"S": f"GRANT#{grant_id}"}, "sk": {"S": "GRANT"}})
        if "Item" not in grant:
            problems.append(f"grant {grant_id[:8]} of a refresh token missing")
        elif "revoked_at" in grant["Item"]:
            problems.append(f"grant {grant_id[:8]} revoked")
    return problems


def main(argv: list[str]) -> dict:
    import requests

    from tests.resilience.test_load import Stats, _percentile
    from tests.support.live_server import live_server

    logins = _arg(argv, "--logins", 50)
    refreshes = _arg(argv, "--refreshes", 200)
    workers = _arg(argv, "--workers", 50)
    with AwsServer() as aws_server:
        setup = start_load_broker(aws_server)
        with live_server(setup.broker.app) as base:
            local = threading.local()

            def session():
                if not hasattr(local, "http"):
                    local.http = requests.Session()
                    local.http.trust_env = False
                return local.http

            def fresh_browser():
                http = requests.Session()  # a browser of its own: no cookies from another login
                http.trust_env = False
                return http

            warm = Stats()
            for _ in range(3):  # caches, keys, lazy imports
                one_login(base, fresh_browser(), setup, warm)
            stats = Stats()
            issued: list[str] = []
            lock = threading.Lock()

            def login_job(index):
                try:
                    tokens = one_login(base, fresh_browser(), setup, stats)
                    with lock:
                        issued.append(tokens["refresh_token"])
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    stats.error(f"login {index}: {type(exc).__name__}: {exc}")

            def refresh_job(index):
                with lock:
                    token = issued[index % len(issued)] if issued else None
                if token is None:
                    stats.error(f"refresh {index}: no token")
                    return
                try:
                    one_refresh(base, session(), setup, token, stats)
                except Exception as exc:  # noqa: BLE001
                    stats.error(f"refresh {index}: {type(exc).__name__}: {exc}")

            with WriteCounter() as writes:
                start = time.perf_counter()
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    list(pool.map(login_job, range(logins)))
                login_seconds = time.perf_counter() - start
                start = time.perf_counter()
                with ThreadPoolExecutor(max_workers=min(workers, max(1, len(issued)))) as pool:
                    list(pool.map(refresh_job, range(refreshes)))
                refresh_seconds = time.perf_counter() - start
            problems = check_tokens(list(issued))
    writes_per_login = {kind: writes.puts[kind] / logins for kind in ONCE_PER_LOGIN}
    latency = {}
    for route in ROUTES:
        values = stats.latency.get(route) or []
        if values:
            latency[route] = {"count": len(values),
                              **{f"p{q}": _percentile(values, q / 100) * 1000 for q in (50, 95, 99)},
                              "max": max(values) * 1000}
    exact = all(abs(v - 1) < 1e-9 for v in writes_per_login.values())
    rows = "\n".join(["route             count     p50     p95     p99     max  (ms, client side)"]
                     + [f"{route:16s} {row['count']:6d} {row['p50']:7.0f} {row['p95']:7.0f} "
                        f"{row['p99']:7.0f} {row['max']:7.0f}" for route, row in latency.items()])
    figures = [
        figure("load run: errors", float(len(stats.errors)), "errors", budget="0",
               ok=not stats.errors,
               note=(f"{logins} logins from {workers} concurrent browsers in {login_seconds:.1f} s, "
                     f"then {refreshes} refresh grants over the {len(issued)} refresh tokens in "
                     f"{refresh_seconds:.1f} s; chalice local (threaded) + moto in another "
                     f"process, one 2-core machine. botocore retries (DynamoDB calls past the "
                     f"broker's 2 s read timeout while moto serialises them): "
                     + (", ".join(f"{k} {v}" for k, v in writes.retries.items()) or "none")
                     + ". A retried TransactWriteItems whose first attempt committed is refused by "
                     "moto, which ignores the ClientRequestToken botocore sends (real DynamoDB "
                     "answers the retry as the committed transaction for 10 minutes); errors "
                     "after such retries are the emulator's. "
                     + ("First errors: " + "; ".join(stats.errors[:3]) if stats.errors else ""))),
        figure("load run: lost or extra writes", float(len(problems)) + (0.0 if exact else 1.0),
               "problems", budget="0", ok=not problems and exact,
               note=("records written per login (broker's own DynamoDB requests): "
                     + ", ".join(f"{k} {v:g}" for k, v in writes_per_login.items())
                     + f"; refresh tokens issued {len(issued)}, found live with their grant "
                     f"{len(issued) - len(problems)}"
                     + (". Problems: " + "; ".join(problems[:5]) if problems else "."))),
    ]
    for route in ("authorize", "callback", "token (code)", "token (refresh)"):
        if route in latency:
            row = latency[route]
            figures.append(figure(f"load run p95: {route}", row["p95"], "ms",
                                  note=f"p50 {row['p50']:.0f} ms, p99 {row['p99']:.0f} ms, "
                                       f"{row['count']} requests"))
    return {"script": "load_run", "figures": figures, "latency": latency, "errors": stats.errors,
            "writes_per_login": writes_per_login, "problems": problems,
            "retries": dict(writes.retries),
            "profile_title": "Load run: latency per route (client side, local)", "profile": rows}


if __name__ == "__main__":
    emit(main(sys.argv[1:]), sys.argv[1:])
