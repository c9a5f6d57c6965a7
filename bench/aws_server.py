"""The embedded AWS endpoint (scripts/embedded_aws.EmbeddedAws, moto) in its own process, so its
CPU is never booked to the broker.

Prints ``READY <endpoint>`` once listening; exits when stdin closes or after ``argv[1]`` seconds.

One benchmark-only adjustment, inside this process (the emulator), not touching the broker or what
it is charged for: moto 5.2's TransactWriteItems deep-copies the whole table once per *item* of a
transaction as a rollback backup, so logins get slower as the table fills (~0.1 s per transaction
after 100 logins, seconds after 1,000). That is the emulator's cost, but it would make 1,000 logins
outrun the time budget. The backup is only restored after a validation error, which the benchmarks
never provoke, so here it is a reference instead of a copy.

A second one, for the same reason: werkzeug's request handler ends every response with
``Connection: close`` (http.server cannot drain an unread request body before the next request
line), so every AWS call would open a new loopback TCP connection and the broker's figures would
carry a connect per call. A warm Lambda keeps its connections to DynamoDB alive (botocore's urllib3
pool, HTTP/1.1 keep-alive). Here the handler reads each request's body (Content-Length) before
the application runs, and then keeps the connection open: the client's cost per call is what it
is on AWS, minus TLS. A request with a chunked body still gets ``Connection: close``.
"""
from __future__ import annotations

import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.embedded_aws import EmbeddedAws  # noqa: E402


def _cheap_transaction_backups() -> None:
    import copy

    import moto.dynamodb.models as models

    class _Copy:
        def __getattr__(self, name):
            return getattr(copy, name)

        @staticmethod
        def deepcopy(value, memo=None):
            if isinstance(value, models.Table):
                return value
            return copy.deepcopy(value, memo)

    models.copy = _Copy()


def _keep_alive() -> None:
    """Keep-alive for werkzeug's server in this process. Two things stand in its way: it sends
    ``Connection: close``, and after each response it drains the socket for 10 ms (it assumes the
    connection is closing), which would swallow the client's next request. So the body is read up
    front, the close header is left out, and the drain is pointed at a stream already at its end
    while the request runs; the real socket is back for the next request line."""
    import io
    import socket

    import werkzeug.serving as serving

    at_eof, closed = socket.socketpair()
    closed.close()  # at_eof is now always readable, and reads nothing

    class KeepAliveHandler(serving.WSGIRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out as separate writes: without TCP_NODELAY the body would wait
        # for the client's delayed ACK (~40 ms) on a connection that stays open.
        disable_nagle_algorithm = True
        keep_alive = False

        def make_environ(self):
            environ = super().make_environ()
            length = environ.get("CONTENT_LENGTH") or ""
            self.keep_alive = (not environ.get("wsgi.input_terminated")
                               and "HTTP_EXPECT" not in environ
                               and (length.isdigit() or "HTTP_TRANSFER_ENCODING" not in environ))
            if self.keep_alive:
                body = self.rfile.read(int(length)) if length.isdigit() else b""
                environ["wsgi.input"] = io.BytesIO(body)
                self.rfile, self.connection = io.BytesIO(), at_eof
            return environ

        def run_wsgi(self):
            rfile, connection = self.rfile, self.connection
            try:
                super().run_wsgi()
            finally:
                self.rfile, self.connection = rfile, connection

        def send_header(self, keyword, value):
            if self.keep_alive and keyword.lower() == "connection" and value.lower() == "close":
                return
            super().send_header(keyword, value)

    original = serving.make_server

    def make_server(*args, **kwargs):
        kwargs["request_handler"] = KeepAliveHandler
        return original(*args, **kwargs)

    serving.make_server = make_server


def main() -> None:
    max_seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 900.0
    _cheap_transaction_backups()
    _keep_alive()
    server = EmbeddedAws()
    server.start()
    print("READY", server.endpoint, flush=True)
    waiter = threading.Thread(target=sys.stdin.read, daemon=True)
    waiter.start()
    waiter.join(timeout=max_seconds)
    server.stop()


if __name__ == "__main__":
    main()
