"""Plain code behind the end-to-end fixtures (tests/e2e/conftest.py): the broker as `make run` serves it
(scripts/run_local.py as a subprocess), Management API calls over HTTP, and a tiny relying-party web
application on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import html
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from tests.support.idp import IdpProcess

ROOT = Path(__file__).resolve().parents[2]
RUN_LOCAL = ROOT / "scripts" / "run_local.py"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = Path(os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium"))
# Only loopback traffic: no background fetches, updates, sync, QUIC or proxies.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
]
BROKER_READY_TIMEOUT = 90
HTTP_TIMEOUT = 15



def http_session() -> requests.Session:
    """requests without proxies or .netrc from the environment: loopback only."""
    session = requests.Session()
    session.trust_env = False
    return session


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


# ---- the broker (scripts/run_local.py) -------------------------------------------------------------


@dataclass
class Broker:
    proc: subprocess.Popen[str]
    port: int
    issuer: str
    admin_client_id: str
    admin_client_secret: str
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def url(self, path: str) -> str:
        return self.issuer + path.lstrip("/")

    def output(self) -> str:
        return "".join(list(self.lines))


def _broker_env(port: int, admin_id: str, admin_secret: str) -> dict[str, str]:
    env = dict(os.environ)
    # run_local.py starts its own moto and builds its own settings: drop whatever other fixtures
    # (tests/conftest.py's aws_endpoint) or the developer's shell put in the environment.
    for name in list(env):
        if name.startswith(("AWS_", "BROKER_", "MOTO_")):
            del env[name]
    env.update(
        PORT=str(port),
        BROKER_ADMIN_CLIENT_ID=admin_id,
        BROKER_ADMIN_CLIENT_SECRET=admin_secret,
        BROKER_RUN_MAX_SECONDS="900",
        PYTHONUNBUFFERED="1",
    )
    return env


def _die_with_parent() -> None:
    """preexec_fn: run_local.py gets SIGTERM (and stops everything it started) if pytest is killed."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start_broker(port: int) -> Broker:
    admin_id = "E2eAdmin" + secrets.token_hex(12)
    admin_secret = secrets.token_urlsafe(36)
    proc = subprocess.Popen(
        [sys.executable, str(RUN_LOCAL)],
        cwd=str(ROOT),
        env=_broker_env(port, admin_id, admin_secret),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        preexec_fn=_die_with_parent,
    )
    broker = Broker(proc, port, "", admin_id, admin_secret)

    def drain() -> None:
        assert proc.stdout is not None
        from tests.support import secret_scan

        for line in proc.stdout:
            broker.lines.append(line)
            if broker.ready.is_set():  # the banner before it shows the local admin secret, on purpose
                secret_scan.check("e2e broker output", [line])
            if line.startswith("BROKER READY "):
                broker.issuer = line.split(" ", 2)[2].strip()
                broker.ready.set()

    broker.thread = threading.Thread(target=drain, name="e2e-broker-output", daemon=True)
    broker.thread.start()
    return broker


def wait_broker(broker: Broker) -> None:
    deadline = time.monotonic() + BROKER_READY_TIMEOUT
    while not broker.ready.wait(timeout=0.2):
        if broker.proc.poll() is not None or time.monotonic() >= deadline:
            stop_broker(broker)
            pytest.fail(
                f"run_local.py not ready within {BROKER_READY_TIMEOUT}s "
                f"(exit {broker.proc.returncode}):\n{broker.output()}",
                pytrace=False,
            )


def stop_broker(broker: Broker) -> None:
    proc = broker.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if broker.thread is not None:
        broker.thread.join(timeout=5)


@dataclass
class Stack:
    broker: Broker
    idp: IdpProcess


# ---- the Management API ----------------------------------------------------------------------------


class Management:
    def __init__(self, broker: Broker):
        self.broker = broker
        self.http = http_session()
        response = self.http.post(
            broker.url("oauth/token"),
            data={
                "grant_type": "client_credentials",
                "client_id": broker.admin_client_id,
                "client_secret": broker.admin_client_secret,
                "audience": broker.url("api/v2/"),
            },
            timeout=HTTP_TIMEOUT,
        )
        assert response.status_code == 200, response.text
        self.http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def call(self, method: str, path: str, body: Any = None, expect: int | None = None) -> Any:
        response = self.http.request(method, self.broker.url(path), json=body, timeout=HTTP_TIMEOUT)
        if expect is not None:
            assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None


# ---- the relying-party application -----------------------------------------------------------------


def send_html(handler: BaseHTTPRequestHandler, payload: bytes) -> None:
    """A 200 text/html answer, never cached, from a test server's request handler."""
    handler.send_response(200)
    handler.send_header("Content-Type", "text/html; charset=utf-8")
    handler.send_header("Content-Length", str(len(payload)))
    handler.send_header("Cache-Control", "no-store")
    handler.end_headers()
    handler.wfile.write(payload)


class RelyingParty:
    """A web application on 127.0.0.1: /callback records what it gets and shows "Signed in"."""

    def __init__(self) -> None:
        self.callbacks: list[dict[str, str]] = []
        self.urls: list[str] = []
        self.methods: list[str] = []  # GET (query) or POST (form_post), per callback
        self._cond = threading.Condition()
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._callback("GET", urlsplit(self.path).query)

            def do_POST(self) -> None:  # noqa: N802 - response_mode=form_post
                length = min(int(self.headers.get("Content-Length") or 0), 65536)
                self._callback("POST", self.rfile.read(length).decode("utf-8", "replace"))

            def _callback(self, method: str, encoded: str) -> None:
                split = urlsplit(self.path)
                if split.path != "/callback":
                    self.send_error(404)
                    return
                params = {k: v[0] for k, v in parse_qs(encoded).items()}
                with app._cond:
                    app.callbacks.append(params)
                    app.urls.append(app.base_url + self.path)
                    app.methods.append(method)
                    app._cond.notify_all()
                if "code" in params:
                    body = "<h1>Signed in</h1><p>The application received an authorization code.</p>"
                else:
                    body = f"<h1>Sign-in failed</h1><p>{html.escape(params.get('error', '?'))}: " \
                           f"{html.escape(params.get('error_description', ''))}</p>"
                payload = f"<!doctype html><html><head><title>Test app</title></head><body>{body}" \
                          f"</body></html>".encode()
                send_html(self, payload)

            def log_message(self, format, *args):  # noqa: A002 - signature of the base class
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.callback_url = self.base_url + "/callback"
        self._thread = threading.Thread(target=self.server.serve_forever, name="e2e-rp-app", daemon=True)
        self._thread.start()

    def callback_for(self, state: str, timeout: float = 10) -> tuple[dict[str, str], str]:
        """The query (and full URL) the application received for ``state``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for params, url in zip(self.callbacks, self.urls, strict=True):
                    if params.get("state") == state:
                        return params, url
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no callback with state {state!r}; got {self.callbacks}")
                self._cond.wait(remaining)

    def authorize_url(self, broker: Broker, client: dict, connection: str, state: str, nonce: str,
                      challenge: str, *, scope: str, **extra: str) -> str:
        """This application's /authorize at ``broker`` as ``client`` through ``connection``: the code
        flow with PKCE (S256) back to :attr:`callback_url`; ``extra`` adds parameters (``prompt`` ...)."""
        return broker.url("authorize") + "?" + urlencode({
            "client_id": client["client_id"], "redirect_uri": self.callback_url, "response_type": "code",
            "scope": scope, "state": state, "nonce": nonce, "code_challenge": challenge,
            "code_challenge_method": "S256", "connection": connection, **extra})

    def silent_authorization(self, page: Any, broker: Broker, client: dict, connection: str, *,
                             scope: str) -> dict[str, str]:
        """/authorize with ``prompt=none`` in the browser ``page``: what this application's callback
        received (a code, or an error such as ``login_required``)."""
        state = secrets.token_urlsafe(16)
        _, challenge = pkce_pair()
        page.goto(self.authorize_url(broker, client, connection, state, secrets.token_urlsafe(8), challenge,
                                     scope=scope, prompt="none"))
        page.wait_for_url(re.compile("^" + re.escape(self.callback_url) + r"\?"))
        return self.callback_for(state)[0]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


@dataclass
class Setup:
    client: dict[str, Any]
    connections: dict[str, dict[str, Any]]  # "front" / "back" -> connection object


