"""The session's sealed upstream ID token (chalicelib/sessions.py): AES-256-GCM under a key derived
from the cookie secret, the sid as associated data. Only the session's own cookie opens it;
anything altered, another sid or another cookie gives None, never an exception."""
from __future__ import annotations

import base64

import pytest

from chalicelib import sessions
from chalicelib.tokens import random_token

ID_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"


@pytest.fixture()
def sealed_for():
    sid, secret = random_token(18), random_token(32)
    return sid, secret, sessions.seal_upstream_id_token(sid, secret, ID_TOKEN)


def _raw(sealed: str) -> bytearray:
    return bytearray(base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4)))


def _text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def test_the_session_cookie_opens_it(sealed_for):
    sid, secret, sealed = sealed_for
    assert sessions.unseal_upstream_id_token(sid, secret, sealed) == ID_TOKEN
    assert ID_TOKEN not in sealed and "eyJzdWIiOiJhbGljZSJ9" not in sealed
    assert b"alice" not in _raw(sealed)
    assert "=" not in sealed and "+" not in sealed and "/" not in sealed  # base64url, unpadded


def test_each_seal_has_its_own_nonce(sealed_for):
    sid, secret, sealed = sealed_for
    again = sessions.seal_upstream_id_token(sid, secret, ID_TOKEN)
    assert again != sealed and _raw(again)[:12] != _raw(sealed)[:12]


def test_another_cookie_secret_is_refused(sealed_for):
    sid, _, sealed = sealed_for
    assert sessions.unseal_upstream_id_token(sid, random_token(32), sealed) is None


def test_another_sid_is_refused(sealed_for):
    _, secret, sealed = sealed_for
    assert sessions.unseal_upstream_id_token(random_token(18), secret, sealed) is None


@pytest.mark.parametrize("where", [0, 11, 12, 20, -1])  # nonce, ciphertext, tag
def test_a_tampered_byte_is_refused(sealed_for, where):
    sid, secret, sealed = sealed_for
    raw = _raw(sealed)
    raw[where] ^= 0x01
    assert sessions.unseal_upstream_id_token(sid, secret, _text(raw)) is None


@pytest.mark.parametrize("bad", ["", "a", "!!!!", "AAAA", _text(bytes(27)), _text(bytes(60))])
def test_malformed_data_is_refused(bad):
    assert sessions.unseal_upstream_id_token("sid", "secret", bad) is None


def test_truncated_or_extended_data_is_refused(sealed_for):
    sid, secret, sealed = sealed_for
    raw = _raw(sealed)
    assert sessions.unseal_upstream_id_token(sid, secret, _text(raw[:-1])) is None
    assert sessions.unseal_upstream_id_token(sid, secret, _text(raw + b"\0")) is None


def test_the_key_is_not_the_stored_digest_nor_the_secret():
    from chalicelib.tokens import digest

    secret = random_token(32)
    key = sessions._sealing_key(secret)
    assert len(key) == 32
    assert key != secret.encode() and key.hex() != digest(secret) and key not in digest(secret).encode()
    assert sessions._sealing_key(random_token(32)) != key


# --- upstream_id_token: the logout's read ------------------------------------------------------

def _item(sid: str, **fields) -> dict:
    return {"sid": sid, **fields}


def test_upstream_id_token_needs_the_sessions_own_cookie(sealed_for):
    sid, secret, sealed = sealed_for
    item = _item(sid, upstream_id_token_sealed=sealed)
    assert sessions.upstream_id_token(item, f"{sid}.{secret}") == ID_TOKEN
    for cookie in (None, "", sid, f"{sid}.", f"{sid}.{random_token(32)}",
                   f"{sid}.{secret}" + "x" * 200):
        assert sessions.upstream_id_token(item, cookie) is None, cookie


def test_a_sealed_value_moved_to_another_session_is_refused(sealed_for):
    sid, secret, sealed = sealed_for
    other = random_token(18)
    # Even with the secret (impossible: each session has its own), the sid binds it.
    assert sessions.upstream_id_token(_item(other, upstream_id_token_sealed=sealed),
                                      f"{other}.{secret}") is None


def test_sessions_from_before_sealing_give_their_clear_token(sealed_for):
    sid, secret, sealed = sealed_for
    assert sessions.upstream_id_token(_item(sid, upstream_id_token="legacy"), None) == "legacy"
    assert sessions.upstream_id_token(_item(sid), f"{sid}.{secret}") is None
    assert sessions.upstream_id_token(_item(sid, upstream_id_token=""), None) is None
    # A sealed one wins: the clear one is never read beside it.
    both = _item(sid, upstream_id_token_sealed=sealed, upstream_id_token="legacy")
    assert sessions.upstream_id_token(both, None) is None
    assert sessions.upstream_id_token(both, f"{sid}.{secret}") == ID_TOKEN


# --- new_session_values: what the callback stores -----------------------------------------------

@pytest.fixture()
def lifetimes(monkeypatch):
    monkeypatch.setattr(sessions, "session_lifetimes", lambda: (3600, 600))


def test_a_new_session_stores_the_token_sealed_for_its_cookie(lifetimes):
    sid, cookie, fields = sessions.new_session_values(1000, upstream_id_token=ID_TOKEN)
    assert "upstream_id_token" not in fields and ID_TOKEN not in repr(fields)
    assert sessions.upstream_id_token({"sid": sid, **fields}, cookie) == ID_TOKEN
    assert cookie.split(".", 1)[1] not in repr(fields)  # the secret is never stored


def test_a_too_long_or_missing_token_is_not_kept(lifetimes):
    too_long = "a" * (sessions.MAX_UPSTREAM_ID_TOKEN + 1)
    for token in (None, "", too_long):
        _, _, fields = sessions.new_session_values(1000, upstream_id_token=token)
        assert sessions.SEALED_ID_TOKEN not in fields and "upstream_id_token" not in fields
    longest = "a" * sessions.MAX_UPSTREAM_ID_TOKEN
    sid, cookie, fields = sessions.new_session_values(1000, upstream_id_token=longest)
    assert sessions.upstream_id_token({"sid": sid, **fields}, cookie) == longest
