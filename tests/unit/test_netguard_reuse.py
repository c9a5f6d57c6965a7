"""Issue 17: netguard keeps connections alive and reuses them within a container, per (scheme,
host, port, checked addresses), without giving up any of its guarantees: a new DNS answer is a
new check and a new pool, forbidden addresses are refused before a socket, the deadlines still
fire, a body never leaks into the next answer. A loopback HTTP/1.1 keep-alive server counts the
TCP connections it accepts."""
from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chalicelib import netguard
from chalicelib.netguard import OutboundError, OutboundRefused, safe_get, safe_post_form


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # as real servers: no 40 ms delayed-ACK stall per answer

    def log_message(self, *args):
        pass

    def _answer(self, body: bytes, status: int = 200, headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        server = self.server
        if self.path == "/slow":
            # Headers trickle, one byte per 100 ms: each read is quick, the whole never ends
            # in time; only the watchdog (which must own this kept connection) cuts it.
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            for _ in range(50):
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.1)
            return
        if self.path == "/big":
            # A body larger than the caller's cap: the caller stops reading part-way.
            return self._answer(b"B" * 64 * 1024)
        if self.path == "/redirect":
            return self._answer(b'{"moved": true}', 302, {"Location": "/jwks"})
        self._answer(json.dumps({"path": self.path, "peer": self.client_address[1],
                                 "n": next(server.counter)}).encode())

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        form = self.rfile.read(length).decode()
        self._answer(json.dumps({"form": form, "peer": self.client_address[1]}).encode())


class KeepAliveServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.accepted = 0
        import itertools

        self.counter = itertools.count()

    def get_request(self):
        conn, addr = super().get_request()
        self.accepted += 1
        return conn, addr

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def named(self, host: str) -> str:
        return f"http://{host}:{self.server_address[1]}"


@pytest.fixture()
def server():
    netguard.close_pooled_connections()
    srv = KeepAliveServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    netguard.close_pooled_connections()
    srv.shutdown()
    srv.server_close()


def loopback_names(*answers: list[str]):
    """A resolver for "localhost" answering each list in turn (the last one from then on)."""
    calls = []

    def resolve(host, port):
        calls.append((host, port))
        return list(answers[min(len(calls), len(answers)) - 1])

    resolve.calls = calls
    return resolve


def test_two_sequential_requests_share_one_connection(server):
    first = safe_get(server.url + "/jwks", allow_loopback=True)
    second = safe_post_form(server.url + "/token", {"grant_type": "x"}, allow_loopback=True)
    third = safe_get(server.url + "/jwks", allow_loopback=True)
    assert [r.status_code for r in (first, second, third)] == [200, 200, 200]
    assert server.accepted == 1
    assert len({json.loads(r.content)["peer"] for r in (first, second, third)}) == 1
    assert json.loads(second.content)["form"] == "grant_type=x"


def test_a_new_dns_answer_is_a_new_check_and_a_new_connection(server):
    # The same server behind both answers (127.0.0.1 is tried first in each): only the pool
    # key, which holds the checked addresses, tells them apart.
    resolve = loopback_names(["127.0.0.1"], ["127.0.0.1"], ["127.0.0.1", "127.0.0.2"])
    for _ in range(2):
        assert safe_get(server.named("localhost") + "/a", allow_loopback=True,
                        resolver=resolve).status_code == 200
    assert server.accepted == 1
    assert safe_get(server.named("localhost") + "/a", allow_loopback=True,
                    resolver=resolve).status_code == 200
    assert server.accepted == 2  # another answer: not the connection made for the first one
    assert len(resolve.calls) == 3  # resolved (and checked) for every request


def test_the_same_address_under_another_host_name_does_not_share(server):
    safe_get(server.url + "/a", allow_loopback=True)
    safe_get(server.named("localhost") + "/a", allow_loopback=True,
             resolver=loopback_names(["127.0.0.1"]))
    assert server.accepted == 2


def test_a_forbidden_answer_is_refused_before_any_socket_even_with_a_kept_connection(
        server, monkeypatch):
    resolve = loopback_names(["127.0.0.1"], ["10.0.0.5"])
    safe_get(server.named("localhost") + "/a", allow_loopback=True, resolver=resolve)
    connects: list = []
    sends: list = []
    original_connect, original_sendall = socket.socket.connect, socket.socket.sendall
    monkeypatch.setattr(socket.socket, "connect",
                        lambda self, a: connects.append(a) or original_connect(self, a))
    monkeypatch.setattr(socket.socket, "sendall",
                        lambda self, *a: sends.append(a) or original_sendall(self, *a))
    with pytest.raises(OutboundRefused, match="address 10.0.0.5 of localhost is private"):
        safe_get(server.named("localhost") + "/a", allow_loopback=True, resolver=resolve)
    assert connects == [] and sends == []
    assert server.accepted == 1


def test_loopback_is_refused_unless_allowed_even_with_a_kept_connection(server):
    safe_get(server.url + "/a", allow_loopback=True)
    with pytest.raises(OutboundRefused):
        safe_get(server.url + "/a", allow_loopback=False)
    assert server.accepted == 1


def test_the_total_deadline_still_fires_on_a_kept_connection(server):
    safe_get(server.url + "/a", allow_loopback=True)  # the connection is kept
    started = time.monotonic()
    with pytest.raises(OutboundError, match="timed out"):
        safe_get(server.url + "/slow", allow_loopback=True, total_timeout=0.5, read_timeout=5)
    assert time.monotonic() - started < 2.0
    assert server.accepted == 1  # it was the kept connection the watchdog cut
    # The cut connection is not reused: the next request gets a good answer on a new one.
    assert safe_get(server.url + "/a", allow_loopback=True).status_code == 200
    assert server.accepted == 2


def test_an_unread_body_never_reaches_the_next_request(server):
    with pytest.raises(OutboundRefused, match="larger than"):
        safe_get(server.url + "/big", allow_loopback=True, max_bytes=1024)
    answer = safe_get(server.url + "/a", allow_loopback=True)
    assert json.loads(answer.content)["path"] == "/a"
    # A redirect's body is not read either; the hop after it is answered cleanly.
    moved = safe_get(server.url + "/redirect", allow_loopback=True)
    assert json.loads(moved.content)["path"] == "/jwks"


def test_a_server_that_closed_the_kept_connection_gets_a_new_one(server):
    safe_get(server.url + "/a", allow_loopback=True)
    for adapter in list(netguard._pools.values()):
        for pool in adapter.poolmanager.pools._container.values():
            kept = list(pool.pool.queue)
            for conn in kept:
                if conn is not None and conn.sock is not None:
                    socket.socket.shutdown(conn.sock, socket.SHUT_RDWR)  # as if the server closed
    assert safe_get(server.url + "/a", allow_loopback=True).status_code == 200
    assert server.accepted == 2


def test_an_idle_connection_is_not_reused_past_the_idle_bound(server, monkeypatch):
    safe_get(server.url + "/a", allow_loopback=True)
    monkeypatch.setattr(netguard, "POOL_IDLE_SECONDS", 0.0)
    safe_get(server.url + "/a", allow_loopback=True)
    assert server.accepted == 2


def test_the_pool_is_bounded_least_recently_used_out(server, monkeypatch):
    monkeypatch.setattr(netguard, "POOL_HOSTS", 2)
    answers = [["127.0.0.1"], ["127.0.0.1", "127.0.0.2"], ["127.0.0.1", "127.0.0.3"]]
    for answer in answers:
        safe_get(server.named("localhost") + "/a", allow_loopback=True,
                 resolver=loopback_names(answer))
    assert server.accepted == 3
    assert [key[3] for key in netguard._pools] == [tuple(a) for a in answers[1:]]
    # The newest two are kept; the oldest was dropped (and its connection closed).
    safe_get(server.named("localhost") + "/a", allow_loopback=True,
             resolver=loopback_names(answers[2]))
    assert server.accepted == 3
    safe_get(server.named("localhost") + "/a", allow_loopback=True,
             resolver=loopback_names(answers[0]))
    assert server.accepted == 4


def test_concurrent_requests_each_get_their_own_answer(server):
    errors: list = []
    answers: list = []

    def worker(n: int):
        try:
            for i in range(10):
                answer = safe_get(f"{server.url}/t{n}-{i}", allow_loopback=True)
                answers.append((f"/t{n}-{i}", json.loads(answer.content)["path"]))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(answers) == 80 and all(asked == got for asked, got in answers)
    # Eight requests in flight and at most POOL_MAXSIZE kept idle: a round can open up to four
    # new connections, so the bound is loose, but far below one connection per request.
    assert server.accepted <= 8 + 10 * netguard.POOL_MAXSIZE < 80


def test_connections_outside_an_exchange_are_refused():
    conn_cls = netguard._GuardedHTTPConnection
    conn = type("C", (conn_cls,), {"_ips": ("127.0.0.1",)})("127.0.0.1", 9)
    with pytest.raises(OutboundError, match="outside a netguard exchange"):
        conn._new_conn()
