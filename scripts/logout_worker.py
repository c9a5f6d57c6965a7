"""Local stand-in for the Lambda SQS handler: polls the logout queue and delivers back-channel
logouts (``make run`` starts it beside ``chalice local``, which runs no event sources)."""
from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    from chalicelib.logout import backchannel

    logging.basicConfig(level=logging.INFO, format="[logout-worker] %(message)s")
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    deadline = time.monotonic() + float(os.environ.get("BROKER_RUN_MAX_SECONDS") or 1e12)
    while not stop["now"] and time.monotonic() < deadline:
        try:
            if not backchannel.process_queue_once(wait_seconds=0):
                time.sleep(0.5)
        except Exception as exc:  # noqa: BLE001 - keep polling; the queue keeps the message
            logging.getLogger("logout-worker").warning("poll failed: %s", type(exc).__name__)
            time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
