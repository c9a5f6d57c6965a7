"""Cold start: authlib (the client toward upstream IdPs) loads on the callback path only.

A fresh interpreter imports the app and answers discovery, JWKS, /authorize and /oauth/token
through Chalice's test client; authlib must not be in ``sys.modules`` afterwards. AWS points at
a closed loopback port, so the routes that need storage answer 503 without leaving the machine;
what matters is that their handlers, and everything they import, ran.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, os, sys
sys.path.insert(0, os.getcwd())
from chalice.test import Client
from app import app

statuses = {}
with Client(app, stage_name="local", project_dir=os.getcwd()) as client:
    for path in ("/.well-known/openid-configuration", "/.well-known/jwks.json",
                 "/authorize?client_id=abc&response_type=code&scope=openid&state=s"
                 "&redirect_uri=http://127.0.0.1/cb"):
        statuses[path.split("?")[0]] = client.http.get(path).status_code
    statuses["/oauth/token"] = client.http.post(
        "/oauth/token", body="grant_type=authorization_code&code=x&client_id=abc&client_secret=y",
        headers={"content-type": "application/x-www-form-urlencoded"}).status_code
# Modules that hold the upstream client import authlib inside the functions that call the IdP.
import chalicelib.login.callback, chalicelib.login.upstream, chalicelib.management.discovery
import chalicelib.netguard
loaded = sorted(name for name in sys.modules if name == "authlib" or name.startswith("authlib."))
if len(sys.argv) > 1:  # the control: the callback path's own module does load authlib
    __import__(sys.argv[1])
    after = "authlib" in sys.modules
else:
    after = None
print(json.dumps({"statuses": statuses, "authlib": loaded, "after_control": after}))
"""


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_probe(*args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BROKER_"))}
    env.update({
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{_closed_port()}",
        "BROKER_STAGE": "local", "BROKER_ISSUER": "http://127.0.0.1:8000/",
        "BROKER_ALLOW_INSECURE_LOOPBACK": "true", "BROKER_ADMIN_CLIENT_ID": "cold-start-probe",
    })
    done = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_authorize_token_discovery_and_jwks_do_not_load_authlib():
    result = run_probe()
    # Every handler answered (storage is unreachable on purpose: 503 there is expected).
    assert result["statuses"]["/.well-known/openid-configuration"] == 200
    assert all(status in (200, 302, 400, 401, 503) for status in result["statuses"].values()), result
    assert result["authlib"] == []


def test_the_probe_sees_authlib_when_the_callback_path_loads_it():
    """The control: the same probe reports authlib once a callback-path module is imported."""
    assert run_probe("chalicelib.login.client_assertion")["after_control"] is True
