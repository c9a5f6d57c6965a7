"""RFC 8693 token exchange (SPEC §10): AWS calls and broker CPU per exchange, warm, no refresh.

One federated login through a vault connection (``token_storage: vault``; the callback seals the
upstream tokens under a KMS data key), then N exchanges of the application's broker access token
for the upstream access token (``urn:connection:{name}``; the stored token lives 300 s, so none
refreshes), each through the Lambda handler as ``POST /oauth/token``. Counted per exchange:
DynamoDB calls by operation and call site, KMS calls, the broker's CPU inside the handler. The
same for N exchanges of an upstream ID token for broker tokens (the other direction), and, as the
reference, N refresh-token grants of the same application in the same run. Also: the KMS calls of
the first exchange in a container that did not seal the entry itself (its data key not cached).

    .venv/bin/python bench/token_exchange.py [--exchanges N] [--json PATH]
"""
from __future__ import annotations

import contextlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import (  # noqa: E402
    ISSUER,
    AwsCounter,
    AwsServer,
    emit,
    figure,
    login,
    refresh,
    start_broker,
)

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"


class Counter(AwsCounter):
    SERVICES = (*AwsCounter.SERVICES, "kms")


def vault_connection(setup) -> str:
    """A back-channel vault connection to the bench IdP listing the application."""
    idp, app = setup.idp, setup.app
    name = setup.connection_name + "-vault"
    created = setup.broker.api("POST", "/api/v2/connections", setup.admin_token, {
        "name": name, "strategy": "oidc", "enabled_clients": [app["client_id"]],
        "options": {"type": "back_channel", **idp.endpoints, "client_id": idp.client_id,
                    "client_secret": idp.client_secret,
                    "token_endpoint_auth_method": "client_secret_basic",
                    "connection_settings": {"pkce": "S256"}, "scope": "openid profile email",
                    "token_storage": "vault", "token_exchange_clients": [app["client_id"]]}})
    if created.status != 201:
        raise RuntimeError(f"create vault connection: {created.status} {created.body[:300]}")
    return name


def upstream_form(setup, access_token: str) -> dict:
    return {"grant_type": GRANT, "client_id": setup.app["client_id"],
            "client_secret": setup.app["client_secret"], "subject_token": access_token,
            "subject_token_type": ACCESS, "resource": f"urn:connection:{setup.connection_name}"}


def id_token_form(setup) -> dict:
    from joserfc import jwt

    idp, now = setup.idp, int(time.time())
    claims = {"iss": idp.issuer, "sub": idp.sub, "aud": idp.client_id, "iat": now,
              "exp": now + 300, "email": "alice@example.com", "email_verified": True,
              "name": "Alice Liddell"}
    token = jwt.encode({"alg": "RS256", "kid": "bench-1", "typ": "JWT"}, claims, idp.key,
                       algorithms=["RS256"])
    return {"grant_type": GRANT, "client_id": setup.app["client_id"],
            "client_secret": setup.app["client_secret"], "subject_token": token,
            "subject_token_type": ID_TOKEN, "scope": "openid email"}


def call_exchange(setup, form: dict, *, via_route: bool) -> dict:
    """Through the Lambda handler when the route dispatches the grant; else the flow function
    the route calls (``via_route`` False: the handler's own work is then not counted)."""
    if via_route:
        response = setup.broker.form("/oauth/token", form)
        if response.status != 200:
            raise RuntimeError(f"exchange: {response.status} {response.body[:300]}")
        return response.json()
    from chalicelib.login.token_exchange import token_exchange_request

    from bench.common import cpu

    start = cpu()
    try:
        return token_exchange_request(dict(form), None)
    finally:
        setup.broker.handler_cpu += cpu() - start


def route_dispatches(setup, form: dict) -> bool:
    response = setup.broker.form("/oauth/token", form)
    if response.status == 200:
        return True
    if "unsupported_grant_type" in response.body:
        return False
    raise RuntimeError(f"exchange: {response.status} {response.body[:300]}")


def measure(setup, make_form, count: int, via_route: bool) -> tuple[float, Counter, dict]:
    """(CPU ms per call, the AWS calls of ``count`` calls, the last answer)."""
    counter = Counter(setup.broker)
    setup.broker.handler_cpu = 0.0
    answer: dict = {}
    with counter:
        for _ in range(count):
            answer = call_exchange(setup, make_form(), via_route=via_route)
    return setup.broker.handler_cpu / count * 1000, counter, answer


def next_refresh_token(setup, refresh_token: str) -> str:
    """A refresh grant; the refresh token to use next (the same one unless it rotates)."""
    return refresh(setup, refresh_token).get("refresh_token") or refresh_token


def per_call(counter: Counter, service: str, count: int) -> float:
    return sum(n for op, n in counter.calls.items() if op.startswith(service + ".")) / count


def describe(counter: Counter, count: int) -> str:
    return ", ".join(f"{op} {n / count:g}" for op, n in sorted(counter.calls.items())) or "none"


def sites(counter: Counter, count: int) -> list[str]:
    return [f"{op} x{n / count:g}: {site}" for (_path, op, site), n in
            sorted(counter.sites.items(), key=lambda item: -item[1])]


def main(argv: list[str]) -> None:
    count = int(argv[argv.index("--exchanges") + 1]) if "--exchanges" in argv else 200
    # The handler's log lines and metrics are written (their CPU is the broker's), not shown.
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        result = run(count)
    emit(result, argv)


def run(count: int) -> dict:
    with AwsServer() as aws_server:
        setup = start_broker(aws_server)
        setup.connection_name = vault_connection(setup)
        tokens = login(setup)  # through the vault connection: the callback seals the tokens
        from chalicelib import vault

        via_route = route_dispatches(setup, upstream_form(setup, tokens["access_token"]))
        for _ in range(5):  # warm: caches, imports, kept connections
            call_exchange(setup, upstream_form(setup, tokens["access_token"]), via_route=via_route)
            call_exchange(setup, id_token_form(setup), via_route=via_route)
            tokens["refresh_token"] = next_refresh_token(setup, tokens["refresh_token"])

        out_cpu, out_calls, answer = measure(
            setup, lambda: upstream_form(setup, tokens["access_token"]), count, via_route)
        if answer.get("issued_token_type") != ACCESS:
            raise RuntimeError(f"unexpected answer: {sorted(answer)}")
        in_cpu, in_calls, _ = measure(setup, lambda: id_token_form(setup), count, via_route)

        # The reference: refresh grants of the same application, same run, same handler.
        ref_counter = Counter(setup.broker)
        setup.broker.handler_cpu = 0.0
        with ref_counter:
            for _ in range(count):
                tokens["refresh_token"] = next_refresh_token(setup, tokens["refresh_token"])
        refresh_cpu = setup.broker.handler_cpu / count * 1000

        # A container that did not seal the entry: its data key is not cached.
        vault.data_keys.clear()
        _cold_cpu, cold_calls, _ = measure(
            setup, lambda: upstream_form(setup, tokens["access_token"]), 1, via_route)

    where = ("through the Lambda handler (POST /oauth/token)" if via_route else
             "at chalicelib/login/token_exchange.token_exchange_request, the function the route "
             "calls: chalicelib/api/oauth.py does not dispatch the grant yet, so the handler's "
             "own work (event parsing, request log) is not counted")
    dynamo_out = per_call(out_calls, "dynamodb", count)
    return {"figures": [
        figure("token exchange, upstream token out: broker CPU per call", out_cpu, "ms",
               ref_name="refresh-token grant", ref_value=refresh_cpu, budget="", ok=None,
               note=f"warm, no upstream refresh, {count} calls measured {where}. AWS calls per "
                    f"call: {describe(out_calls, count)}."),
        figure("token exchange, upstream token out: DynamoDB calls per call", dynamo_out, "calls",
               ref_name="refresh-token grant", ref_value=per_call(ref_counter, "dynamodb", count),
               budget="", ok=None,
               note="call sites: " + "; ".join(sites(out_calls, count))),
        figure("token exchange, upstream token out: KMS calls per call (warm)",
               per_call(out_calls, "kms", count), "calls", budget="", ok=None,
               note=f"the container's cached data key opens the entry; the first exchange in a "
                    f"container that did not seal it makes {per_call(cold_calls, 'kms', 1):g} "
                    f"({describe(cold_calls, 1)})."),
        figure("token exchange, ID token in: broker CPU per call", in_cpu, "ms",
               ref_name="refresh-token grant", ref_value=refresh_cpu, budget="", ok=None,
               note=f"an upstream ID token (RS256, cached JWKS) for broker access + ID tokens; "
                    f"AWS calls per call: {describe(in_calls, count)}; KMS calls: "
                    f"{per_call(in_calls, 'kms', count):g}."),
    ], "notes": [f"broker issuer {ISSUER}; refresh grant AWS calls per call: "
                 f"{describe(ref_counter, count)}"]}


if __name__ == "__main__":
    main(sys.argv[1:])
