"""Start a real upstream OpenID Provider (panva's oidc-provider, tests/idp/server.mjs).

    from tests.support.idp import start_idp, default_idp_config

    with start_idp(default_idp_config(redirect_uris=["http://127.0.0.1:8000/callback"])) as idp:
        requests.get(idp.discovery_url)

The IdP listens on 127.0.0.1 only, on a free port. It exits when `stop()` is
called, when this Python process dies (its stdin closes), or after
`max_seconds` (default 900).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

IDP_DIR = Path(__file__).resolve().parent.parent / "idp"

DEFAULT_CLIENT_ID = "broker-client"
DEFAULT_CLIENT_SECRET = "broker-secret"
# Port 9 (discard): never listened on; for tests that do not complete a login.
PLACEHOLDER_REDIRECT_URI = "http://127.0.0.1:9/callback"

ALICE: dict[str, Any] = {
    "sub": "alice",
    "email": "alice@example.com",
    "email_verified": True,
    "name": "Alice Liddell",
    "given_name": "Alice",
    "family_name": "Liddell",
}


def default_idp_config(redirect_uris: list[str] | None = None, **client_overrides: Any) -> dict[str, Any]:
    """One confidential client (broker-client/broker-secret) and the account alice.

    The client may use response_type code, id_token and code id_token, and
    authenticates at the token endpoint with client_secret_basic unless
    ``token_endpoint_auth_method`` is overridden.
    """
    client: dict[str, Any] = {
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "application_type": "web",
        "redirect_uris": list(redirect_uris or [PLACEHOLDER_REDIRECT_URI]),
        "response_types": ["code", "id_token", "code id_token"],
        "grant_types": ["authorization_code", "implicit", "refresh_token"],
        "token_endpoint_auth_method": "client_secret_basic",
        "id_token_signed_response_alg": "RS256",
    }
    client.update(client_overrides)
    return {"clients": [client], "accounts": {"alice": dict(ALICE)}}


def _installed_version() -> str | None:
    try:
        meta = json.loads((IDP_DIR / "node_modules/oidc-provider/package.json").read_text())
    except (OSError, ValueError):
        return None
    return meta.get("version")


def _locked_version() -> str | None:
    lock = json.loads((IDP_DIR / "package-lock.json").read_text())
    return lock.get("packages", {}).get("node_modules/oidc-provider", {}).get("version")


def ensure_node_modules() -> None:
    """Run `npm ci` in tests/idp unless node_modules already matches the lockfile."""
    if _installed_version() is not None and _installed_version() == _locked_version():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm not found on PATH: the test IdP needs Node.js and npm")
    with open(IDP_DIR / ".npm-ci.lock", "w") as lock_fh:
        fcntl.flock(lock_fh, fcntl.LOCK_EX)
        try:
            if _installed_version() is not None and _installed_version() == _locked_version():
                return
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                check=False,
                cwd=IDP_DIR,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"npm ci in {IDP_DIR} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
                )
        finally:
            fcntl.flock(lock_fh, fcntl.LOCK_UN)


class IdpProcess:
    """A running test IdP. Use as a context manager, or call stop()."""

    def __init__(
        self,
        proc: subprocess.Popen[str],
        issuer: str,
        config: dict[str, Any],
        config_path: Path,
        stderr_lines: collections.deque[str],
        threads: list[threading.Thread],
    ) -> None:
        self.proc = proc
        self.issuer = issuer
        self.port = int(issuer.rsplit(":", 1)[1])
        self.discovery_url = issuer + "/.well-known/openid-configuration"
        self.config = config
        self._config_path = config_path
        self._stderr_lines = stderr_lines
        self._threads = threads
        self._lock = threading.Lock()
        atexit.register(self.stop)

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def is_running(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        """The IdP's recent stderr (request log, warnings, errors)."""
        return "".join(self._stderr_lines)

    def stop(self, timeout: float = 10) -> int:
        """Close the IdP's stdin (it exits), escalate to SIGTERM/SIGKILL if needed."""
        with self._lock:
            if self.proc.poll() is None:
                with contextlib.suppress(OSError):
                    if self.proc.stdin:
                        self.proc.stdin.close()
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.proc.terminate()
                    try:
                        self.proc.wait(timeout=timeout)
                    except subprocess.TimeoutExpired:
                        self.proc.kill()
                        self.proc.wait()
            for thread in self._threads:
                thread.join(timeout=5)
            with contextlib.suppress(OSError):
                self._config_path.unlink()
            atexit.unregister(self.stop)
            return self.proc.returncode

    def register_redirect_uri(self, redirect_uri: str, client_id: str = DEFAULT_CLIENT_ID) -> None:
        """Register one more exact redirect URI for a client (as an administrator does at a real
        IdP once a broker connection exists: each connection has its own callback URL)."""
        import requests

        response = requests.post(f"{self.issuer}/test/redirect-uris", timeout=10,
                                 data={"client_id": client_id, "redirect_uri": redirect_uri})
        if response.status_code != 204:
            raise RuntimeError(f"test IdP refused redirect URI {redirect_uri}: {response.status_code}")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"IdpProcess(issuer={self.issuer!r}, pid={self.proc.pid}, running={self.is_running()})"


def start_idp(
    config: dict[str, Any] | None = None,
    timeout: float = 30,
    *,
    max_seconds: int | None = None,
) -> IdpProcess:
    """Start tests/idp/server.mjs with `config` and wait until it is listening.

    `config` keys: clients, accounts, jwks, pkce_required, claims, scopes,
    conform_id_token_claims, ttl, provider_config (see server.mjs).
    """
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node not found on PATH: the test IdP needs Node.js")
    ensure_node_modules()

    config = dict(config or {})
    fd, name = tempfile.mkstemp(prefix="test-idp-", suffix=".json")
    config_path = Path(name)
    with os.fdopen(fd, "w") as fh:
        json.dump(config, fh)

    env = dict(os.environ)
    env["PORT"] = "0"
    env["IDP_CONFIG"] = str(config_path)
    env["IDP_MAX_SECONDS"] = str(max_seconds or env.get("IDP_MAX_SECONDS") or 900)
    env.pop("NODE_OPTIONS", None)

    proc = subprocess.Popen(
        [node, "server.mjs"],
        cwd=IDP_DIR,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )

    stdout_lines: queue.Queue[str | None] = queue.Queue()
    stderr_lines: collections.deque[str] = collections.deque(maxlen=2000)

    def pump_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            stdout_lines.put(line)
        stdout_lines.put(None)

    def pump_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            stderr_lines.append(line)

    threads = [
        threading.Thread(target=pump_stdout, name="idp-stdout", daemon=True),
        threading.Thread(target=pump_stderr, name="idp-stderr", daemon=True),
    ]
    for thread in threads:
        thread.start()

    def fail(why: str) -> RuntimeError:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for thread in threads:
            thread.join(timeout=5)
        with contextlib.suppress(OSError):
            config_path.unlink()
        return RuntimeError(f"test IdP {why} (exit {proc.returncode}):\n{''.join(stderr_lines)}")

    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise fail(f"not ready within {timeout}s")
        try:
            line = stdout_lines.get(timeout=remaining)
        except queue.Empty:
            continue
        if line is None:
            raise fail("exited before it was ready")
        if line.startswith("READY "):
            issuer = line.split(" ", 1)[1].strip()
            if not issuer.startswith("http://127.0.0.1:"):
                raise fail(f"announced an unexpected issuer {issuer!r}")
            return IdpProcess(proc, issuer, config, config_path, stderr_lines, threads)
