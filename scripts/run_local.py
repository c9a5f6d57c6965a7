"""``make run``: the whole broker on this machine, no AWS account needed (SPEC §1).

1. Unless ``AWS_ENDPOINT_URL`` is set, start moto's server in this process on 127.0.0.1 (port
   ``MOTO_PORT`` or a free one) and point ourselves and our children at it with dummy credentials.
2. Create the tables, queues and secrets of ``infra/resources.yaml`` for stage ``local``
   (scripts/provision.py: the same definitions the deployed stack uses).
3. Bootstrap admin client: ``BROKER_ADMIN_CLIENT_ID`` / ``BROKER_ADMIN_CLIENT_SECRET`` from the
   environment or generated; the secret goes to Secrets Manager only, never into chalice's env.
4. Serve the app with ``chalice local`` as a child process, wait until its port answers, print a
   ready-to-paste curl for a management token and ``BROKER READY <issuer>``.
5. Demo (when Node.js is present, unless ``BROKER_DEMO=0``): start the test IdP (oidc-provider,
   tests/idp/server.mjs with tests/idp/demo.json; ``npm ci`` first when node_modules is missing
   or stale) on 127.0.0.1, create a ``demo`` connection to it and a demo application, and print
   one URL (``{issuer}demo``) that logs in end to end as alice and ends on an "It works!" page.

HTTPS (``make run HTTPS=1`` or ``BROKER_HTTPS=1``): ``chalice local`` serves plain http, so it moves
to another loopback port (``BROKER_APP_PORT`` or a free one) and a TLS-terminating proxy
(scripts/tls_proxy.py) serves ``https://<host>:$PORT/`` in front of it, with a certificate from a
local CA (scripts/local_tls.py) kept in ``BROKER_TLS_DIR`` (default ``.local/tls/``, git-ignored) for
127.0.0.1, ::1, localhost and ``BROKER_HOSTNAME`` (e.g. ``broker.test``; then the issuer is
``https://broker.test:$PORT/``). The issuer is https, so the broker's cookies get ``__Host-`` names
as deployed. It prints the CA's path and how to trust it (``BROKER CA <path>`` for scripts).

SIGINT / SIGTERM stop everything this script started (the demo IdP included) and exit 0; if
``chalice local`` dies on its own the exit status is non-zero. ``BROKER_RUN_MAX_SECONDS`` stops
everything after that long.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import local_tls  # noqa: E402  (scripts/local_tls.py)
import provision  # noqa: E402  (scripts/provision.py)

STAGE = "local"
READY_TIMEOUT_SECONDS = 90
_ALNUM = string.ascii_letters + string.digits


class _Stop(Exception):
    """Raised from the signal handler (or the run deadline) to unwind into the cleanup."""


def _log(message: str) -> None:
    print(f"[run_local] {message}", file=sys.stderr, flush=True)


def _on_signal(signum, _frame):
    raise _Stop(signal.Signals(signum).name)


def _ignore_further_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


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


def _start_moto():
    from embedded_aws import EmbeddedAws  # scripts/embedded_aws.py

    server = EmbeddedAws(port=int(os.environ.get("MOTO_PORT") or 0))
    server.start()
    return server, server.endpoint


def _chalice_command(port: int) -> list[str]:
    exe = Path(sys.executable).parent / "chalice"
    chalice = str(exe) if exe.exists() else shutil.which("chalice")
    if not chalice:
        raise SystemExit("run_local: the chalice CLI is not installed (pip install -r requirements-dev.txt)")
    return [chalice, "local", "--host", "127.0.0.1", "--port", str(port), "--stage", STAGE, "--no-autoreload"]


def _die_with_parent():
    """preexec_fn: on Linux the child gets SIGTERM if this process dies without cleaning up."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return lambda: None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return preexec


def _stop_child(child: subprocess.Popen | None) -> None:
    if child is None or child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(timeout=5)


def _failure_status(returncode: int) -> int:
    """Non-zero whatever happened to the child (0 or killed by a signal included)."""
    return returncode if returncode > 0 else 1


def _curl(port: int, issuer: str, client_id: str, client_secret: str, tls: TlsRun | None = None) -> str:
    body = json.dumps(
        {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
            "audience": f"{issuer}api/v2/",
        },
        separators=(",", ":"),
    )
    if tls is not None:
        # Over https through the proxy, verifying the local CA; --resolve when the issuer's host is
        # a name only this machine knows (BROKER_HOSTNAME).
        resolve = "" if tls.host in ("127.0.0.1", "localhost") else f"--resolve {tls.host}:{port}:127.0.0.1 "
        target = f"--cacert {shlex.quote(str(tls.files.ca_cert))} {resolve}{issuer}oauth/token "
    else:
        # The request goes to where chalice local listens; the audience is built from the issuer.
        target = f"http://127.0.0.1:{port}/oauth/token "
    return f"curl -s -X POST {target}-H 'content-type: application/json' -d {shlex.quote(body)}"


# ---- https (make run HTTPS=1) -------------------------------------------------------------------

DEFAULT_TLS_DIR = ROOT / ".local" / "tls"
_HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")


@dataclass(frozen=True)
class TlsRun:
    host: str  # the issuer's host: BROKER_HOSTNAME or 127.0.0.1
    files: local_tls.TlsFiles


def _flag(name: str) -> bool:
    return (os.environ.get(name) or "").strip().lower() in ("1", "true", "yes", "on")


def _tls_run() -> TlsRun | None:
    """None for the plain-http default; else the CA and server certificate, made on first use."""
    hostname = (os.environ.get("BROKER_HOSTNAME") or "").strip().lower()
    if not _flag("BROKER_HTTPS"):
        if hostname:
            raise SystemExit("run_local: BROKER_HOSTNAME needs https (make run HTTPS=1): "
                             "the broker accepts an http issuer on loopback addresses only")
        return None
    if hostname and not _HOSTNAME.fullmatch(hostname):
        raise SystemExit(f"run_local: BROKER_HOSTNAME {hostname!r} is not a host name")
    directory = Path(os.environ.get("BROKER_TLS_DIR") or DEFAULT_TLS_DIR)
    return TlsRun(host=hostname or "127.0.0.1",
                  files=local_tls.ensure_tls_files(directory, [hostname] if hostname else []))


def _print_trust(tls: TlsRun) -> None:
    ca = tls.files.ca_cert
    print(f"HTTPS: the certificate comes from a local CA made for this machine: {ca}", flush=True)
    print("Trust it (no system-wide change needed):", flush=True)
    print(f"  Node.js (node-auth0, the Deploy CLI): NODE_EXTRA_CA_CERTS={ca}", flush=True)
    print(f"  Python requests:                      REQUESTS_CA_BUNDLE={ca}", flush=True)
    print(f"  curl:                                 --cacert {ca}", flush=True)
    loopback = tls.host in ("127.0.0.1", "localhost")
    rules = "" if loopback else f' --host-resolver-rules="MAP {tls.host} 127.0.0.1"'
    spki = tls.files.server_spki_hash()
    print(f"  Chromium: --ignore-certificate-errors-spki-list={spki}{rules}", flush=True)
    if rules:
        print(f"  (and map {tls.host} to 127.0.0.1 for other clients, e.g. in /etc/hosts)", flush=True)
    print(f"BROKER CA {ca}", flush=True)


# ---- the demo (step 5) ------------------------------------------------------------------------

IDP_DIR = ROOT / "tests" / "idp"
DEMO_CONNECTION = "demo"
DEMO_APP_NAME = "Demo application"
# setTimeout in Node overflows past 2^31-1 ms (24.8 days): stay under it.
DEMO_IDP_MAX_SECONDS = 24 * 86400


def _demo_wanted() -> bool:
    return (os.environ.get("BROKER_DEMO") or "true").strip().lower() not in ("0", "false", "no", "off")


def _idp_modules_current() -> bool:
    try:
        lock = json.loads((IDP_DIR / "package-lock.json").read_text())
        installed = json.loads((IDP_DIR / "node_modules" / "oidc-provider" / "package.json").read_text())
    except (OSError, ValueError):
        return False
    return lock.get("packages", {}).get("node_modules/oidc-provider", {}).get("version") == installed.get(
        "version"
    )


def _start_demo_idp(issuer: str, max_seconds: float):
    """(process, IdP issuer, config path) or None when Node.js or the IdP is not available."""
    import tempfile
    import threading

    node = shutil.which("node")
    if node is None:
        _log("Node.js not found: no demo identity provider (install Node.js for the demo)")
        return None
    if not _idp_modules_current():
        npm = shutil.which("npm")
        if npm is None:
            _log("npm not found: no demo identity provider")
            return None
        _log("installing the demo identity provider (npm ci in tests/idp)")
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=str(IDP_DIR),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            _log(f"npm ci failed ({done.returncode}): no demo identity provider\n{done.stderr[-2000:]}")
            return None
    config = json.loads((IDP_DIR / "demo.json").read_text())
    for client in config.get("clients", []):
        # The IdP must send the browser back to the demo connection's own callback URL (the
        # broker gives each connection one), as an administrator registers it at a real IdP.
        client["redirect_uris"] = [f"{issuer}login/callback/{DEMO_CONNECTION}"]
    fd, config_path = tempfile.mkstemp(prefix="broker-demo-idp-", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(config, fh)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BROKER_"))}
    env.pop("NODE_OPTIONS", None)
    lifetime = int(max_seconds) + 30 if max_seconds > 0 else DEMO_IDP_MAX_SECONDS
    env.update(
        PORT=os.environ.get("DEMO_IDP_PORT") or "0",
        IDP_CONFIG=config_path,
        IDP_MAX_SECONDS=str(min(lifetime, DEMO_IDP_MAX_SECONDS)),
    )
    proc = subprocess.Popen(
        [node, "server.mjs"],
        cwd=str(IDP_DIR),
        env=env,
        stdin=subprocess.PIPE,  # the IdP exits when this closes (and when we die)
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        preexec_fn=_die_with_parent() if sys.platform.startswith("linux") else None,
    )
    found: list[str] = []
    ready = threading.Event()

    def read_ready() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("READY ") and not found:
                found.append(line.split(" ", 1)[1].strip())
                ready.set()
        ready.set()

    threading.Thread(target=read_ready, name="demo-idp-stdout", daemon=True).start()
    if not ready.wait(30) or not found:
        _log("the demo identity provider did not start: no demo")
        _stop_demo_idp((proc, "", config_path))
        return None
    return proc, found[0], config_path


def _stop_demo_idp(demo) -> None:
    if demo is None:
        return
    proc, _, config_path = demo
    if proc.poll() is None:
        try:
            if proc.stdin:
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _stop_child(proc)
    try:
        os.unlink(config_path)
    except OSError:
        pass


def _http_json(method: str, url: str, body=None, token: str | None = None):
    """A Management API call to our own chalice local (stdlib only, no proxy)."""
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as response:
            raw = response.read()
            return response.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw) if raw else None
        except ValueError:
            return exc.code, None


def _provision_demo(app_port: int, issuer: str, idp_issuer: str, client_id: str, client_secret: str) -> str:
    """The demo connection and application, through the Management API; returns the demo URL."""
    base = f"http://127.0.0.1:{app_port}/"  # chalice local itself, also in https mode
    status, body = _http_json("POST", base + "oauth/token", {
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret,
        "audience": f"{issuer}api/v2/"})
    if status != 200:
        raise RuntimeError(f"management token: {status} {body}")
    token = body["access_token"]
    callback = issuer + "demo/callback"
    _, apps = _http_json("GET", base + "api/v2/clients", token=token)
    app = next((a for a in apps or []
                if (a.get("client_metadata") or {}).get("broker_builtin") == "demo"), None)
    if app is None:
        status, app = _http_json("POST", base + "api/v2/clients", {
            "name": DEMO_APP_NAME, "app_type": "regular_web", "callbacks": [callback],
            "client_metadata": {"broker_builtin": "demo"}}, token)
        if status != 201:
            raise RuntimeError(f"demo application: {status} {app}")
    elif callback not in (app.get("callbacks") or []):
        _http_json("PATCH", base + f"api/v2/clients/{app['client_id']}", {"callbacks": [callback]}, token)
    options = {
        "type": "back_channel", "discovery_url": idp_issuer, "client_id": "broker-client",
        "client_secret": "broker-secret", "token_endpoint_auth_method": "client_secret_basic",
        "domain_aliases": ["example.com"],
    }
    _, found = _http_json("GET", base + f"api/v2/connections?name={DEMO_CONNECTION}", token=token)
    if found:
        status, connection = _http_json("PATCH", base + f"api/v2/connections/{found[0]['id']}", {
            "show_as_button": True, "options": options}, token)
    else:
        status, connection = _http_json("POST", base + "api/v2/connections", {
            "name": DEMO_CONNECTION, "strategy": "oidc", "display_name": "Demo IdP (oidc-provider)",
            "show_as_button": True, "options": options}, token)
    if status not in (200, 201):
        raise RuntimeError(f"demo connection: {status} {connection}")
    status, body = _http_json("PATCH", base + f"api/v2/connections/{connection['id']}/clients",
                              [{"client_id": app["client_id"], "status": True}], token)
    if status != 204:
        raise RuntimeError(f"enabling the demo application: {status} {body}")
    return issuer + "demo"


def main() -> int:
    started = time.monotonic()
    max_seconds = float(os.environ.get("BROKER_RUN_MAX_SECONDS") or 0)
    deadline = started + max_seconds if max_seconds > 0 else None
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)

    port_raw = os.environ.get("PORT") or "8000"
    if not port_raw.isdigit():
        _log(f"PORT must be a number, got {port_raw!r}")
        return 2
    port = int(port_raw)
    if not _port_is_free(port):
        _log(f"port {port} on 127.0.0.1 is already in use; set PORT to another port")
        return 2
    tls = _tls_run()
    # chalice local's own port: PORT for http; behind the TLS proxy, another loopback port.
    app_port = port
    if tls is not None:
        app_port = int(os.environ.get("BROKER_APP_PORT") or 0) or _free_port()
        if app_port == port or not _port_is_free(app_port):
            _log(f"BROKER_APP_PORT {app_port} on 127.0.0.1 is not free; set another one")
            return 2

    moto_server = None
    child: subprocess.Popen | None = None
    worker: subprocess.Popen | None = None
    demo = None
    proxy = None
    try:
        # 1. AWS endpoint ----------------------------------------------------------------------
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            _log(f"using AWS endpoint {endpoint}")
            os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        else:
            moto_server, endpoint = _start_moto()
            _log(f"embedded AWS endpoint (moto) on {endpoint}")
            os.environ["AWS_ENDPOINT_URL"] = endpoint
            # Never let a developer's real credentials or profile near the embedded endpoint.
            for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
                os.environ.pop(name, None)
            os.environ["AWS_ACCESS_KEY_ID"] = "testing"
            os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
            os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

        # 2. Tables, queues, secrets -----------------------------------------------------------
        try:
            resources = provision.provision(STAGE, endpoint)
        except provision.ProvisionError as exc:
            _log(f"provisioning failed: {exc}")
            return 2
        outputs = resources["outputs"]
        _log(f"provisioned {', '.join(sorted(resources['resources']))} for stage {STAGE}")

        # 3. Bootstrap admin client -------------------------------------------------------------
        client_id = os.environ.get("BROKER_ADMIN_CLIENT_ID") or "".join(
            secrets.choice(_ALNUM) for _ in range(32)
        )
        client_secret = os.environ.get("BROKER_ADMIN_CLIENT_SECRET")
        generated = not client_secret
        if generated:
            client_secret = secrets.token_urlsafe(36)  # 48 url-safe characters
        admin_secret_name = outputs["AdminClientSecretName"]
        import boto3

        boto3.session.Session().client(
            "secretsmanager", endpoint_url=endpoint, region_name=os.environ["AWS_DEFAULT_REGION"]
        ).put_secret_value(SecretId=admin_secret_name, SecretString=client_secret)

        # 4. chalice local ----------------------------------------------------------------------
        default_issuer = f"https://{tls.host}:{port}/" if tls else f"http://127.0.0.1:{port}/"
        issuer = os.environ.get("BROKER_ISSUER") or default_issuer
        if not issuer.endswith("/"):
            issuer += "/"
        env = dict(os.environ)
        env.pop("BROKER_ADMIN_CLIENT_SECRET", None)  # the app reads it from Secrets Manager
        env.pop("BROKER_RUN_MAX_SECONDS", None)
        env.update(
            PORT=str(port),
            BROKER_ISSUER=issuer,
            BROKER_STAGE=STAGE,
            BROKER_TABLE=outputs["BrokerTableName"],
            BROKER_ADMIN_CLIENT_ID=client_id,
            BROKER_ADMIN_SECRET_NAME=admin_secret_name,
            BROKER_LOGOUT_QUEUE_URL=outputs["LogoutQueueUrl"],
            AWS_ENDPOINT_URL=endpoint,
            PYTHONUNBUFFERED="1",
        )
        env.setdefault("BROKER_ALLOW_INSECURE_LOOPBACK", "true")
        env.setdefault("BROKER_SECRET_PREFIX", f"broker/{STAGE}/")

        # 5a. Demo IdP (before chalice: the app serves /demo only when it runs) -------------------
        if _demo_wanted():
            demo = _start_demo_idp(issuer, max_seconds)
            if demo is not None:
                _log(f"demo identity provider (oidc-provider) on {demo[1]}")
        env["BROKER_DEMO"] = "true" if demo is not None else "false"

        child = subprocess.Popen(
            _chalice_command(app_port),
            cwd=str(ROOT),
            env=env,
            start_new_session=True,  # Ctrl-C reaches us; we stop the child in order
            preexec_fn=_die_with_parent() if sys.platform.startswith("linux") else None,
        )
        _log(f"chalice local started (pid {child.pid}), waiting for 127.0.0.1:{app_port}")
        # chalice local runs no event sources: a worker delivers back-channel logouts instead.
        worker = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "logout_worker.py")],
            cwd=str(ROOT),
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent() if sys.platform.startswith("linux") else None,
        )

        ready_by = time.monotonic() + READY_TIMEOUT_SECONDS
        while not _port_answers(app_port):
            if child.poll() is not None:
                _log(f"chalice local exited with status {child.returncode} before serving")
                return _failure_status(child.returncode)
            if deadline is not None and time.monotonic() >= deadline:
                raise _Stop("BROKER_RUN_MAX_SECONDS")
            if time.monotonic() >= ready_by:
                _log(f"chalice local did not answer on port {app_port} within {READY_TIMEOUT_SECONDS}s")
                return 1
            time.sleep(0.1)
        if tls is not None:
            from tls_proxy import TlsProxy  # scripts/tls_proxy.py

            proxy = TlsProxy(host="127.0.0.1", port=port, backend_host="127.0.0.1", backend_port=app_port,
                             cert_file=tls.files.server_cert, key_file=tls.files.server_key)
            proxy.start()
            _log(f"https on 127.0.0.1:{port} (TLS proxy) -> chalice local on 127.0.0.1:{app_port}")

        print("", flush=True)
        print(f"Bootstrap management client_id: {client_id}", flush=True)
        if generated:
            print(f"Bootstrap management client_secret (generated, shown once): {client_secret}", flush=True)
        print("Get a management API token with:", flush=True)
        print(_curl(port, issuer, client_id, client_secret, tls), flush=True)
        print(f"Admin console: {issuer}admin", flush=True)
        if demo is not None:
            try:
                demo_url = _provision_demo(app_port, issuer, demo[1], client_id, client_secret)
            except (RuntimeError, OSError, ValueError, KeyError) as exc:
                _log(f"demo setup failed: {exc}")
            else:
                print("", flush=True)
                print("Demo: open this URL, enter alice@example.com (or click the Demo IdP button), "
                      "then sign in at the demo IdP as alice with any password:", flush=True)
                print(f"DEMO URL {demo_url}", flush=True)
                print("", flush=True)
        if tls is not None:
            _print_trust(tls)
        print(f"BROKER READY {issuer}", flush=True)

        while True:
            if child.poll() is not None:
                _log(f"chalice local exited unexpectedly with status {child.returncode}")
                return _failure_status(child.returncode)
            if deadline is not None and time.monotonic() >= deadline:
                raise _Stop("BROKER_RUN_MAX_SECONDS")
            time.sleep(0.2)
    except (_Stop, KeyboardInterrupt) as stop:
        _ignore_further_signals()
        _log(f"stopping ({stop or 'interrupt'})")
        return 0
    finally:
        _ignore_further_signals()
        if proxy is not None:
            proxy.stop()
        _stop_child(child)
        _stop_child(worker)
        _stop_demo_idp(demo)
        if moto_server is not None:
            moto_server.stop()


if __name__ == "__main__":
    sys.exit(main())
