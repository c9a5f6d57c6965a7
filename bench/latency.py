"""Latency per route on AWS, by model (nothing here runs on AWS).

    p50 ~= broker CPU measured in this run for the route
         + DynamoDB round trips on the route x an in-region latency per call
         + the upstream IdP's token endpoint, on the callback only.

The per-call latencies and the upstream assumption are in ``bench/prices.json`` (``latency``) with
their sources: DynamoDB documents "single-digit millisecond" latency; we take 4 ms for a single-item
call and 10 ms for TransactWriteItems (every item is prepared and committed). The calls are
sequential in the broker (one request never waits on two DynamoDB calls at once), so they add.

The CPU is this machine's core. A Lambda function gets CPU in proportion to its memory (one vCPU
at 1,769 MB: https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html); the last
column shows the route if its CPU part ran at the configured memory's share of a vCPU, the upper
bound of that effect.
"""
from __future__ import annotations

ROUTE_LABELS = {
    "authorize": "GET /authorize",
    "callback": "GET /login/callback/{name}",
    "token_code": "POST /oauth/token (authorization_code)",
    "token_refresh": "POST /oauth/token (refresh_token)",
    "discovery": "GET /.well-known/openid-configuration",
    "jwks": "GET /.well-known/jwks.json",
}
ONE_VCPU_MB = 1769


def round_trips(route: dict) -> tuple[float, float]:
    """(single-item calls, transactions) per request on a route, from the measured DynamoDB calls."""
    calls = route.get("calls", {})
    transact = sum(v for k, v in calls.items() if k == "dynamodb.TransactWriteItems")
    single = sum(v for k, v in calls.items() if k.startswith("dynamodb.")) - transact
    return single, transact


def model(routes: dict, latency: dict) -> dict:
    """Per route: cpu_ms, single, transact, dynamodb_ms, upstream_ms, total_ms."""
    found = {}
    for name in ROUTE_LABELS:
        route = routes.get(name)
        if route is None:
            continue
        single, transact = round_trips(route)
        dynamodb_ms = (single * latency["dynamodb_get_put_ms"]
                       + transact * latency["dynamodb_transact_ms"])
        upstream_ms = route.get("upstream_calls", 0) * latency["upstream_token_call_ms"]
        found[name] = {"cpu_ms": route["cpu_ms"], "single": single, "transact": transact,
                       "dynamodb_ms": dynamodb_ms, "upstream_ms": upstream_ms,
                       "total_ms": route["cpu_ms"] + dynamodb_ms + upstream_ms}
    return found


def report(warm: dict, latency: dict, memory_mb: int) -> list[str]:
    rows = model(warm["routes"], latency)
    scale = max(1.0, ONE_VCPU_MB / memory_mb)
    lines = [
        f"Model: CPU measured here + DynamoDB round trips x {latency['dynamodb_get_put_ms']:g} ms "
        f"(GetItem/PutItem/DeleteItem/UpdateItem) or {latency['dynamodb_transact_ms']:g} ms "
        f"(TransactWriteItems) + {latency['upstream_token_call_ms']:g} ms for the upstream IdP's "
        f"token endpoint on the callback (assumed: an IdP outside the region, warm connection). "
        f"DynamoDB: \"single-digit millisecond performance at any scale\" "
        f"(https://aws.amazon.com/dynamodb/); the two figures are our assumption in that range. "
        f"Warm container; API Gateway adds its own overhead (not modelled).",
        "",
        "| route | CPU (this run) | DynamoDB calls (single + transactions) | DynamoDB | upstream | "
        f"**p50 estimate** | if CPU ran at {memory_mb} MB's vCPU share (x{scale:.2f}) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {ROUTE_LABELS[name]} | {row['cpu_ms']:.1f} ms | {row['single']:g} + "
            f"{row['transact']:g} | {row['dynamodb_ms']:.0f} ms | {row['upstream_ms']:.0f} ms | "
            f"**{row['total_ms']:.0f} ms** | "
            f"{row['cpu_ms'] * scale + row['dynamodb_ms'] + row['upstream_ms']:.0f} ms |")
    login = sum(rows[r]["total_ms"] for r in ("authorize", "callback", "token_code") if r in rows)
    lines += ["", f"A whole login spends about {login:.0f} ms in the broker (three requests, "
                  f"without the browser's and the IdP's own time)."]
    return lines
