"""The embedded AWS endpoint (scripts/embedded_aws.EmbeddedAws, moto) in its own process, so its
CPU is never booked to the broker.

Prints ``READY <endpoint>`` once listening; exits when stdin closes or after ``argv[1]`` seconds.

One benchmark-only adjustment, inside this process (the emulator), not touching the broker or what
it is charged for: moto 5.2's TransactWriteItems deep-copies the whole table once per *item* of a
transaction as a rollback backup, so logins get slower as the table fills (~0.1 s per transaction
after 100 logins, seconds after 1,000). That is the emulator's cost, but it would make 1,000 logins
outrun the time budget. The backup is only restored after a validation error, which the benchmarks
never provoke, so here it is a reference instead of a copy.

Note: werkzeug's server answers every request with ``Connection: close``, so every AWS call opens
a new loopback TCP connection; that client-side cost is in the broker's figures and in the floor's
round trips alike (real DynamoDB keeps connections alive, over TLS).
"""
from __future__ import annotations

import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.embedded_aws import EmbeddedAws  # noqa: E402


def _cheap_transaction_backups() -> None:
    import copy

    import moto.dynamodb.models as models

    class _Copy:
        def __getattr__(self, name):
            return getattr(copy, name)

        @staticmethod
        def deepcopy(value, memo=None):
            if isinstance(value, models.Table):
                return value
            return copy.deepcopy(value, memo)

    models.copy = _Copy()


def main() -> None:
    max_seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 900.0
    _cheap_transaction_backups()
    server = EmbeddedAws()
    server.start()
    print("READY", server.endpoint, flush=True)
    waiter = threading.Thread(target=sys.stdin.read, daemon=True)
    waiter.start()
    waiter.join(timeout=max_seconds)
    server.stop()


if __name__ == "__main__":
    main()
