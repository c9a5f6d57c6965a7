"""The embedded AWS endpoint (moto's server) used by ``make run`` and the tests.

moto's DynamoDB backend is not thread-safe: a transaction deep-copies the table while other
request threads mutate it, which fails under concurrent load. Real DynamoDB serialises
conflicting writes, so this server does the same: one DynamoDB request at a time. Requests are
still accepted concurrently, and other services are not serialised.
"""
from __future__ import annotations

import logging
import threading

from moto.server import ThreadedMotoServer


class _Serialised:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        # Only DynamoDB needs it (its transactions deep-copy tables); an SQS long poll must not
        # hold the lock while it waits.
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            return self.app(environ, start_response)
        with self.lock:
            # Drain the response inside the lock: moto computes it lazily for some services.
            return list(self.app(environ, start_response))


class EmbeddedAws(ThreadedMotoServer):
    """``ThreadedMotoServer`` on loopback with serialised backends and quiet request logs."""

    def __init__(self, port: int = 0):
        super().__init__(ip_address="127.0.0.1", port=port, verbose=False)

    def _server_entry(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        app = _Serialised(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self._ip_address, self._port, app, threaded=True)
        self._server_ready_event.set()
        self._server.serve_forever()

    @property
    def endpoint(self) -> str:
        host, port = self.get_host_and_port()
        return f"http://{host}:{port}"
