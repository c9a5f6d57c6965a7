"""The full run's credential scan (tests/support/secret_scan.py) finds what it must and only that."""
from __future__ import annotations

import logging
import secrets

from tests.support import secret_scan


def test_it_finds_made_and_declared_credentials_and_jwts():
    secret_scan.install()
    made = secrets.token_urlsafe(32)
    declared = "a-literal-" + secrets.token_hex(4)
    secret_scan.declare(declared)
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"
    assert secret_scan.leaks(f"code={made}")
    assert secret_scan.leaks(f"client said {declared}!")
    assert secret_scan.leaks(f'{{"id_token": "{jwt}"}}')
    # identifiers are not credentials: short random values, digests, log ids
    assert not secret_scan.leaks(f"sid={secrets.token_urlsafe(18)} digest={'ab' * 32} "
                                 f"log_id=900{'1' * 53} state digest prefix 0123456789ab")


def test_a_log_record_with_a_credential_in_an_extra_field_is_a_finding():
    """The scan's log handler reads extra fields too. The probe logger hands its record to that
    handler alone: propagated, the credential would also reach the run's captured output and be
    a finding of the full-run scan (tests/api/test_secret_scan.py)."""
    secret_scan.install()
    made = secrets.token_urlsafe(48)
    before = len(secret_scan.findings)
    probe = logging.getLogger("tests.secret_scan_probe")
    handler = secret_scan._Handler(level=logging.DEBUG)
    probe.addHandler(handler)
    probe.propagate = False
    try:
        probe.warning("event", extra={"log_event": {"details": {"x": made}}})
        assert len(secret_scan.findings) == before + 1
    finally:
        probe.removeHandler(handler)
        probe.propagate = True
        del secret_scan.findings[before:]
