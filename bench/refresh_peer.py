"""Refresh-token grant: CPU per grant through our Lambda handler (in-process, storage on the
embedded AWS endpoint in another process) vs a peer, panva's oidc-provider (tests/idp/server.mjs,
its default in-memory adapter) answering the same grant over loopback HTTP, measured as the node
process's utime + stime (/proc/<pid>/stat) before and after N grants, in the same run.

Both sides use their defaults for a confidential client: no rotation (the broker's
``refresh_token.rotation_type`` defaults to non-rotating for confidential clients; oidc-provider's
``rotateRefreshToken`` rotates only public clients or tokens past 70% of their lifetime), and both
return an access token and an ID token (scope ``openid ... offline_access``).

    .venv/bin/python bench/refresh_peer.py [--grants 150] [--json PATH]
"""
from __future__ import annotations

import base64
import secrets
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    Attribution,
    AwsCounter,
    AwsServer,
    emit,
    figure,
    login,
    proc_cpu_seconds,
    profile,
    refresh,
    start_broker,
)

BUDGET = 1.5  # issue 17: the peer keeps everything in process memory; we pay two DynamoDB round trips
PEER_REDIRECT = "http://127.0.0.1:9/callback"  # never contacted: the code is read from Location


def broker_side(n: int) -> dict:
    with AwsServer() as aws_server:
        setup = start_broker(aws_server)
        tokens = login(setup)
        token = tokens["refresh_token"]
        for _ in range(10):
            refresh(setup, token)
        with AwsCounter(setup.broker) as counter:
            for _ in range(3):
                refresh(setup, token)
        calls = {k: v / 3 for k, v in sorted(counter.calls.items())}
        sites = "\n".join(["per grant  operation                   made by"] + [
            f"{count / 3:9g}  {operation:26s}  {site}"
            for (_path, operation, site), count in sorted(counter.sites.items())])
        broker = setup.broker
        start = broker.handler_cpu
        for _ in range(n):
            body = refresh(setup, token)
            token = body.get("refresh_token", token)
        per_grant = (broker.handler_cpu - start) / n
        start = broker.handler_cpu
        with Attribution() as attribution:
            for _ in range(30):
                refresh(setup, token)
        total = (broker.handler_cpu - start) / 30
        split = {label: spent / 30 for label, spent in attribution.cpu.items()}
        counts = {label: c / 30 for label, c in attribution.calls.items()}
        split["rest: Chalice routing, request/response handling, grant logic"] = (
            total - sum(split.values()))
        lines = ["ms per grant  share  where (exact CPU, no profiler)"]
        for label, value in split.items():
            extra = (f" ({counts[label]:g} calls, {value / counts[label] * 1000:.2f} ms each)"
                     if counts.get(label) else "")
            lines.append(f"{value * 1000:12.2f}  {100 * value / total:4.0f}%  {label}{extra}")
        lines.append(f"{total * 1000:12.2f}  100%  total")
        _b, top = profile(lambda: [refresh(setup, token) for _ in range(20)], 20, top=15)
        rotation = (setup.app.get("refresh_token") or {}).get("rotation_type")
    sdk_label = "AWS SDK calls (boto3/botocore)"
    return {"per_grant": per_grant, "calls": calls, "split": sites + "\n\n" + "\n".join(lines),
            "top": top, "total": total, "sdk": split.get(sdk_label, 0.0),
            "sdk_calls": counts.get(sdk_label, 0),
            "rotation": rotation}


def _peer_login(http, issuer: str) -> str:
    """Authorization code flow at oidc-provider with requests; returns a refresh token."""
    verifier = secrets.token_urlsafe(48)
    import hashlib

    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(
        b"=").decode()
    url = issuer + "/auth?" + urlencode({
        "client_id": "broker-client", "response_type": "code", "redirect_uri": PEER_REDIRECT,
        "scope": "openid profile email offline_access", "prompt": "consent", "state": "s",
        "nonce": "n", "code_challenge": challenge, "code_challenge_method": "S256"})
    method, data = "GET", None
    for _ in range(12):
        if url.startswith(PEER_REDIRECT):
            params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
            if "code" not in params:
                raise RuntimeError(f"peer login failed: {params}")
            response = http.post(issuer + "/token", data={
                "grant_type": "authorization_code", "code": params["code"],
                "redirect_uri": PEER_REDIRECT, "code_verifier": verifier},
                auth=("broker-client", "broker-secret"), timeout=10)
            body = response.json()
            if "refresh_token" not in body:
                raise RuntimeError(f"peer issued no refresh token: {body}")
            return body["refresh_token"]
        response = http.request(method, url, data=data, allow_redirects=False, timeout=10)
        if response.is_redirect:
            url, method, data = urljoin(url, response.headers["Location"]), "GET", None
            continue
        if "/interaction/" in url and 'action="/interaction/' in response.text:
            url = url.rstrip("/") + "/login"
            method, data = "POST", {"login": "alice", "password": "x"}
            continue
        raise RuntimeError(f"unexpected peer page {response.status_code} at {url}")
    raise RuntimeError("too many hops at the peer")


def peer_side(n: int) -> dict:
    import requests

    from tests.support.idp import default_idp_config, start_idp

    with start_idp(default_idp_config(redirect_uris=[PEER_REDIRECT]), max_seconds=600) as idp:
        http = requests.Session()
        token = _peer_login(http, idp.issuer)
        form = {"grant_type": "refresh_token", "refresh_token": token}

        def grant():
            response = http.post(idp.issuer + "/token", data=form,
                                 auth=("broker-client", "broker-secret"), timeout=10)
            body = response.json()
            if response.status_code != 200 or "access_token" not in body:
                raise RuntimeError(f"peer refresh failed: {response.status_code} {body}")
            if "refresh_token" in body:
                form["refresh_token"] = body["refresh_token"]
            return body

        for _ in range(50):  # JIT warm-up
            body = grant()
        rotated = body.get("refresh_token") not in (None, token)
        time.sleep(0.2)
        start = proc_cpu_seconds(idp.proc.pid)
        wall = time.perf_counter()
        for _ in range(n):
            grant()
        time.sleep(0.2)  # let the last request's log line be written (it is part of the peer)
        spent = proc_cpu_seconds(idp.proc.pid) - start
        wall = time.perf_counter() - wall
        keys = sorted(body)
    return {"per_grant": spent / n, "wall": wall / n, "keys": keys, "rotated": rotated}


def main(argv: list[str]) -> dict:
    n = int(argv[argv.index("--grants") + 1]) if "--grants" in argv else 150
    peer_n = max(n, 300)  # /proc CPU has 10 ms ticks: more grants for the peer's resolution
    ours = broker_side(n)
    peer = peer_side(peer_n)
    ratio = ours["per_grant"] / peer["per_grant"]
    dynamodb = sum(v for k, v in ours["calls"].items() if k.startswith("dynamodb."))
    result = {
        "script": "refresh_peer",
        "figures": [figure(
            "refresh grant CPU (our handler, in-process)", ours["per_grant"] * 1000, "ms",
            ref_name="peer oidc-provider (node, loopback HTTP)", ref_value=peer["per_grant"] * 1000,
            budget=f"<= {BUDGET}x peer", ok=ratio <= BUDGET,
            note=(f"{n} grants ours, {peer_n} peer (after 50 warm-up grants). Ours: "
                  f"{dynamodb:g} DynamoDB calls per grant ("
                  + ", ".join(f"{k} {v:g}" for k, v in ours["calls"].items())
                  + f"), rotation {ours['rotation']}. Peer answers "
                  f"{', '.join(peer['keys'])}; rotated: {peer['rotated']}; "
                  f"peer wall per grant incl. HTTP {peer['wall'] * 1000:.1f} ms."))],
        "notes": [],
        "split": {"total": ours["total"], "sdk": ours["sdk"], "sdk_calls": ours["sdk_calls"]},
        "profile_title": "Where a refresh grant's CPU and AWS calls go (ours)",
        "profile": ours["split"],
    }
    if ratio > BUDGET:
        result["profile"] += ("\n\ncProfile (CPU clock) of 20 refresh grants, top functions by own "
                              "time:\n" + ours["top"])
    return result


if __name__ == "__main__":
    emit(main(sys.argv[1:]), sys.argv[1:])
