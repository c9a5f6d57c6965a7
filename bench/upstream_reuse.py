"""Upstream IdP calls with and without connection reuse (issue 17).

A loopback keep-alive IdP (threaded ``http.server``, HTTP/1.1) answers token-endpoint-like form
POSTs and JWKS-like GETs; each round is one of each, through netguard, as the callback makes them.
"before" is today's old behaviour, a fresh session and TCP connection per call (the pool is
emptied before each call); "after" keeps the connection. Prints median and p95 per call and the
TCP connections the server accepted. Loopback has no network latency or TLS, so this is the
floor of the saving: a real IdP adds a TCP and a TLS handshake (1-3 round trips) per new
connection on top.

    .venv/bin/python bench/upstream_reuse.py [rounds]
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chalicelib import netguard  # noqa: E402

JWKS = json.dumps({"keys": [{"kty": "RSA", "kid": f"k{i}", "use": "sig", "alg": "RS256",
                             "n": "x" * 342, "e": "AQAB"} for i in range(2)]}).encode()
TOKEN = json.dumps({"access_token": "a" * 40, "token_type": "Bearer", "expires_in": 3600,
                    "id_token": "h." + "p" * 600 + ".s"}).encode()


class Idp(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # http.server writes the headers and the body separately; with Nagle on, the body waits
    # for the client's delayed ACK (40 ms) on a kept connection. Real servers set TCP_NODELAY.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send(JWKS)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._send(TOKEN)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    accepted = 0

    def get_request(self):
        self.accepted += 1
        return super().get_request()


def run(base: str, rounds: int, reuse: bool) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"token POST": [], "JWKS GET": []}
    form = {"grant_type": "authorization_code", "code": "c" * 43,
            "redirect_uri": "https://broker.example/login/callback", "code_verifier": "v" * 43}
    for _ in range(rounds):
        for name, call in (
            ("token POST", lambda: netguard.safe_post_form(
                base + "/token", form, auth=("broker-client", "secret"), allow_loopback=True)),
            ("JWKS GET", lambda: netguard.safe_get(base + "/jwks", allow_loopback=True)),
        ):
            if not reuse:
                netguard.close_pooled_connections()  # a new connection per call, as before
            started = time.perf_counter()
            answer = call()
            times[name].append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200
    return times


def main(argv: list[str]) -> None:
    """``upstream_reuse.py [--rounds N] [--json PATH]`` (run_all.py passes ``--json``)."""
    from bench.common import emit, figure

    rounds = int(argv[argv.index("--rounds") + 1]) if "--rounds" in argv else 200
    server = Server(("127.0.0.1", 0), Idp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    run(base, 10, reuse=True)  # warm up imports and code paths
    print(f"{rounds} rounds of one token POST + one JWKS GET through netguard, loopback IdP")
    print(f"{'':8} {'call':11} {'median ms':>10} {'p95 ms':>8} {'connections':>12}")
    medians: dict[tuple[str, str], float] = {}
    connections: dict[str, int] = {}
    for label, reuse in (("before", False), ("after", True)):
        netguard.close_pooled_connections()
        server.accepted = 0
        times = run(base, rounds, reuse)
        connections[label] = server.accepted
        for name, values in times.items():
            p95 = statistics.quantiles(values, n=20)[-1]
            medians[(label, name)] = statistics.median(values)
            print(f"{label:8} {name:11} {statistics.median(values):10.3f} {p95:8.3f} "
                  f"{server.accepted:12d}")
    netguard.close_pooled_connections()
    server.shutdown()
    emit({"figures": [
        figure("upstream token POST, kept connection (median)", medians[("after", "token POST")],
               "ms", ref_name="new connection per call",
               ref_value=medians[("before", "token POST")], budget="< 1.0x", ok=None,
               note=f"{rounds} POSTs + {rounds} JWKS GETs against a loopback keep-alive IdP; TCP "
                    f"connections opened: {connections['before']} before, "
                    f"{connections['after']} after; JWKS GET median "
                    f"{medians[('before', 'JWKS GET')]:.2f} -> {medians[('after', 'JWKS GET')]:.2f} "
                    "ms. Loopback has no TLS handshake or network round trip: against a real "
                    "IdP over TLS the saving per call is larger."),
    ]}, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
