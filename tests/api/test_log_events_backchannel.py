"""SPEC §9 log events of back-channel logout delivery (§6): each attempt to deliver a logout
token to an application is one ``sbcl`` (delivered) or ``fbcl`` event naming the application,
the user, the receiver's URL without its query, the HTTP status or the error's class, the
attempt and what happens next; never the logout token.

Deliveries run through the SQS handler (api/events.py, as Lambda runs it) and
``backchannel.handle``, against a real relying-party endpoint (tests/support/bcl_receiver.py).
Re-queueing is captured here instead of sent: the logout queue is shared with other tests."""
from __future__ import annotations

import json
import uuid

import pytest

from chalicelib.errors import ServiceUnavailable
from chalicelib.logout import backchannel
from tests.api.test_backchannel import jwks  # noqa: F401 - a fixture
from tests.api.test_logout import new_app
from tests.support.bcl_receiver import BclReceiver
from tests.support.log_events import events_since, now_ms, one, text_of

ISSUER = "http://127.0.0.1:8000/"


@pytest.fixture()
def rp_app(api):
    created = new_app(api, f"bcl-events-{uuid.uuid4().hex[:6]}")
    yield created
    api.call("DELETE", f"/api/v2/clients/{created['client_id']}")


@pytest.fixture()
def receiver(rp_app, jwks):  # noqa: F811
    """``receiver(statuses)``: a relying party's back-channel logout endpoint, with a query."""
    started = []

    def start(statuses=()):
        rp = BclReceiver(rp_app["client_id"], ISSUER, jwks, statuses=list(statuses),
                         path="/backchannel-logout?tenant=t1&key=k").start()
        started.append(rp)
        return rp

    yield start
    for rp in started:
        rp.stop()


@pytest.fixture()
def requeued(monkeypatch):
    """What the worker re-queues or parks (captured, not sent), and every logout token minted."""
    sent: dict[str, list] = {"messages": [], "tokens": []}
    mint = backchannel.logout_token

    def capture(message, delay=0, dead_letter=False):
        sent["messages"].append((message, dead_letter))

    def minted(**claims):
        token = mint(**claims)
        sent["tokens"].append(token)
        return token

    monkeypatch.setattr(backchannel, "_send", capture)
    monkeypatch.setattr(backchannel, "logout_token", minted)
    return sent


def message(app: dict, url: str, attempt: int = 0) -> dict:
    return {"client_id": app["client_id"], "url": url, "sub": f"oidc|bcl|{uuid.uuid4().hex[:8]}",
            "sid": "sid-" + uuid.uuid4().hex[:8], "attempt": attempt}


def of(app: dict):
    return lambda e: e.get("type") in ("sbcl", "fbcl") and e.get("client_id") == app["client_id"]


def test_delivery_through_the_sqs_handler_is_sbcl(client, rp_app, receiver, requeued):
    rp = receiver()
    sent = message(rp_app, rp.url)
    start = now_ms()
    client.lambda_.invoke("deliver_backchannel_logout",
                          client.events.generate_sqs_event(message_bodies=[json.dumps(sent)]))
    assert [d.status for d in rp.deliveries] == [200] and rp.deliveries[0].error is None
    event = one(start, of(rp_app))
    assert event["type"] == "sbcl"
    assert event["client_name"] == rp_app["name"]
    assert event["user_id"] == sent["sub"]
    assert event["details"] == {"backchannel_logout_uri": rp.url.split("?")[0], "status": 200,
                                "attempt": 1, "outcome": "delivered"}
    text = text_of(event)
    assert requeued["tokens"] and all(t not in text for t in requeued["tokens"])
    assert "eyJ" not in text and sent["sid"] not in text and "key=k" not in text


@pytest.mark.parametrize("status,attempt,outcome", [
    (503, 0, "retry"),
    (500, 3, "retry"),
    (400, 0, "rejected"),                                  # final: not retried
    (502, backchannel.MAX_ATTEMPTS - 1, "dead_letter"),    # the last attempt: parked
])
def test_failed_delivery_is_fbcl_with_status_attempt_and_outcome(rp_app, receiver, requeued,
                                                                 status, attempt, outcome):
    rp = receiver([status])
    sent = message(rp_app, rp.url, attempt)
    start = now_ms()
    result = backchannel.handle(sent)
    assert result == {"retry": "requeued"}.get(outcome, outcome)
    event = one(start, of(rp_app))
    assert event["type"] == "fbcl"
    assert event["user_id"] == sent["sub"]
    assert event["details"] == {"backchannel_logout_uri": rp.url.split("?")[0],
                                "status": status, "attempt": attempt + 1, "outcome": outcome}
    assert all(t not in text_of(event) for t in requeued["tokens"])
    parked = [dead for _, dead in requeued["messages"]]
    assert parked == {"retry": [False], "dead_letter": [True], "rejected": []}[outcome]


def test_unreachable_receiver_is_fbcl_with_the_error_class(rp_app, receiver, requeued):
    rp = receiver()
    url = rp.url
    rp.stop()  # nothing listens there any more
    start = now_ms()
    assert backchannel.handle(message(rp_app, url)) == "requeued"
    rp.start()  # let the fixture stop it cleanly
    event = one(start, of(rp_app))
    assert event["type"] == "fbcl"
    assert event["details"]["status"] == "OutboundError"
    assert event["details"]["outcome"] == "retry" and event["details"]["attempt"] == 1
    assert event["details"]["error"].startswith("network: ")


def test_refused_address_is_fbcl_rejected(rp_app, requeued):
    start = now_ms()
    url = "http://169.254.169.254/latest/logout?x=1"  # a cloud metadata address: never called
    assert backchannel.handle(message(rp_app, url)) == "rejected"
    event = one(start, of(rp_app))
    assert event["type"] == "fbcl"
    assert event["details"]["status"] == "OutboundRefused"
    assert event["details"]["backchannel_logout_uri"] == "http://169.254.169.254/latest/logout"
    assert event["details"]["outcome"] == "rejected"
    assert requeued["messages"] == []


def test_a_failing_log_store_changes_no_delivery(rp_app, receiver, requeued, monkeypatch):
    from chalicelib.store import log_events

    def down(*args, **kwargs):
        raise ServiceUnavailable("DynamoDB is unavailable")

    monkeypatch.setattr(log_events, "put", down)
    rp = receiver([503])
    sent = message(rp_app, rp.url)
    start = now_ms()
    assert backchannel.handle(sent) == "requeued"
    assert backchannel.handle(requeued["messages"][0][0]) == "delivered"
    assert [d.status for d in rp.deliveries] == [503, 200]
    monkeypatch.undo()
    assert events_since(start, of(rp_app)) == []
