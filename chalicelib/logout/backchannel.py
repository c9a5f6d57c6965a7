"""OIDC Back-Channel Logout 1.0 to applications (SPEC §6).

Ending a session queues one SQS message per (application, back-channel logout URL). A worker
(the Lambda's SQS handler; ``scripts/logout_worker.py`` locally) delivers each: a fresh logout
token POSTed as ``application/x-www-form-urlencoded`` with a 5 s timeout. 2xx is done; 400 is
final; anything else, and network errors, are retried with exponential backoff by re-queueing
with a delay, and after ``MAX_ATTEMPTS`` parked in the dead-letter queue. Every delivery attempt
is logged with its outcome (never the token), and is one log event (SPEC §9): ``sbcl`` when
delivered, ``fbcl`` otherwise.
"""
from __future__ import annotations

import json
import logging

from chalicelib import aws, clock
from chalicelib.errors import ServiceUnavailable
from chalicelib.keys import sign_jwt
from chalicelib.settings import get_settings
from chalicelib.store import clients as client_records
from chalicelib.store.sessions import SessionRecord
from chalicelib.tokens import random_token

log = logging.getLogger(__name__)

EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_LIFETIME = 120  # SPEC §6: exp ≤ 2 min
DELIVERY_TIMEOUT = 5.0
MAX_ATTEMPTS = 6
BACKOFF_BASE_SECONDS = 5  # attempt n waits BASE * 2**n seconds (SQS caps a delay at 900 s)

_queue_urls: dict[str, str] = {}


def logout_token(*, client_id: str, sub: str, sid: str, now: int) -> str:
    """Back-Channel Logout §2.4: iss, aud, iat, exp, jti, sub, sid, events; never a nonce."""
    claims = {"iss": get_settings().issuer, "aud": client_id, "iat": now,
              "exp": now + LOGOUT_TOKEN_LIFETIME, "jti": random_token(16), "sub": sub,
              "sid": sid, "events": {EVENT: {}}}
    return sign_jwt(claims, typ="logout+jwt")


def queue_name(dead_letter: bool = False) -> str:
    settings = get_settings()
    base = settings.logout_queue_url.rsplit("/", 1)[-1] if settings.logout_queue_url else (
        f"broker-{settings.stage}-logout")
    return base + ("-dlq" if dead_letter else "")


def queue_url(dead_letter: bool = False) -> str:
    settings = get_settings()
    if settings.logout_queue_url and not dead_letter:
        return settings.logout_queue_url
    name = queue_name(dead_letter)
    key = f"{aws_endpoint_key()}|{name}"
    found = _queue_urls.get(key)
    if found is None:
        found = aws.client("sqs").get_queue_url(QueueName=name)["QueueUrl"]
        _queue_urls[key] = found
    return found


def aws_endpoint_key() -> str:
    import os

    return os.environ.get("AWS_ENDPOINT_URL", "")


def _send(message: dict, delay: int = 0, dead_letter: bool = False) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        aws.client("sqs").send_message(QueueUrl=queue_url(dead_letter),
                                       MessageBody=json.dumps(message),
                                       DelaySeconds=max(0, min(delay, 900)))
    except (ClientError, BotoCoreError) as exc:
        code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else (
            type(exc).__name__)
        log.error("sqs send failed: %s", code)
        # SPEC §8: an outage is a 503 (or 422 for Global Token Revocation), never internals.
        raise ServiceUnavailable("A dependency is temporarily unavailable") from None


def queue_for_session(session: SessionRecord, *, exclude_client: str | None = None) -> int:
    """Queue logout notifications for every application that got tokens in ``session``."""
    queued = 0
    for client_id in sorted(session.get("clients") or []):
        if client_id == exclude_client:
            continue
        client = client_records.get(client_id)
        if client is None:
            continue
        for url in (client.get("oidc_logout") or {}).get("backchannel_logout_urls") or []:
            _send({"client_id": client_id, "url": url, "sub": session["user_id"],
                   "sid": session["sid"], "attempt": 0})
            queued += 1
    return queued


def deliver(message: dict, now: int | None = None) -> str:
    """One delivery attempt: ``delivered``, ``rejected`` (400, final) or ``retry``; logged, and
    one ``sbcl`` / ``fbcl`` log event (:func:`_record`)."""
    outcome, status, error = _post(message, now)
    _log(message, outcome, str(status) if error is None else error)
    _record(message, outcome, status, error)
    return outcome


def _post(message: dict, now: int | None) -> tuple[str, int | str, str | None]:
    """(outcome, HTTP status or the error's class, the error's text for a network failure)."""
    # Cold start: the HTTP stack (requests) loads only when a notification is delivered.
    from chalicelib.netguard import OutboundError, OutboundRefused, safe_post_form

    now = int(clock.now() if now is None else now)
    token = logout_token(client_id=message["client_id"], sub=message["sub"], sid=message["sid"],
                         now=now)
    try:
        response = safe_post_form(message["url"], {"logout_token": token},
                                  allow_loopback=get_settings().allow_insecure_loopback,
                                  connect_timeout=DELIVERY_TIMEOUT, read_timeout=DELIVERY_TIMEOUT,
                                  total_timeout=DELIVERY_TIMEOUT, max_redirects=0,
                                  headers={"Cache-Control": "no-cache"})
    except OutboundRefused as exc:
        return "rejected", type(exc).__name__, f"refused: {exc}"
    except OutboundError as exc:
        return "retry", type(exc).__name__, f"network: {exc}"
    if 200 <= response.status_code < 300:
        return "delivered", response.status_code, None
    if response.status_code == 400:
        return "rejected", response.status_code, None
    return "retry", response.status_code, None


def _log(message: dict, outcome: str, detail: str) -> None:
    log.info("back-channel logout to client %s at %s (attempt %d): %s %s", message["client_id"],
             message["url"][:200], int(message.get("attempt", 0)) + 1, outcome, detail[:200])


def _endpoint(url: str) -> str:
    """The receiver's URL without query or fragment (or userinfo): what the event may show."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "[invalid]"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _record(message: dict, outcome: str, status: int | str, error: str | None) -> None:
    """``sbcl`` when delivered, else ``fbcl``: the application, the user, the receiver's URL, the
    HTTP status (or the error's class), the attempt (1-based) and what happens next (``retry``,
    ``rejected`` = final, ``dead_letter`` on the last attempt). Never the logout token."""
    from chalicelib import audit
    from chalicelib.registry.clients import cached_client

    attempt = int(message.get("attempt", 0)) + 1
    if outcome == "retry" and attempt >= MAX_ATTEMPTS:
        outcome = "dead_letter"
    details = {"backchannel_logout_uri": _endpoint(str(message.get("url", ""))),
               "status": status, "attempt": attempt, "outcome": outcome, "error": error}
    try:
        client = cached_client(message["client_id"]) or {"client_id": message["client_id"]}
    except Exception:  # noqa: BLE001 - the name is a nicety; the id is enough
        client = {"client_id": message["client_id"]}
    try:
        entry = audit.event("sbcl" if outcome == "delivered" else "fbcl", client=client,
                            user_id=message.get("sub"), details=details)
    except Exception:  # noqa: BLE001 - a log event never changes a delivery
        log.exception("back-channel logout log event failed")
        return
    audit.record(entry)


# The worker Lambda has 10 s (.chalice/config.json): a 5 s delivery plus the re-queue must fit.
HANDLE_BUDGET_SECONDS = 8.0


def handle(message: dict, now: int | None = None) -> str:
    """Deliver, and on a retryable failure re-queue with backoff or park in the DLQ.

    Raises (ServiceUnavailable) when signing or re-queueing fails: the message must then stay in
    the queue, so the caller does not delete it and SQS delivers it again (at least once)."""
    with aws.request_deadline(HANDLE_BUDGET_SECONDS):
        return _handle(message, now)


def _handle(message: dict, now: int | None) -> str:
    outcome = deliver(message, now)
    if outcome != "retry":
        return outcome
    attempt = int(message.get("attempt", 0)) + 1
    if attempt >= MAX_ATTEMPTS:
        _send({**message, "attempt": attempt}, dead_letter=True)
        log.warning("back-channel logout to client %s parked in the dead-letter queue after %d "
                    "attempts", message["client_id"], attempt)
        return "dead_letter"
    _send({**message, "attempt": attempt}, delay=BACKOFF_BASE_SECONDS * 2 ** attempt)
    return "requeued"


def process_queue_once(max_messages: int = 10, wait_seconds: int = 0) -> list[str]:
    """Receive, handle and delete up to ``max_messages`` (the local worker and tests use this)."""
    sqs = aws.client("sqs")
    received = sqs.receive_message(QueueUrl=queue_url(), MaxNumberOfMessages=max_messages,
                                   WaitTimeSeconds=wait_seconds).get("Messages", [])
    outcomes = []
    for item in received:
        try:
            outcomes.append(handle(json.loads(item["Body"])))
        except (ValueError, KeyError):
            log.error("malformed back-channel logout message dropped")
            outcomes.append("malformed")
        except Exception as exc:  # noqa: BLE001 - a dependency failed: keep the message
            # Not deleted: it becomes visible again after the queue's visibility timeout, as
            # when the Lambda handler raises. The other messages of the batch still go.
            log.warning("back-channel logout message kept for redelivery: %s",
                        type(exc).__name__)
            outcomes.append("kept")
            continue
        try:
            sqs.delete_message(QueueUrl=queue_url(), ReceiptHandle=item["ReceiptHandle"])
        except Exception as exc:  # noqa: BLE001 - SQS will deliver it again: at least once
            log.warning("back-channel logout message handled but not deleted: %s",
                        type(exc).__name__)
    return outcomes
