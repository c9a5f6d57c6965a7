"""The broker as ``make run`` serves it (scripts/run_local.py as a subprocess), over http or https.

    with start_local_stack(https=True, tls_dir=tmp_path) as stack:
        requests.get(stack.base_url + "/.well-known/openid-configuration", verify=str(stack.ca_path))

``tests/integration/conftest.py`` wraps this in the session fixtures ``local_stack`` (http) and
``https_stack``; the e2e tests start one with ``hostname="broker.test"`` for a cross-site login.

Over https run_local.py puts its TLS proxy on ``port`` and ``chalice local`` on ``app_port`` (both
127.0.0.1), with a certificate from a local CA made under ``tls_dir`` (give each test session its
own directory: the developer's ``.local/tls`` stays untouched). The stack stops by itself: on exit
from the context, when this process dies (PR_SET_PDEATHSIG) and after ``max_seconds``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN_LOCAL = ROOT / "scripts" / "run_local.py"
READY_TIMEOUT_SECONDS = 120
STOP_TIMEOUT_SECONDS = 30


class StackError(RuntimeError):
    """run_local.py did not start, or did not stop cleanly; the message holds its output."""


@dataclass
class LocalStack:
    """A running ``scripts/run_local.py`` (moto + provisioning + chalice local [+ TLS proxy])."""

    proc: subprocess.Popen[str]
    port: int
    issuer: str
    admin_client_id: str
    admin_client_secret: str
    lines: list[str] = field(default_factory=list)
    ca_path: Path | None = None  # the local CA's certificate (https only)
    app_port: int | None = None  # where chalice local itself listens (https only)

    @property
    def scheme(self) -> str:
        return "https" if self.ca_path is not None else "http"

    @property
    def base_url(self) -> str:
        """``http(s)://127.0.0.1:<port>`` (no trailing slash): where to send requests. The issuer
        may name another host (``hostname=``) that only a browser with a host mapping resolves."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def domain(self) -> str:
        """``127.0.0.1:<port>``: what Auth0's SDKs and tools take as their ``domain``."""
        return f"127.0.0.1:{self.port}"

    @property
    def management_audience(self) -> str:
        return f"{self.issuer}api/v2/"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def output(self) -> str:
        """Everything run_local.py and chalice local printed so far (stdout and stderr interleaved)."""
        return "".join(list(self.lines))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _die_with_parent() -> None:
    """preexec_fn: run_local.py gets SIGTERM (and stops everything it started) if pytest is killed."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child_env(port: int, admin_id: str, admin_secret: str, max_seconds: int) -> dict[str, str]:
    env = dict(os.environ)
    # run_local.py must start its own moto server and build its own settings: drop whatever the
    # unit-test fixtures (tests/conftest.py) or the developer's shell put in the environment.
    for name in list(env):
        if name.startswith(("AWS_", "BROKER_", "MOTO_")):
            del env[name]
    env.update(
        PORT=str(port),
        BROKER_ADMIN_CLIENT_ID=admin_id,
        BROKER_ADMIN_CLIENT_SECRET=admin_secret,
        BROKER_RUN_MAX_SECONDS=str(max_seconds),  # it can never outlive the test run by much
        PYTHONUNBUFFERED="1",
    )
    return env


@contextlib.contextmanager
def start_local_stack(
    *,
    https: bool = False,
    tls_dir: Path | None = None,
    hostname: str | None = None,
    admin_client_id: str | None = None,
    admin_client_secret: str | None = None,
    max_seconds: int = 900,
    extra_env: dict[str, str] | None = None,
) -> Iterator[LocalStack]:
    """Start run_local.py on free loopback ports, wait for ``BROKER READY``, stop it on exit and
    check that it exited with status 0 and left nothing listening."""
    if (https or hostname) and tls_dir is None:
        raise ValueError("https needs a tls_dir (one per test session)")
    port = free_port()
    admin_id = admin_client_id or "TestAdmin" + secrets.token_hex(10)
    admin_secret = admin_client_secret or secrets.token_urlsafe(36)
    env = _child_env(port, admin_id, admin_secret, max_seconds)
    app_port = None
    if https or hostname:
        app_port = free_port()
        env.update(BROKER_HTTPS="1", BROKER_TLS_DIR=str(tls_dir), BROKER_APP_PORT=str(app_port))
        if hostname:
            env["BROKER_HOSTNAME"] = hostname
    env.update(extra_env or {})
    proc = subprocess.Popen(
        [sys.executable, str(RUN_LOCAL)],
        cwd=str(ROOT),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
        preexec_fn=_die_with_parent,
    )
    lines: list[str] = []
    ready = threading.Event()
    announced: dict[str, str] = {}

    def drain(stream, tag: str) -> None:
        for line in stream:
            lines.append(f"{tag}{line}")
            if line.startswith("BROKER CA "):
                announced["ca"] = line.split(" ", 2)[2].strip()
            if line.startswith("BROKER READY "):
                announced["issuer"] = line.split(" ", 2)[2].strip()
                ready.set()

    threads = [
        threading.Thread(target=drain, args=(proc.stdout, ""), name="run-local-stdout", daemon=True),
        threading.Thread(target=drain, args=(proc.stderr, "[stderr] "), name="run-local-stderr", daemon=True),
    ]
    for thread in threads:
        thread.start()

    def stop() -> int | None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
                return None
        for thread in threads:
            thread.join(timeout=5)
        return proc.returncode

    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while not ready.wait(timeout=0.2):
        if proc.poll() is not None or time.monotonic() >= deadline:
            status = stop()
            raise StackError(f"run_local.py was not ready within {READY_TIMEOUT_SECONDS}s "
                             f"(exit {status}):\n" + "".join(lines))

    stack = LocalStack(
        proc=proc,
        port=port,
        issuer=announced["issuer"],
        admin_client_id=admin_id,
        admin_client_secret=admin_secret,
        lines=lines,
        ca_path=Path(announced["ca"]) if "ca" in announced else None,
        app_port=app_port,
    )
    try:
        yield stack
    finally:
        status = stop()
        if status != 0:
            raise StackError(f"run_local.py did not exit cleanly on SIGTERM (status {status}):\n"
                             + stack.output())
        # It stops chalice local (and its TLS proxy) itself: nothing may be left listening.
        ports = [p for p in (port, app_port) if p]
        gone_by = time.monotonic() + 10
        while any(port_answers(p) for p in ports) and time.monotonic() < gone_by:
            time.sleep(0.2)
        left = [p for p in ports if port_answers(p)]
        if left:
            raise StackError(f"ports {left} still answer after run_local.py exited")
