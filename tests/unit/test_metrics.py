"""Metrics as CloudWatch Embedded Metric Format lines (SPEC §9, chalicelib/metrics.py).

Every line is checked against the EMF specification (CloudWatch User Guide, "Specification:
Embedded metric format"): an ``_aws`` member with a millisecond ``Timestamp`` and
``CloudWatchMetrics`` directives; every dimension a directive names, and every metric, has a
value at the top level. Then what each log event and each request counts, with bounded
dimension values (each distinct value is a billed custom metric).
"""
from __future__ import annotations

import json

import pytest

from chalicelib import metrics

UNITS = {"Count", "Milliseconds"}


@pytest.fixture(autouse=True)
def settings(monkeypatch):
    monkeypatch.setenv("BROKER_STAGE", "local")
    monkeypatch.setenv("BROKER_ISSUER", "http://127.0.0.1:8000/")
    monkeypatch.setenv("BROKER_ALLOW_INSECURE_LOOPBACK", "true")


def valid_emf(doc: dict) -> dict[str, tuple[float, list[list[str]]]]:
    """Check one EMF document; return {metric: (value, dimension sets)}."""
    meta = doc["_aws"]
    assert set(meta) == {"Timestamp", "CloudWatchMetrics"}
    assert isinstance(meta["Timestamp"], int) and meta["Timestamp"] > 10**12  # milliseconds
    found: dict[str, tuple[float, list[list[str]]]] = {}
    assert meta["CloudWatchMetrics"], doc
    for directive in meta["CloudWatchMetrics"]:
        assert set(directive) == {"Namespace", "Dimensions", "Metrics"}
        assert directive["Namespace"] == metrics.NAMESPACE
        assert directive["Dimensions"] and directive["Metrics"]
        for names in directive["Dimensions"]:
            assert 1 <= len(names) <= 30 and names[0] == "Stage", names
            for name in names:
                value = doc.get(name)
                assert isinstance(value, str) and 1 <= len(value) <= 1024, (name, doc)
        for metric in directive["Metrics"]:
            assert set(metric) == {"Name", "Unit"} and metric["Unit"] in UNITS
            value = doc.get(metric["Name"])
            assert isinstance(value, (int, float)) and not isinstance(value, bool), (metric, doc)
            assert metric["Name"] not in found, "a metric in two directives"
            found[metric["Name"]] = (value, directive["Dimensions"])
    return found


def emitted(capsys) -> list[dict]:
    out = capsys.readouterr().out
    assert out.endswith("\n") or not out
    return [json.loads(line) for line in out.splitlines()]


def one(capsys) -> tuple[dict, dict[str, tuple[float, list[list[str]]]]]:
    (doc,) = emitted(capsys)
    return doc, valid_emf(doc)


def test_the_validator_refuses_what_cloudwatch_would_not_extract():
    good = metrics.document([("Logins", "Count", 1, [["Connection"]])], {"Connection": "acme"})
    assert valid_emf(good)["Logins"] == (1, [["Stage", "Connection"]])
    for broken in (
        {k: v for k, v in good.items() if k != "Connection"},  # a dimension without a value
        {k: v for k, v in good.items() if k != "Logins"},  # a metric without a value
        {**good, "Logins": "1"},
        {**good, "_aws": {**good["_aws"], "Timestamp": 1700000000}},  # seconds, not milliseconds
    ):
        with pytest.raises(AssertionError):
            valid_emf(broken)
    with pytest.raises(ValueError):  # document() itself refuses a dimension it has no value for
        metrics.document([("Logins", "Count", 1, [["Connection"]])], {})


def test_timestamp_and_stage_come_from_the_clock_and_the_settings(capsys, fixed_clock):
    metrics.for_request("/authorize", 302, 12.5)
    doc, _ = one(capsys)
    assert doc["_aws"]["Timestamp"] == int(fixed_clock.now() * 1000)
    assert doc["Stage"] == "local"


def test_a_misconfigured_stage_still_counts(capsys, monkeypatch):
    monkeypatch.setenv("BROKER_STAGE", "prod")
    monkeypatch.setenv("BROKER_ISSUER", "http://broker.example.com/")  # refused by the settings
    metrics.for_request("/authorize", 500, 1.0)
    doc, found = one(capsys)
    assert doc["Stage"] == "prod" and found["Http5xx"][0] == 1


def test_a_successful_login_counts_by_connection(capsys):
    metrics.for_event({"type": "s", "connection": "acme", "connection_id": "con_1", "details": {}})
    doc, found = one(capsys)
    assert found["Logins"] == (1, [["Stage"], ["Stage", "Connection"]])
    assert found["LogEvents"] == (1, [["Stage", "Type"]])
    assert doc["Connection"] == "acme" and doc["Type"] == "s"


@pytest.mark.parametrize(("error", "counted"), [
    ("access_denied", "access_denied"), ("invalid_grant", "invalid_grant"),
    ("made_up_by_an_idp", "other"), ("x" * 500, "other"), (None, "other"), (7, "other"),
])
def test_a_failed_login_counts_by_connection_and_a_bounded_error(capsys, error, counted):
    metrics.for_event({"type": "f", "connection": "acme", "connection_id": "con_1",
                       "details": {"error": error, "check": "state"}})
    doc, found = one(capsys)
    assert found["LoginFailures"] == (1, [["Stage"], ["Stage", "Connection"],
                                          ["Stage", "Connection", "Error"]])
    assert doc["Connection"] == "acme" and doc["Error"] == counted


def test_a_connection_no_administrator_stored_is_not_a_dimension_value(capsys):
    # a name as a caller asked for it (no connection_id): anyone could mint new ones
    metrics.for_event({"type": "f", "connection": "random-8f3a", "details": {}})
    metrics.for_event({"type": "s", "connection_id": "con_1", "details": {}})  # no name
    docs = emitted(capsys)
    assert [d["Connection"] for d in docs] == ["none", "none"]
    for doc in docs:
        valid_emf(doc)


@pytest.mark.parametrize(("type_", "grant", "metric"), [
    ("seacft", "authorization_code", "TokenGrants"),
    ("sertft", "refresh_token", "TokenGrants"),
    ("seccft", "client_credentials", "TokenGrants"),
    ("feacft", "authorization_code", "TokenGrantFailures"),
    ("fertft", "refresh_token", "TokenGrantFailures"),
    ("feccft", "client_credentials", "TokenGrantFailures"),
])
def test_token_grants_count_by_grant_type(capsys, type_, grant, metric):
    metrics.for_event({"type": type_, "connection": "acme", "details": {"error": "invalid_grant"}})
    doc, found = one(capsys)
    assert doc["GrantType"] == grant and metric in found
    assert not {"TokenGrants", "TokenGrantFailures"} - {metric} & set(found)
    if metric == "TokenGrantFailures":
        assert found[metric][1] == [["Stage", "GrantType"], ["Stage", "GrantType", "Error"]]
        assert doc["Error"] == "invalid_grant"
    else:
        assert found[metric][1] == [["Stage", "GrantType"]] and "Error" not in doc
    assert "Connection" not in doc


@pytest.mark.parametrize(("type_", "outcome"), [("sgtr", "success"), ("fgtr", "failure")])
def test_global_token_revocation_counts_by_outcome(capsys, type_, outcome):
    metrics.for_event({"type": type_, "details": {"status": 404, "reason": "unknown_user"}})
    doc, found = one(capsys)
    assert found["GlobalTokenRevocations"] == (1, [["Stage", "Outcome"]])
    assert doc["Outcome"] == outcome


@pytest.mark.parametrize(("type_", "details", "outcome"), [
    ("sbcl", {}, "delivered"), ("fbcl", {"outcome": "retry"}, "retry"),
    ("fbcl", {"outcome": "dead_letter"}, "dead_letter"), ("fbcl", {"outcome": "rejected"}, "rejected"),
    ("fbcl", {"outcome": "something new"}, "failed"), ("fbcl", {}, "failed"),
])
def test_backchannel_logout_counts_by_a_bounded_outcome(capsys, type_, details, outcome):
    metrics.for_event({"type": type_, "details": details})
    doc, found = one(capsys)
    assert found["BackchannelLogouts"] == (1, [["Stage", "Outcome"]])
    assert doc["Outcome"] == outcome


@pytest.mark.parametrize("type_", ["slo", "flo", "sapi", "fapi", "limit_wc"])
def test_other_events_count_by_type_only(capsys, type_):
    metrics.for_event({"type": type_, "connection": "acme", "connection_id": "con_1", "details": {}})
    doc, found = one(capsys)
    assert set(found) == {"LogEvents"} and doc["Type"] == type_


@pytest.mark.parametrize(("status", "is_5xx"), [(200, 0), (302, 0), (404, 0), (499, 0), (500, 1),
                                                (503, 1)])
def test_a_request_counts_its_duration_and_whether_it_was_a_5xx(capsys, status, is_5xx):
    metrics.for_request("/login/callback/{connection}", status, 41.23456)
    doc, found = one(capsys)
    assert found["Duration"] == (41.235, [["Stage"], ["Stage", "Route"]])
    assert found["Http5xx"] == (is_5xx, [["Stage"], ["Stage", "Route"]])
    assert doc["Route"] == "/login/callback/{connection}"
    assert len(doc["_aws"]["CloudWatchMetrics"]) == 1  # same dimensions: one directive


@pytest.mark.parametrize("route", [None, "", "no-leading-slash", "/" + "a" * 200,
                                   "/authorize?code=abc", "/x y", "/caf\u00e9"])
def test_a_route_that_is_no_path_template_is_other(capsys, route):
    metrics.for_request(route, 200, 1.0)
    doc, _ = one(capsys)
    assert doc["Route"] == "other"


def test_a_request_metric_never_raises(capsys, monkeypatch):
    def broken(doc):
        raise OSError("stdout closed")

    monkeypatch.setattr(metrics, "emit", broken)
    metrics.for_request("/authorize", 200, 1.0)  # no exception


@pytest.mark.parametrize("name", ["line\nbreak", "caf\u00e9", "x" * 129])
def test_a_connection_name_cloudwatch_would_refuse_is_other_and_stays_on_one_line(capsys, name):
    metrics.for_event({"type": "f", "connection": name, "connection_id": "con_1",
                       "details": {"error": "access_denied"}})
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and json.loads(out)["Connection"] == "other"
