"""Integration fixtures: the stack `make run` starts (scripts/run_local.py) and a real upstream IdP."""

from __future__ import annotations

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

import pytest

from tests.support.idp_fixtures import oidc_idp  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
RUN_LOCAL = ROOT / "scripts" / "run_local.py"
READY_TIMEOUT_SECONDS = 120
STOP_TIMEOUT_SECONDS = 30


@dataclass
class LocalStack:
    """A running `scripts/run_local.py` (moto + provisioning + chalice local)."""

    proc: subprocess.Popen[str]
    port: int
    issuer: str
    admin_client_id: str
    admin_client_secret: str
    lines: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def domain(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def management_audience(self) -> str:
        return f"{self.issuer}api/v2/"

    def output(self) -> str:
        """Everything run_local.py and chalice local printed so far (stdout and stderr interleaved)."""
        return "".join(list(self.lines))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _child_env(port: int, admin_id: str, admin_secret: str) -> dict[str, str]:
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
        BROKER_RUN_MAX_SECONDS="600",  # it can never outlive the test run by much
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """The broker as `make run` serves it, over real HTTP on 127.0.0.1."""
    port = _free_port()
    admin_id = "SdkTestAdmin" + secrets.token_hex(10)
    admin_secret = secrets.token_urlsafe(36)
    proc = subprocess.Popen(
        [sys.executable, str(RUN_LOCAL)],
        cwd=str(ROOT),
        env=_child_env(port, admin_id, admin_secret),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    lines: list[str] = []
    ready = threading.Event()
    issuer_box: list[str] = []

    def drain(stream, tag: str) -> None:
        for line in stream:
            lines.append(f"{tag}{line}")
            if line.startswith("BROKER READY "):
                issuer_box.append(line.split(" ", 2)[2].strip())
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
            pytest.fail(
                f"run_local.py was not ready within {READY_TIMEOUT_SECONDS}s (exit {status}):\n"
                + "".join(lines),
                pytrace=False,
            )

    stack = LocalStack(
        proc=proc,
        port=port,
        issuer=issuer_box[0],
        admin_client_id=admin_id,
        admin_client_secret=admin_secret,
        lines=lines,
    )
    try:
        yield stack
    finally:
        status = stop()
        assert status == 0, (
            f"run_local.py did not exit cleanly on SIGTERM (status {status}):\n" + stack.output()
        )
        # It stops chalice local itself: nothing may be left listening on the port.
        gone_by = time.monotonic() + 10
        while _port_answers(port) and time.monotonic() < gone_by:
            time.sleep(0.2)
        assert not _port_answers(port), f"port {port} still answers after run_local.py exited"
