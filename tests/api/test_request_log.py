"""The request log middleware (SPEC §9, chalicelib/api/request_log.py), through Chalice's test
client: one JSON line per request with the request id, the route's path template, the method,
the status and the duration, plus the connection, client and user the request's log events
named; one EMF line per request; the request's facts in its log events; nothing secret.
"""
from __future__ import annotations

import io
import json
import logging
import secrets
import uuid

import pytest
from chalice import Chalice, ChaliceUnhandledError
from chalice.test import Client

from chalicelib import audit, logs
from chalicelib.api import request_log


@pytest.fixture()
def lines():
    """The JSON lines logged while the test runs (requests and log events), parsed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonLineFormatter())
    watched = [logging.getLogger("broker.requests"), logging.getLogger("broker.events")]
    for logger in watched:
        logger.addHandler(handler)

    def read(logger: str | None = None) -> list[dict]:
        found = [json.loads(text) for text in stream.getvalue().splitlines()]
        return [line for line in found if logger is None or line["logger"] == logger]

    read.text = stream.getvalue  # type: ignore[attr-defined]
    yield read
    for logger in watched:
        logger.removeHandler(handler)


def emf_lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()
            if line.startswith('{"_aws"')]


def test_one_line_per_request_with_template_status_duration_and_request_id(client, lines, capsys,
                                                                         fixed_clock):
    name = "nosuch" + secrets.token_hex(4)
    response = client.http.get(f"/oauth/connection/{name}/.well-known/jwks.json?probe={name}")
    assert response.status_code == 404
    (line,) = lines("broker.requests")
    assert line["route"] == "/oauth/connection/{name}/.well-known/jwks.json"  # the template
    assert line["method"] == "GET" and line["status"] == 404
    assert line["duration_ms"] == 0.0  # timed on the broker's clock, which the test stopped
    assert str(uuid.UUID(line["request_id"])) == line["request_id"]  # the invocation's id
    assert line["requestId"] == line["request_id"] and line["level"] == "INFO"
    assert line["message"] == "GET /oauth/connection/{name}/.well-known/jwks.json 404"
    assert name not in lines.text()  # neither the path's values nor the query
    (metric,) = emf_lines(capsys)
    assert metric["Route"] == line["route"] and metric["Http5xx"] == 0
    assert metric["Duration"] == 0.0


def test_every_request_gets_its_own_request_id(client, lines):
    for _ in range(2):
        assert client.http.get("/.well-known/openid-configuration").status_code == 200
    ids = [line["request_id"] for line in lines("broker.requests")]
    assert len(ids) == 2 and ids[0] != ids[1]


def test_a_failed_login_line_carries_its_connection(client, api, lines, capsys):
    name = "reqlog-" + secrets.token_hex(4)
    created = api.call("POST", "/api/v2/connections", body={
        "name": name, "strategy": "oidc",
        "options": {"client_id": "c", "client_secret": "reqlog-secret-0123456789",
                    "issuer": "http://127.0.0.1:9/", "authorization_endpoint": "http://127.0.0.1:9/a",
                    "token_endpoint": "http://127.0.0.1:9/t", "jwks_uri": "http://127.0.0.1:9/j"}})
    assert created.status_code == 201, created.data
    capsys.readouterr()
    state, code = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    response = client.http.get(f"/login/callback/{name}?state={state}&code={code}")
    assert response.status_code >= 400
    (line,) = [line for line in lines("broker.requests") if line["route"].startswith("/login/")]
    assert line["route"] == "/login/callback/{connection_name}"
    assert line["connection"] == name and line["status"] == response.status_code
    (event,) = [e for e in lines("broker.events") if e["requestId"] == line["request_id"]]
    assert event["log_event"]["type"] == "f" and event["log_event"]["connection"] == name
    assert event["log_event"]["ip"] == "127.0.0.1"  # the request's source IP, from its scope
    for secret in (state, code):
        assert secret not in lines.text()
    failures = [m for m in emf_lines(capsys) if "LoginFailures" in m]
    assert [(m["Connection"], m["LoginFailures"]) for m in failures] == [(name, 1)]


# -- the middleware on its own app: events, exceptions, API Gateway's request id -------------------


@pytest.fixture()
def probe_app(aws_endpoint):
    app = Chalice(app_name="request-log-probe")
    app.register_blueprint(request_log.bp)

    @app.route("/facts")
    def facts():
        return dict(audit.current())

    @app.route("/event/{connection}")
    def event(connection):
        audit.record(audit.event("f", connection={"name": connection, "id": "con_probe"},
                                 client_id="app-probe", user_id="oidc|probe|u1",
                                 details={"error": "access_denied"}))
        return {"ok": True}

    @app.route("/unhandled")
    def unhandled():
        raise ChaliceUnhandledError("through every middleware")

    @app.route("/view-error")
    def view_error():
        raise RuntimeError("caught by Chalice inside the view")

    return app


def test_the_events_of_a_request_name_its_connection_client_and_user(probe_app, lines):
    with Client(probe_app) as client:
        assert client.http.get("/event/acme-probe").status_code == 200
    (line,) = lines("broker.requests")
    assert line["route"] == "/event/{connection}"
    assert (line["connection"], line["client_id"], line["user_id"]) == (
        "acme-probe", "app-probe", "oidc|probe|u1")


def test_the_scope_holds_the_route_template_ip_and_a_truncated_user_agent(probe_app, lines):
    with Client(probe_app) as client:
        response = client.http.get("/facts", headers={"User-Agent": "U" * 1000})
    facts = json.loads(response.body)
    assert facts["route"] == "/facts" and facts["ip"] == "127.0.0.1"
    assert facts["user_agent"] == "U" * request_log.MAX_USER_AGENT
    assert facts["request_id"] == lines("broker.requests")[0]["request_id"]
    assert "U" * 10 not in lines.text()  # the User-Agent goes to events, not to the request line


def test_no_user_agent_no_user_agent_fact(probe_app):
    with Client(probe_app) as client:
        facts = json.loads(client.http.get("/facts").body)
    assert "user_agent" not in facts


@pytest.mark.parametrize("path", ["/unhandled", "/view-error"])
def test_an_exception_is_still_one_line_with_status_500(probe_app, lines, capsys, path):
    with Client(probe_app) as client:
        assert client.http.get(path).status_code == 500
    (line,) = lines("broker.requests")
    assert line["status"] == 500 and line["level"] == "ERROR" and line["route"] == path
    if path == "/unhandled":  # it went through the middleware: its type is named
        assert line["error_type"] == "ChaliceUnhandledError"
    (metric,) = emf_lines(capsys)
    assert metric["Http5xx"] == 1


def test_api_gateways_request_id_is_the_lines_request_id(probe_app, lines):
    from chalice.local import LambdaContext

    event = {"resource": "/facts", "path": "/facts", "httpMethod": "GET",
             "headers": {"user-agent": "curl/8"}, "multiValueHeaders": {},
             "queryStringParameters": None, "multiValueQueryStringParameters": None,
             "pathParameters": None, "stageVariables": None, "body": None, "isBase64Encoded": False,
             "requestContext": {"resourcePath": "/facts", "httpMethod": "GET", "path": "/api/facts",
                                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                                "identity": {"sourceIp": "198.51.100.4"}}}
    answer = probe_app(event, LambdaContext("request-log-probe", 128))
    assert answer["statusCode"] == 200
    facts = json.loads(answer["body"])
    assert facts["request_id"] == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    assert facts["ip"] == "198.51.100.4" and facts["user_agent"] == "curl/8"
    (line,) = lines("broker.requests")
    assert line["request_id"] == line["requestId"] == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"


def test_in_lambda_the_line_names_the_x_ray_trace(probe_app, lines, monkeypatch):
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-5759e988-bd862e3fe1be46a994272793;"
                                           "Parent=53995c3f42cd8ad8;Sampled=1")
    with Client(probe_app) as client:
        client.http.get("/facts")
    assert lines("broker.requests")[0]["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    monkeypatch.delenv("_X_AMZN_TRACE_ID")
    with Client(probe_app) as client:
        client.http.get("/facts")
    assert "trace_id" not in lines("broker.requests")[1]
