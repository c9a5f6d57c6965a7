"""SPEC §6: OIDC Back-Channel Logout to applications, received by a real relying-party endpoint
(tests/support/bcl_receiver.py) that validates every logout token.

Deliveries run by calling ``backchannel.process_queue_once()`` (the Lambda SQS handler's local
stand-in) against the embedded SQS; the backoff base is 0 so a re-queued message is visible at
once. Nothing sleeps.
"""
from __future__ import annotations

import json
import logging
import time

import pytest

from chalicelib.logout import backchannel
from tests.api import test_logout as flows
from tests.api.test_logout import SIGNED_OUT, claims_of, confirmed_logout, logout_path, sign_in
from tests.support.bcl_receiver import BclReceiver, InvalidLogoutToken

# The logout tests' fixtures: an upstream IdP, two web apps and a SPA on one connection.
idp, apps = flows.idp, flows.apps

ISSUER = "http://127.0.0.1:8000/"


@pytest.fixture()
def queues(monkeypatch, client):
    """Empty logout queues; re-queued messages visible at once (SQS DelaySeconds=0)."""
    from chalicelib import aws

    monkeypatch.setattr(backchannel, "BACKOFF_BASE_SECONDS", 0)
    sqs = aws.client("sqs")
    for dead_letter in (False, True):
        sqs.purge_queue(QueueUrl=backchannel.queue_url(dead_letter))
    return sqs


@pytest.fixture()
def jwks(client):
    """What a relying party would fetch from the broker's jwks_uri."""
    response = client.http.get("/.well-known/jwks.json")
    assert response.status_code == 200
    return json.loads(response.body)


@pytest.fixture()
def receivers(api, jwks):
    """Start a receiver for an application and register it as its back-channel logout URL."""
    started = []

    def start(app, statuses=()):
        rp = BclReceiver(app["client_id"], ISSUER, jwks, statuses=list(statuses)).start()
        started.append(rp)
        patched = api.call("PATCH", f"/api/v2/clients/{app['client_id']}",
                           body={"oidc_logout": {"backchannel_logout_urls": [rp.url]}})
        assert patched.status_code == 200, patched.data
        return rp

    yield start
    for rp in started:
        rp.stop()


@pytest.fixture()
def delivery_log():
    """The delivery log lines (a handler of our own: works with or without pytest's logging
    plugin, i.e. also under ``-p no:logging``)."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = logging.getLogger(backchannel.__name__)
    handler = Collect(level=logging.INFO)
    previous = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(previous)


def drain(max_rounds: int = 20) -> list[str]:
    outcomes: list[str] = []
    for _ in range(max_rounds):
        batch = backchannel.process_queue_once()
        if not batch:
            return outcomes
        outcomes += batch
    raise AssertionError(f"the logout queue never drained: {outcomes}")


def dead_letters(sqs) -> list[dict]:
    found = sqs.receive_message(QueueUrl=backchannel.queue_url(dead_letter=True),
                                MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
    return [json.loads(m["Body"]) for m in found]


def sso_pair(client, apps):
    """alice signs in to web, then to other through SSO: one session, two applications."""
    browser, web_tokens = sign_in(client, apps["web"], apps["connection"])
    _, other_tokens = sign_in(client, apps["other"], apps["connection"], browser=browser)
    web_claims, other_claims = claims_of(web_tokens["id_token"]), claims_of(other_tokens["id_token"])
    assert web_claims["sid"] == other_claims["sid"]
    return browser, web_claims


def test_rp_logout_notifies_the_other_application_not_the_initiator(client, apps, queues,
                                                                     receivers):
    web_rp, other_rp = receivers(apps["web"]), receivers(apps["other"])
    browser, id_claims = sso_pair(client, apps)
    response = confirmed_logout(browser, client_id=apps["web"]["client_id"],
                                post_logout_redirect_uri=SIGNED_OUT)
    assert response.status_code == 302
    assert drain() == ["delivered"]
    assert web_rp.deliveries == []
    [delivery] = other_rp.deliveries
    assert delivery.error is None and delivery.status == 200
    assert delivery.content_type.startswith("application/x-www-form-urlencoded")
    assert delivery.header["typ"] == "logout+jwt" and delivery.header["alg"] == "RS256"
    claims = delivery.claims
    assert claims["aud"] == apps["other"]["client_id"]
    assert claims["sub"] == id_claims["sub"] and claims["sid"] == id_claims["sid"]
    assert claims["iss"] == ISSUER
    assert claims["events"] == {backchannel.EVENT: {}}
    assert 0 < claims["exp"] - claims["iat"] <= 120
    assert "nonce" not in claims


def test_auth0_logout_notifies_the_other_application(client, apps, queues, receivers):
    web_rp, other_rp = receivers(apps["web"]), receivers(apps["other"])
    browser, _ = sso_pair(client, apps)
    response = browser.get(logout_path("/v2/logout", client_id=apps["other"]["client_id"]))
    assert response.status_code == 302
    assert drain() == ["delivered"]
    assert other_rp.deliveries == []
    assert [d.claims["aud"] for d in web_rp.accepted] == [apps["web"]["client_id"]]


def test_management_session_delete_notifies_every_application(client, api, apps, queues,
                                                              receivers):
    web_rp, other_rp = receivers(apps["web"]), receivers(apps["other"])
    _, id_claims = sso_pair(client, apps)
    assert api.call("DELETE", f"/api/v2/sessions/{id_claims['sid']}").status_code == 204
    assert sorted(drain()) == ["delivered", "delivered"]
    assert len(web_rp.accepted) == 1 and len(other_rp.accepted) == 1
    assert web_rp.accepted[0].claims["sid"] == other_rp.accepted[0].claims["sid"] == id_claims["sid"]


def test_retries_until_delivered_and_logs_each_attempt(client, apps, queues, receivers,
                                                       delivery_log):
    other_rp = receivers(apps["other"], statuses=[503, 503, 200])
    browser, _ = sso_pair(client, apps)
    confirmed_logout(browser, client_id=apps["web"]["client_id"])
    assert drain() == ["requeued", "requeued", "delivered"]
    assert [d.status for d in other_rp.deliveries] == [503, 503, 200]
    assert all(d.error is None for d in other_rp.deliveries)
    assert len(other_rp.accepted) == 1
    # Each attempt carries a fresh logout token (new jti, the receiver refuses replays).
    assert len({d.claims["jti"] for d in other_rp.deliveries}) == 3
    assert dead_letters(queues) == []
    lines = [r.getMessage() for r in delivery_log if "back-channel logout to client" in
             r.getMessage()]
    assert len(lines) == 3
    assert "(attempt 1): retry 503" in lines[0] and "(attempt 2): retry 503" in lines[1]
    assert "(attempt 3): delivered 200" in lines[2]
    assert all(apps["other"]["client_id"] in line for line in lines)
    assert not any("eyJ" in r.getMessage() for r in delivery_log)  # never the token


def test_a_400_is_final(client, apps, queues, receivers, delivery_log):
    other_rp = receivers(apps["other"], statuses=[400, 200])
    browser, _ = sso_pair(client, apps)
    confirmed_logout(browser, client_id=apps["web"]["client_id"])
    assert drain() == ["rejected"]
    assert [d.status for d in other_rp.deliveries] == [400]
    assert dead_letters(queues) == []
    assert any("rejected 400" in r.getMessage() for r in delivery_log)


def test_always_failing_receiver_ends_in_the_dead_letter_queue(client, apps, queues, receivers,
                                                               delivery_log):
    attempts = backchannel.MAX_ATTEMPTS
    other_rp = receivers(apps["other"], statuses=[500] * (attempts + 2))
    browser, id_claims = sso_pair(client, apps)
    confirmed_logout(browser, client_id=apps["web"]["client_id"])
    assert drain() == ["requeued"] * (attempts - 1) + ["dead_letter"]
    assert len(other_rp.deliveries) == attempts
    [parked] = dead_letters(queues)
    assert parked["client_id"] == apps["other"]["client_id"]
    assert parked["url"] == other_rp.url
    assert parked["sid"] == id_claims["sid"] and parked["attempt"] == attempts
    assert "logout_token" not in parked  # a fresh token is minted per attempt, none is stored
    assert any("dead-letter" in r.getMessage() for r in delivery_log)


def test_unreachable_receiver_is_retried(client, apps, queues, receivers, monkeypatch):
    monkeypatch.setattr(backchannel, "MAX_ATTEMPTS", 2)
    other_rp = receivers(apps["other"])
    other_rp.stop()  # nothing listens on its port any more
    browser, _ = sso_pair(client, apps)
    confirmed_logout(browser, client_id=apps["web"]["client_id"])
    assert drain() == ["requeued", "dead_letter"]
    assert len(dead_letters(queues)) == 1
    other_rp.start()  # let the fixture stop it cleanly


def test_applications_without_a_backchannel_url_get_nothing(client, apps, queues):
    browser, _ = sso_pair(client, apps)
    confirmed_logout(browser, client_id=apps["web"]["client_id"])
    assert drain() == []


# --- the receiver itself refuses what a relying party must refuse -------------------------------

def _logout_claims(client_id: str, **changes) -> dict:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": client_id, "iat": now, "exp": now + 120, "jti": f"j{now}",
              "sub": "oidc|c|alice", "sid": "sid-1", "events": {backchannel.EVENT: {}}}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.mark.parametrize("changes,typ,why", [
    ({"nonce": "n"}, "logout+jwt", "nonce"),
    ({}, "JWT", "typ"),
    ({"aud": "someone-else"}, "logout+jwt", "aud"),
    ({"iss": "https://evil.example.com/"}, "logout+jwt", "iss"),
    ({"exp": int(time.time()) + 3600}, "logout+jwt", "exp"),
    ({"events": {"urn:other": {}}}, "logout+jwt", "events"),
    ({"sid": None}, "logout+jwt", "sub/sid"),
])
def test_receiver_validation_refuses_bad_logout_tokens(client, jwks, changes, typ, why):
    from chalicelib.keys import sign_jwt

    rp = BclReceiver("rp-client", ISSUER, jwks)
    token = sign_jwt(_logout_claims("rp-client", **changes), typ=typ)
    with pytest.raises(InvalidLogoutToken, match=why):
        rp.validate(token)


def test_receiver_validation_refuses_replays_and_foreign_keys(client, jwks):
    from cryptography.hazmat.primitives.asymmetric import rsa
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    from chalicelib.keys import current_key, sign_jwt

    rp = BclReceiver("rp-client", ISSUER, jwks)
    token = sign_jwt(_logout_claims("rp-client", jti="once"), typ="logout+jwt")
    rp.validate(token)
    with pytest.raises(InvalidLogoutToken, match="replayed"):
        rp.validate(token)
    forger = RSAKey.import_key(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    forged = jwt.encode({"alg": "RS256", "kid": current_key().kid, "typ": "logout+jwt"},
                        _logout_claims("rp-client", jti="forged"), forger, algorithms=["RS256"])
    with pytest.raises(InvalidLogoutToken, match="signature"):
        rp.validate(forged)
