"""Event handlers: back-channel logout deliveries from the logout queue (SPEC §6)."""
from __future__ import annotations

import json
import logging
import os

from chalice import Blueprint

bp = Blueprint(__name__)
log = logging.getLogger("broker")

# Chalice needs the queue's name when it packages the app (not per request): `make package`
# sets BROKER_LOGOUT_QUEUE_NAME for the stage it builds. Locally, scripts/logout_worker.py
# polls the queue instead (chalice local runs no event sources).
LOGOUT_QUEUE = os.environ.get("BROKER_LOGOUT_QUEUE_NAME", "broker-dev-logout")


@bp.on_sqs_message(queue=LOGOUT_QUEUE, batch_size=1)
def deliver_backchannel_logout(event):
    from chalicelib.logout import backchannel

    for record in event:
        try:
            message = json.loads(record.body)
        except ValueError:
            log.error("malformed back-channel logout message dropped")
            continue
        # A retryable failure is re-queued with a delay by handle(); an exception here (e.g. SQS
        # unavailable) makes Lambda retry the message, and the queue's redrive policy parks it.
        backchannel.handle(message)
