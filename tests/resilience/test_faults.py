"""SPEC §8 fault injection: every storage call of every flow fails once, and every upstream call
misbehaves, and each time the caller gets a clean answer, fast, and storage holds nothing
half-done.

How: a healthy run of a step records the AWS calls it makes (caches cold, so none is hidden);
then the step runs again once per recorded call with exactly that call failing (all its
attempts; the kind of failure rotates through unreachable, throttled, 500 and read timeout).
Each run asserts:

- the answer: API routes 503 ``temporarily_unavailable`` (never a 500 or a traceback); Global
  Token Revocation 503 before any user was touched, 422 after; browser routes a redirect to the
  application with ``error=temporarily_unavailable`` once its redirect_uri is validated, else a
  503 page;
- the time taken (botocore's backoff is recorded, not slept; see conftest.py);
- storage: the table scanned before and after (with a client of our own) shows no new user,
  session, grant, code or refresh token, no changed item; the only removal allowed is the login
  transaction a callback consumed;
- the retry: a token request that failed consumed nothing, so the same code or refresh token
  works once the fault is gone; a callback that failed before consuming its transaction can be
  replayed; an interrupted revocation is finished by the retry.
"""
from __future__ import annotations

import json
import uuid

import pytest

from chalicelib import netguard
from chalicelib.login.jwks_cache import jwks_cache
from chalicelib.logout import backchannel
from tests.resilience.helpers import (
    APP_CALLBACK,
    FAULT_KINDS,
    AwsFaults,
    Stopwatch,
    assert_app_redirect,
    assert_no_internals,
    assert_oauth_unavailable,
    assert_unavailable_page,
    authorize,
    callback,
    claims,
    code_of,
    cold_caches,
    diff,
    exchange,
    gtr,
    gtr_jwt,
    login,
    numbered,
    record_calls,
    refresh,
    snapshot,
    upstream_answer,
    userinfo,
)
from tests.support.bcl_receiver import BclReceiver
from tests.support.flow import Browser, location_params

# A failing step makes no more than a few local round trips; with botocore's backoff not slept
# it ends in well under a second. The bound leaves room for a loaded CI machine.
FAST = 5.0


def points(sequence):
    """``(index, service, operation, nth, kind)`` for every recorded call but the log event
    writes (best effort by contract: tests/api/test_log_events_*.py fail them on purpose)."""
    skipped = getattr(sequence, "log_writes", frozenset())
    for index, (service, operation, nth) in enumerate(numbered(sequence)):
        if index not in skipped:
            yield index, service, operation, nth, FAULT_KINDS[index % len(FAULT_KINDS)]


def faulted(run, service, operation, nth, kind):
    """Run ``run()`` with the ``nth`` call of ``operation`` failing; (result, faults, seconds)."""
    with AwsFaults() as faults, Stopwatch() as watch:
        faults.fail(service, operation, nth=nth, kind=kind)
        result = run()
    assert faults.injected >= 1, f"{service} {operation} #{nth} was not reached"
    assert watch.elapsed < FAST, (service, operation, kind, watch.elapsed)
    return result, faults


def assert_untouched(change, allowed_removed: frozenset = frozenset()) -> None:
    assert not change.added, f"left behind: {change}"
    assert not change.changed, f"changed: {change}"
    assert change.kinds("removed") <= allowed_removed, f"removed: {change}"


def assert_tokens_work(client, app, tokens: dict) -> None:
    info = userinfo(client, tokens["access_token"])
    assert info.status_code == 200, info.body


# --------------------------------------------------------------------------- /authorize

def test_authorize_every_storage_call(mclient, world, idp):
    web, connection = world["web"], world["back"]
    sequence = record_calls(lambda: authorize(mclient, web, connection))
    assert ("dynamodb", "PutItem") in sequence  # the login transaction
    for index, service, operation, nth, kind in points(sequence):
        cold_caches()
        before = snapshot()
        started, _ = faulted(lambda: authorize(mclient, web, connection),
                             service, operation, nth, kind)
        response = started.response
        if response.status_code == 503:
            # Only the very first call (the application lookup) comes before the redirect_uri
            # is validated; after that every outage goes back to the application.
            assert index == 0, (service, operation, nth)
            assert_unavailable_page(response)
        else:
            assert_app_redirect(response, status=(302,))
        assert_untouched(diff(before, snapshot()))


# --------------------------------------------------------------------------- /login/callback

@pytest.mark.parametrize("channel", ["front", "back", "info"])
def test_callback_every_storage_call(mclient, world, idp, channel):
    """front: form_post ID token; back: code exchange; info: code exchange and userinfo."""
    web, connection = world["web"], world[channel]

    def prepared():
        started = authorize(mclient, web, connection)
        return started, upstream_answer(started)

    started, answer = prepared()
    cold_caches()
    sequence = record_calls(lambda: code_of(callback(started, answer)))
    assert ("dynamodb", "TransactWriteItems") in sequence
    for _index, service, operation, nth, kind in points(sequence):
        started, answer = prepared()
        cold_caches()
        before = snapshot()
        response, _ = faulted(lambda s=started, a=answer: callback(s, a),
                              service, operation, nth, kind)
        change = diff(before, snapshot())
        assert "broker_session" not in started.browser.cookies
        if response.status_code == 503:
            # The transaction could not be read: nothing names a trusted redirect_uri yet, and
            # nothing was consumed, so the very same callback succeeds once storage is back.
            assert_unavailable_page(response)
            assert_untouched(change)
            code_of(callback(started, answer))
            continue
        assert_app_redirect(response, status=(303,))
        assert_untouched(change, allowed_removed=frozenset({"TX"}))


# --------------------------------------------------------------------------- /oauth/token

def _new_code(client, app, connection):
    started = authorize(client, app, connection)
    return code_of(callback(started, upstream_answer(started))), started.verifier


@pytest.mark.parametrize("app_name", ["web", "spa"])
def test_code_exchange_every_storage_call(mclient, world, idp, app_name):
    app, connection = world[app_name], world["back"]
    code, verifier = _new_code(mclient, app, connection)
    cold_caches()
    sequence = record_calls(lambda: exchange(mclient, app, code, verifier))
    for _index, service, operation, nth, kind in points(sequence):
        code, verifier = _new_code(mclient, app, connection)
        cold_caches()
        before = snapshot()
        response, _ = faulted(lambda c=code, v=verifier: exchange(mclient, app, c, v),
                              service, operation, nth, kind)
        assert_oauth_unavailable(response)
        assert_untouched(diff(before, snapshot()))
        # Nothing was consumed: the client's retry gets tokens, and they work.
        retried = exchange(mclient, app, code, verifier)
        assert retried.status_code == 200, (service, operation, retried.data)
        assert_tokens_work(mclient, app, retried.data)
        assert refresh(mclient, app, retried.data["refresh_token"]).status_code == 200


@pytest.mark.parametrize("app_name", ["web", "spa"])
def test_refresh_every_storage_call(mclient, world, idp, app_name):
    app = world[app_name]
    current = login(mclient, app, world["back"])["refresh_token"]
    cold_caches()
    recorded = {}
    sequence = record_calls(lambda: recorded.update(r=refresh(mclient, app, current)))
    assert recorded["r"].status_code == 200, recorded["r"].data
    current = recorded["r"].data.get("refresh_token", current)
    for _index, service, operation, nth, kind in points(sequence):
        cold_caches()
        before = snapshot()
        response, _ = faulted(lambda t=current: refresh(mclient, app, t),
                              service, operation, nth, kind)
        assert_oauth_unavailable(response)
        assert_untouched(diff(before, snapshot()))
        # The refresh token was neither rotated nor revoked: the retry works.
        retried = refresh(mclient, app, current)
        assert retried.status_code == 200, (service, operation, retried.data)
        assert_tokens_work(mclient, app, retried.data)
        current = retried.data.get("refresh_token", current)


# --------------------------------------------------------------------------- /userinfo

def test_userinfo_every_storage_call(mclient, world, idp):
    app = world["web"]
    tokens = login(mclient, app, world["front"])
    cold_caches()
    sequence = record_calls(lambda: userinfo(mclient, tokens["access_token"]))
    assert sequence
    for _index, service, operation, nth, kind in points(sequence):
        cold_caches()
        response, _ = faulted(lambda: userinfo(mclient, tokens["access_token"]),
                              service, operation, nth, kind)
        # An outage is not a revoked token: 503, never 401 (the client would drop its session).
        assert_oauth_unavailable(response)
        assert userinfo(mclient, tokens["access_token"]).status_code == 200


# --------------------------------------------------------------------------- Global Token Revocation

@pytest.fixture()
def sqs():
    """Our own SQS client (never faulted) on empty logout queues; re-queues visible at once."""
    import os

    import boto3

    client = boto3.client("sqs", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                          region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    for dead_letter in (False, True):
        client.purge_queue(QueueUrl=backchannel.queue_url(dead_letter))
    yield client
    for dead_letter in (False, True):
        client.purge_queue(QueueUrl=backchannel.queue_url(dead_letter))


def queued(sqs, *, rounds: int = 5) -> list[dict]:
    """Every message in the logout queue (received with visibility 0, so they stay)."""
    found: dict[str, dict] = {}
    for _ in range(rounds):
        batch = sqs.receive_message(QueueUrl=backchannel.queue_url(), MaxNumberOfMessages=10,
                                    VisibilityTimeout=0).get("Messages", [])
        for message in batch:
            found[message["MessageId"]] = json.loads(message["Body"])
        if not batch:
            break
    return list(found.values())


@pytest.fixture()
def receiver(mclient, mapi, world):
    """A validating back-channel logout endpoint registered for the web app."""
    jwks = json.loads(mclient.http.get("/.well-known/jwks.json").body)
    web = world["web"]
    rp = BclReceiver(web["client_id"], "http://127.0.0.1:8000/", jwks).start()
    patched = mapi.call("PATCH", f"/api/v2/clients/{web['client_id']}",
                        body={"oidc_logout": {"backchannel_logout_urls": [rp.url]}})
    assert patched.status_code == 200, patched.data
    yield rp
    mapi.call("PATCH", f"/api/v2/clients/{web['client_id']}",
              body={"oidc_logout": {"backchannel_logout_urls": []}})
    rp.stop()


def _gtr_user(mclient, world, idp):
    sub = "gtr-" + uuid.uuid4().hex[:10]
    idp.user = {"sub": sub, "email": f"{sub}@example.com", "email_verified": True, "name": sub}
    tokens = login(mclient, world["web"], world["front"])
    return sub, tokens, claims(tokens["id_token"])["sid"]


def test_global_token_revocation_every_storage_call(mclient, world, idp, sqs, receiver):
    connection = world["front"]
    sub, _, _ = _gtr_user(mclient, world, idp)
    cold_caches()
    sequence = record_calls(lambda: _assert_status(
        gtr(mclient, connection, gtr_jwt(idp, connection),
            {"sub_id": {"format": "iss_sub", "iss": idp.issuer, "sub": sub}}), 204))
    assert ("sqs", "SendMessage") in sequence  # the back-channel logout is queued
    for _index, service, operation, nth, kind in points(sequence):
        sub, tokens, sid = _gtr_user(mclient, world, idp)
        body = {"sub_id": {"format": "iss_sub", "iss": idp.issuer, "sub": sub}}
        sqs.purge_queue(QueueUrl=backchannel.queue_url())
        cold_caches()
        before = snapshot()
        response, _ = faulted(lambda b=body: gtr(mclient, connection, gtr_jwt(idp, connection), b),
                              service, operation, nth, kind)
        assert_no_internals(response)
        assert response.status_code in (503, 422), (service, operation, response.body)
        if response.status_code == 503:
            # SPEC §5: 503 only before any user was touched — and then nothing was.
            assert_untouched(diff(before, snapshot()))
            assert refresh(mclient, world["web"], tokens["refresh_token"]).status_code == 200
        # The IdP retries (here with a fresh JWT): the revocation completes, whatever the first
        # attempt had done, and the application is told.
        retried = gtr(mclient, connection, gtr_jwt(idp, connection), body)
        assert retried.status_code == 204, (service, operation, retried.body)
        assert refresh(mclient, world["web"], tokens["refresh_token"]).status_code == 400
        assert userinfo(mclient, tokens["access_token"]).status_code == 401
        sids = [m["sid"] for m in queued(sqs)]
        assert sid in sids, (service, operation, sids)


def _assert_status(response, status):
    assert response.status_code == status, response.body
    return response


# --------------------------------------------------------------------------- back-channel logout delivery

@pytest.fixture()
def instant_redelivery(sqs, monkeypatch):
    """Visibility timeout 0 on the logout queue: a message the worker kept (not deleted) is
    visible again at once, as it would be after the timeout; re-queues have no delay."""
    url = backchannel.queue_url()
    previous = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])[
        "Attributes"]["VisibilityTimeout"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "0"})
    monkeypatch.setattr(backchannel, "BACKOFF_BASE_SECONDS", 0)
    yield
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": previous})


def _deliveries_for(rp, sid):
    return [d for d in rp.deliveries if d.claims and d.claims.get("sid") == sid]


@pytest.mark.parametrize("first_answer", [200, 503])
def test_backchannel_delivery_every_call(mclient, world, sqs, receiver, instant_redelivery,
                                         first_answer):
    """The worker's calls (queue URL, receive, signing key, delete, and the re-queue after a 503)
    each fail once: the message is never lost and ends up delivered, the worker never crashes."""
    web = world["web"]

    def enqueue():
        sid = "bcl-" + uuid.uuid4().hex[:10]
        receiver.statuses[:] = [first_answer]
        backchannel._send({"client_id": web["client_id"], "url": receiver.url,
                           "sub": "oidc|resilience|alice", "sid": sid, "attempt": 0})
        return sid

    def drain(sid):
        for _ in range(6):
            try:
                backchannel.process_queue_once()
            except Exception:  # noqa: BLE001 - the receive itself failed: poll again
                pass
            if not queued(sqs, rounds=1) and any(d.status == 200
                                                 for d in _deliveries_for(receiver, sid)):
                return
        raise AssertionError(f"message for {sid} not delivered")

    sid = enqueue()
    cold_caches()
    sequence = record_calls(lambda: drain(sid))
    assert ("secretsmanager", "GetSecretValue") in sequence
    if first_answer == 503:
        assert ("sqs", "SendMessage") in sequence  # the re-queue with backoff
    for _index, service, operation, nth, kind in points(sequence):
        sid = enqueue()
        cold_caches()
        with AwsFaults() as faults, Stopwatch() as watch:
            faults.fail(service, operation, nth=nth, kind=kind)
            try:
                outcomes = backchannel.process_queue_once()
            except Exception as exc:  # noqa: BLE001
                # Only the receive may fail out of the worker (the Lambda service receives for
                # the real handler); the local worker logs it and polls again.
                assert operation in ("ReceiveMessage", "GetQueueUrl"), (operation, exc)
                outcomes = []
        assert watch.elapsed < FAST
        assert "malformed" not in outcomes
        drain(sid)  # healed: the message is delivered (at least once), none is left over
        assert sqs.get_queue_attributes(QueueUrl=backchannel.queue_url(dead_letter=True),
                                        AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_rp_logout_with_sqs_down_is_finished_by_the_retry(mclient, world, idp, sqs, receiver):
    """The session ends, its notifications cannot be queued: a 503 page, the cookie kept; the
    browser's retry finishes the job (grants revoked, application notified)."""
    web = world["web"]
    browser = Browser(mclient)
    started = authorize(mclient, web, world["front"], browser=browser,
                        scope="openid profile email")
    tokens = exchange(mclient, web, code_of(callback(started, upstream_answer(started))),
                      started.verifier).data
    sid = claims(tokens["id_token"])["sid"]
    with AwsFaults() as faults:
        faults.outage("sqs")
        page = browser.get("/v2/logout")
    assert_unavailable_page(page)
    assert "broker_session" in browser.cookies
    assert sid not in [m["sid"] for m in queued(sqs)]
    done = browser.get("/v2/logout")
    assert done.status_code in (200, 302), done.body
    assert sid in [m["sid"] for m in queued(sqs)]
    assert userinfo(mclient, tokens["access_token"]).status_code == 401


# --------------------------------------------------------------------------- the upstream IdP

def _failed_login(mclient, world, channel):
    started = authorize(mclient, world["web"], world[channel])
    assert started.response.status_code == 302
    before = snapshot()
    with Stopwatch() as watch:
        answer = upstream_answer(started)
        response = callback(started, answer)
    return started, response, diff(before, snapshot()), watch.elapsed


@pytest.mark.parametrize("mode", ["drop", "500", "502html", "notjson"])
def test_token_endpoint_failures(mclient, world, idp, mode):
    idp.faults["/token"] = mode
    started, response, change, elapsed = _failed_login(mclient, world, "back")
    assert elapsed < FAST
    assert_no_internals(response)
    assert "broker_session" not in started.browser.cookies
    assert_untouched(change, allowed_removed=frozenset({"TX"}))
    params = location_params(response)
    assert response.status_code == 303 and response.headers["Location"].startswith(APP_CALLBACK)
    assert "code" not in params and params["state"] == "app-state"
    if mode == "notjson":  # a 200 that is not a token response: a broken IdP, either is fair
        assert params["error"] in ("access_denied", "temporarily_unavailable"), params
    else:  # SPEC §8: an IdP outage is temporarily_unavailable, not a refusal
        assert params["error"] == "temporarily_unavailable", params
    idp.faults.clear()
    code_of(_failed_login(mclient, world, "back")[1])  # the IdP is back: so are logins


def test_token_endpoint_slower_than_the_deadline(mclient, world, idp, monkeypatch):
    """A hanging token endpoint: the exchange is cut at netguard's whole-exchange bound (10 s
    in production; 0.5 s here) and the application hears temporarily_unavailable."""
    monkeypatch.setattr(netguard, "CONNECT_TIMEOUT", 0.3)
    monkeypatch.setattr(netguard, "READ_TIMEOUT", 0.4)
    monkeypatch.setattr(netguard, "TOTAL_TIMEOUT", 0.5)
    idp.faults["/token"] = "slow"
    started, response, change, elapsed = _failed_login(mclient, world, "back")
    idp.release.set()
    assert elapsed < 3.0, elapsed
    assert_app_redirect(response, status=(303,))
    assert_untouched(change, allowed_removed=frozenset({"TX"}))
    assert "broker_session" not in started.browser.cookies


@pytest.mark.parametrize("mode", ["drop", "500"])
def test_jwks_down_and_nothing_cached(mclient, world, idp, mode):
    jwks_cache().clear()
    idp.faults["/jwks"] = mode
    started, response, change, elapsed = _failed_login(mclient, world, "front")
    assert elapsed < FAST
    assert_app_redirect(response, status=(303,))
    assert_untouched(change, allowed_removed=frozenset({"TX"}))


def test_jwks_down_with_a_cached_copy(mclient, world, idp, monkeypatch):
    """SPEC §8: a failed refresh keeps serving the last good copy (up to 24 h), logged; a login
    never fails only because a cache refresh did. The cache's clock is moved, nothing waits."""
    import logging

    jwks_cache().clear()
    code_of(_failed_login(mclient, world, "front")[1])  # healthy: the JWKS is cached
    cache = jwks_cache()
    real_clock = cache._clock
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    logger = logging.getLogger("chalicelib.login.jwks")
    handler = Collect(level=logging.WARNING)
    logger.addHandler(handler)
    try:
        idp.faults["/jwks"] = "drop"
        monkeypatch.setattr(cache, "_clock", lambda: real_clock() + 2 * 3600)  # stale, < 24 h
        fetches = len(idp.requests_to("/jwks"))
        code_of(_failed_login(mclient, world, "front")[1])
        assert len(idp.requests_to("/jwks")) == fetches + 1  # the refresh was tried
        assert any("serving the last good copy" in line for line in lines), lines
        monkeypatch.setattr(cache, "_clock", lambda: real_clock() + 25 * 3600)  # too old now
        _, response, change, _ = _failed_login(mclient, world, "front")
        assert_app_redirect(response, status=(303,))
        assert_untouched(change, allowed_removed=frozenset({"TX"}))
    finally:
        logger.removeHandler(handler)
        cache.clear()


@pytest.mark.parametrize("mode", ["drop", "500", "slow"])
def test_userinfo_endpoint_down(mclient, world, idp, mode, monkeypatch):
    monkeypatch.setattr(netguard, "TOTAL_TIMEOUT", 0.5)
    monkeypatch.setattr(netguard, "READ_TIMEOUT", 0.4)
    idp.faults["/userinfo"] = mode
    started, response, change, elapsed = _failed_login(mclient, world, "info")
    idp.release.set()
    assert elapsed < FAST
    assert_no_internals(response)
    assert_untouched(change, allowed_removed=frozenset({"TX"}))
    params = location_params(response)
    assert response.status_code == 303 and "code" not in params
    assert params["error"] == "temporarily_unavailable", params


# --------------------------------------------------------------------------- Management API

def _auth0_unavailable(response) -> None:
    assert_no_internals(response)
    assert response.status_code == 503, response.body
    body = json.loads(response.body)
    assert body["statusCode"] == 503 and body["error"] == "Service Unavailable", body
    assert body["errorCode"] == "temporarily_unavailable" and body["message"], body


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_management_api_with_dynamodb_down(mapi, world, kind):
    web = world["web"]
    before = snapshot()
    calls = [
        ("GET", "/api/v2/clients", None),
        ("GET", f"/api/v2/clients/{web['client_id']}", None),
        ("POST", "/api/v2/clients", {"name": "never-created", "callbacks": [APP_CALLBACK]}),
        ("PATCH", f"/api/v2/clients/{web['client_id']}", {"description": "never written"}),
        ("GET", f"/api/v2/connections/{world['back']['id']}", None),
        ("GET", "/api/v2/users", None),
    ]
    with AwsFaults() as faults:
        faults.outage("dynamodb", kind=kind)
        for method, path, body in calls:
            with Stopwatch() as watch:
                response = mapi.call(method, path, body=body)
            _auth0_unavailable(response)
            assert watch.elapsed < FAST
    assert_untouched(diff(before, snapshot()))
    assert mapi.call("GET", "/api/v2/clients").status_code == 200


def test_management_api_with_secrets_manager_down(mapi, world, idp):
    """Creating a back-channel connection stores its client secret in Secrets Manager: with that
    down, a 503 and no connection (the name stays free)."""
    from chalicelib.secrets import secret_store

    secret_store().forget()
    name = "rf-nosecret-" + uuid.uuid4().hex[:6]
    body = {"name": name, "strategy": "oidc", "options": {
        "type": "back_channel", "discovery_url": idp.issuer, "client_id": idp.client_id,
        "client_secret": idp.client_secret}}
    before = snapshot()
    with AwsFaults() as faults:
        faults.outage("secretsmanager")
        response = mapi.call("POST", "/api/v2/connections", body=body)
    _auth0_unavailable(response)
    assert_untouched(diff(before, snapshot()))
    created = mapi.call("POST", "/api/v2/connections", body=body)
    assert created.status_code == 201, created.data
    mapi.call("DELETE", f"/api/v2/connections/{created.data['id']}")


def test_login_with_secrets_manager_down_and_a_warm_cache(mclient, world, idp):
    """SPEC §7: a warm request makes no Secrets Manager call, so an outage of it does not stop
    logins or token requests that only need cached secrets."""
    login(mclient, world["web"], world["back"])  # warms the connection secret and the keys
    with AwsFaults() as faults:
        faults.outage("secretsmanager")
        tokens = login(mclient, world["web"], world["back"])
        assert refresh(mclient, world["web"], tokens["refresh_token"]).status_code == 200
    assert faults.calls_of("secretsmanager") == []
