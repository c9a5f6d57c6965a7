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
from urllib.parse import urlencode

import pytest

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
import chalicelib.login.callback, chalicelib.login.upstream, chalicelib.management.upstream_discovery
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


# --------------------------------------------------------------------------- pydantic
# Issue 17: pydantic (the Management API's body models) must not load on a cold /authorize,
# /login/callback, /oauth/token (code and refresh grants), discovery or JWKS. This probe has
# real storage: the test's moto server, where the parent process created an application, a
# connection to the real test IdP, a pending login (its callback answer) and a refresh token.
# Each step runs in its own fresh interpreter (the code grant gets the code the cold callback
# step answered), so each is measured cold; the child reports whether pydantic is in
# sys.modules afterwards and, if it is, the chalicelib frames that imported it first.

STEP_PROBE = r"""
import json, os, sys, traceback
from urllib.parse import parse_qs, urlencode, urlsplit
sys.path.insert(0, os.getcwd())

first_import = []


class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "pydantic" and not first_import:
            first_import.extend(f"{f.filename.split(os.getcwd())[-1]}:{f.lineno}"
                                for f in traceback.extract_stack() if "chalicelib" in f.filename)
        return None


sys.meta_path.insert(0, Watch())
from chalice.test import Client
from app import app

step = json.loads(sys.stdin.read())
with Client(app, stage_name="local", project_dir=os.getcwd()) as client:
    body = urlencode(step["form"]) if "form" in step else None
    response = getattr(client.http, step["method"].lower())(
        step["path"], headers=step.get("headers", {}), body=body)
location = response.headers.get("Location") or response.headers.get("location") or ""
result = {"status": response.status_code, "pydantic": "pydantic" in sys.modules,
          "imported_by": first_import, "code": parse_qs(urlsplit(location).query).get("code"),
          "body": response.body.decode(errors="replace")[:300]}
if len(sys.argv) > 1:  # the control: a Management API write module does load pydantic
    __import__(sys.argv[1])
    result["after_control"] = "pydantic" in sys.modules
print(json.dumps(result))
"""


def run_step_probe(aws_endpoint: str, step: dict, *args: str) -> dict:
    from tests.conftest import _ENV

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BROKER_"))}
    env.update(_ENV)
    env["AWS_ENDPOINT_URL"] = aws_endpoint
    done = subprocess.run([sys.executable, "-c", STEP_PROBE, *args], cwd=ROOT, env=env,
                          input=json.dumps(step), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_steps(aws_endpoint: str, steps: list[dict]) -> dict[str, dict]:
    results: dict[str, dict] = {}
    code = None
    for step in steps:
        if "form" in step:
            step = {**step, "form": {k: (code if v == "$CODE" else v)
                                     for k, v in step["form"].items()}}
        results[step["name"]] = result = run_step_probe(aws_endpoint, step)
        code = (result["code"] or [code])[0]
    return results


def _login_steps(api, client) -> list[dict]:
    """An application on a connection to the real test IdP; the steps of its logins."""
    import uuid

    from tests.api.test_logout import APP_CALLBACK, new_app, new_connection, sign_in
    from tests.support.flow import Browser, authorize_path, idp_login, pkce_pair

    idp = _IDP["idp"]
    app = new_app(api, "cold-" + uuid.uuid4().hex[:6],
                  grant_types=["authorization_code", "refresh_token"])
    connection = new_connection(api, idp, "cold", [app["client_id"]])
    secret = {"client_id": app["client_id"], "client_secret": app["client_secret"]}

    def authorize(challenge: str) -> str:
        return authorize_path(
            client_id=app["client_id"], redirect_uri=APP_CALLBACK, response_type="code",
            scope="openid offline_access", state="st", nonce="n-" + uuid.uuid4().hex,
            code_challenge=challenge, code_challenge_method="S256",
            connection=connection["name"])

    # A refresh token, from a whole login in this (warm) process.
    _browser, tokens = sign_in(client, app, connection, scope="openid offline_access")
    # A login left at the IdP's answer: the child delivers it to its cold callback.
    browser = Browser(client)
    verifier, challenge = pkce_pair()
    started = browser.get(authorize(challenge))
    assert started.status_code == 302, started.body
    method, params = idp_login(started.headers["Location"])
    assert method == "GET", method
    return [
        {"name": "discovery", "method": "GET", "path": "/.well-known/openid-configuration"},
        {"name": "jwks", "method": "GET", "path": "/.well-known/jwks.json"},
        {"name": "authorize", "method": "GET", "path": authorize(pkce_pair()[1])},
        {"name": "callback", "method": "GET",
         "path": getattr(params, "path", "/login/callback") + "?" + urlencode(dict(params)),
         "headers": {"Cookie": "; ".join(f"{k}={v}" for k, v in browser.cookies.items())}},
        {"name": "code_grant", "method": "POST", "path": "/oauth/token", "headers": FORM,
         "form": {"grant_type": "authorization_code", "code": "$CODE",
                  "redirect_uri": APP_CALLBACK, "code_verifier": verifier, **secret}},
        {"name": "refresh_grant", "method": "POST", "path": "/oauth/token", "headers": FORM,
         "form": {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                  **secret}},
    ]


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
_IDP: dict = {}


@pytest.fixture(scope="module")
def idp():
    from tests.support.flow import CALLBACK
    from tests.support.idp import default_idp_config, start_idp

    with start_idp(default_idp_config(redirect_uris=[CALLBACK])) as running:
        _IDP["idp"] = running
        yield running
    _IDP.clear()


EXPECTED = {"discovery": 200, "jwks": 200, "authorize": 302, "callback": 303,
            "code_grant": 200, "refresh_grant": 200}


def test_cold_login_and_token_paths_do_not_load_pydantic(aws_endpoint, api, client, idp):
    results = run_steps(aws_endpoint, _login_steps(api, client))
    # Every step succeeded for real, so every handler ran all the way.
    assert {name: r["status"] for name, r in results.items()} == EXPECTED, results
    loaded = {name: r["imported_by"] for name, r in results.items() if r["pydantic"]}
    assert loaded == {}, f"pydantic loaded cold by: {json.dumps(loaded, indent=1)}"


def test_the_step_probe_sees_pydantic_when_a_management_write_module_loads(aws_endpoint):
    """The control: the same probe reports pydantic once a Management API module is imported."""
    result = run_step_probe(aws_endpoint, {"name": "discovery", "method": "GET",
                                           "path": "/.well-known/openid-configuration"},
                            "chalicelib.management.clients")
    assert result["status"] == 200 and result["pydantic"] is False
    assert result["after_control"] is True
