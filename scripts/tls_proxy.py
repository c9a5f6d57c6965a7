"""A small TLS-terminating reverse proxy for the local run: https on a loopback port in front of
``chalice local`` (which serves plain http only) on another loopback port.

- One thread per connection; the TLS handshake happens in that thread (a slow client cannot stall
  the accept loop) with a timeout, and idle keep-alive connections close after ``IDLE_SECONDS``.
- Every request header is forwarded as received (repeated ones included) except the hop-by-hop ones
  (RFC 9110 §7.6.1); ``Host`` is kept; ``X-Forwarded-Proto: https``, ``X-Forwarded-Host`` and
  ``X-Forwarded-For`` are set by the proxy and any a client sent are dropped, so nothing behind it
  can be told a scheme or host by the client. The broker builds every URL from ``BROKER_ISSUER``
  anyway, never from these headers.
- Request bodies are streamed (``Content-Length``) or, when chunked, de-chunked up to
  ``MAX_CHUNKED_BODY`` bytes; response bodies are streamed back; every response header is kept,
  several ``Set-Cookie`` lines included.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade",
})
FORWARDED = frozenset({"x-forwarded-proto", "x-forwarded-host", "x-forwarded-for", "x-forwarded-port",
                       "forwarded"})
CHUNK = 64 * 1024
MAX_CHUNKED_BODY = 10 * 1024 * 1024
HANDSHAKE_SECONDS = 10
IDLE_SECONDS = 60
UPSTREAM_SECONDS = 120


class _Refused(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def _read_chunked(rfile) -> bytes:
    body = bytearray()
    while True:
        line = rfile.readline(1024)
        if not line.endswith(b"\n"):
            raise _Refused(400, "malformed chunked body")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise _Refused(400, "malformed chunked body") from exc
        if size == 0:
            while rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                pass  # trailers are dropped
            return bytes(body)
        if len(body) + size > MAX_CHUNKED_BODY:
            raise _Refused(413, "request body too large")
        data = rfile.read(size)
        if len(data) != size:
            raise _Refused(400, "truncated chunked body")
        body += data
        rfile.readline(1024)


def _make_handler(backend_host: str, backend_port: int):
    class ProxyHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = IDLE_SECONDS

        def _forward(self) -> None:
            try:
                body, length = self._request_body()
            except _Refused as refused:
                self.send_error(refused.status, refused.reason)
                self.close_connection = True
                return
            upstream = http.client.HTTPConnection(backend_host, backend_port, timeout=UPSTREAM_SECONDS)
            try:
                upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    lowered = name.lower()
                    if lowered in HOP_BY_HOP or lowered in FORWARDED or lowered == "content-length":
                        continue
                    upstream.putheader(name, value)
                client_ip = self.client_address[0]
                upstream.putheader("X-Forwarded-Proto", "https")
                upstream.putheader("X-Forwarded-For", client_ip)
                if self.headers.get("Host"):
                    upstream.putheader("X-Forwarded-Host", self.headers["Host"])
                if length is not None:
                    upstream.putheader("Content-Length", str(length))
                upstream.putheader("Connection", "close")
                upstream.endheaders()
                if isinstance(body, bytes):
                    upstream.send(body)
                elif length:
                    remaining = length
                    while remaining:
                        data = self.rfile.read(min(CHUNK, remaining))
                        if not data:
                            raise ConnectionError("client closed the request body early")
                        upstream.send(data)
                        remaining -= len(data)
                response = upstream.getresponse()
            except (OSError, http.client.HTTPException):
                upstream.close()
                self.send_error(502, "the app server did not answer")
                self.close_connection = True
                return
            try:
                self._relay(response)
            finally:
                upstream.close()

        def _request_body(self) -> tuple[bytes | None, int | None]:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                body = _read_chunked(self.rfile)
                return body, len(body)
            raw = self.headers.get("Content-Length")
            if raw is None:
                return None, None
            if not raw.strip().isdigit():
                raise _Refused(400, "bad Content-Length")
            return None, int(raw)

        def _relay(self, response: http.client.HTTPResponse) -> None:
            self.send_response_only(response.status, response.reason)
            no_body = self.command == "HEAD" or response.status in (204, 304) or 100 <= response.status < 200
            length = response.getheader("Content-Length")
            for name, value in response.msg.items():
                if name.lower() in HOP_BY_HOP:
                    continue
                self.send_header(name, value)
            chunked = not no_body and length is None
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if no_body:
                return
            while True:
                data = response.read1(CHUNK) if hasattr(response, "read1") else response.read(CHUNK)
                if not data:
                    break
                if chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                else:
                    self.wfile.write(data)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _forward  # noqa: N815

        def log_message(self, format, *args):  # noqa: A002 - the base class's signature
            pass  # chalice local logs every request already

    return ProxyHandler


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handler, context: ssl.SSLContext):
        self.tls_context = context
        super().__init__(address, handler)

    def finish_request(self, request, client_address):
        # The handshake runs here, in the connection's own thread.
        request.settimeout(HANDSHAKE_SECONDS)
        try:
            tls = self.tls_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        tls.settimeout(IDLE_SECONDS)
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            tls.close()

    def handle_error(self, request, client_address):
        pass  # a client that hung up mid-request is not an error worth a traceback


class TlsProxy:
    """``https://{host}:{port}`` forwarding to ``http://{backend_host}:{backend_port}``."""

    def __init__(self, *, host: str, port: int, backend_host: str, backend_port: int,
                 cert_file: Path, key_file: Path):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(cert_file), str(key_file))
        context.set_alpn_protocols(["http/1.1"])
        self.server = _TlsServer((host, port), _make_handler(backend_host, backend_port), context)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="tls-proxy", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
