"""JWKS cache: TTL, once-a-minute refetch, last-known-good on failure, document validation.

Fetches go through an injected function and time through an injected clock: no sockets, no sleep.
"""
from __future__ import annotations

import json
import logging
import threading

import pytest
from joserfc.jwk import ECKey, OctKey, RSAKey

from chalicelib.login import jwks_cache as jc
from chalicelib.login.jwks_cache import JwksCache, JwksError, JwksUnavailable, parse_jwks

URI = "https://idp.example/jwks"

RSA_A = RSAKey.generate_key(2048, parameters={"kid": "a", "use": "sig", "alg": "RS256"})
RSA_B = RSAKey.generate_key(2048, parameters={"kid": "b", "use": "sig", "alg": "RS256"})
EC_C = ECKey.generate_key("P-256", parameters={"kid": "c"})


def public(*keys) -> dict:
    return {"keys": [k.as_dict(private=False) for k in keys]}


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Fetcher:
    """Serves ``doc`` (or raises ``error``) and counts calls."""

    def __init__(self, doc: dict | None = None) -> None:
        self.doc = doc
        self.error: Exception | None = None
        self.calls = 0

    def __call__(self, uri: str) -> dict:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.doc


def kids(key_set) -> list[str]:
    return sorted(k.kid for k in key_set)


@pytest.fixture
def setup():
    clock = Clock()
    fetch = Fetcher(public(RSA_A))
    return JwksCache(fetch=fetch, clock=clock), fetch, clock


def test_first_use_fetches_then_serves_from_cache(setup):
    cache, fetch, clock = setup
    assert kids(cache.key_set(URI)) == ["a"]
    clock.t += 3599
    assert kids(cache.key_set(URI)) == ["a"]
    assert fetch.calls == 1


def test_ttl_one_hour_then_refetch(setup):
    cache, fetch, clock = setup
    cache.key_set(URI)
    fetch.doc = public(RSA_B)
    clock.t += 3600
    assert kids(cache.key_set(URI)) == ["b"]
    assert fetch.calls == 2


def test_uris_are_cached_separately(setup):
    cache, fetch, _ = setup
    cache.key_set(URI)
    fetch.doc = public(RSA_B)
    assert kids(cache.key_set("https://other.example/jwks")) == ["b"]
    assert kids(cache.key_set(URI)) == ["a"]


def test_unknown_kid_refetch_at_most_once_a_minute(setup):
    cache, fetch, clock = setup
    cache.key_set(URI)
    clock.t += 59  # the initial fetch counts: under a minute ago
    assert cache.refresh_for_unknown_kid(URI) is False
    clock.t += 1
    fetch.doc = public(RSA_A, RSA_B)
    assert cache.refresh_for_unknown_kid(URI) is True
    assert kids(cache.key_set(URI)) == ["a", "b"]
    for _ in range(5):
        clock.t += 10
        assert cache.refresh_for_unknown_kid(URI) is False
    clock.t += 10  # 60 s after the last refetch
    assert cache.refresh_for_unknown_kid(URI) is True
    assert fetch.calls == 3


def test_refresh_resets_ttl(setup):
    cache, fetch, clock = setup
    cache.key_set(URI)
    clock.t += 3000
    assert cache.refresh_for_unknown_kid(URI) is True
    clock.t += 3000  # 6000 s after the first fetch, 3000 s after the refresh
    cache.key_set(URI)
    assert fetch.calls == 2


def test_last_known_good_on_refresh_failure(setup, caplog):
    cache, fetch, clock = setup
    cache.key_set(URI)
    fetch.error = jc.OutboundError("idp.example: connection timed out")
    clock.t += 3600
    with caplog.at_level(logging.WARNING, logger="chalicelib.login.jwks"):
        assert kids(cache.key_set(URI)) == ["a"]
    assert fetch.calls == 2
    records = [r for r in caplog.records if r.name == "chalicelib.login.jwks"]
    assert records and "failed" in records[0].getMessage()
    assert "idp.example" in records[0].getMessage()
    text = caplog.text
    modulus = RSA_A.as_dict(private=False)["n"]
    assert modulus not in text and modulus[:20] not in text
    # A failed refresh is not retried on every login: once a minute at most.
    clock.t += 30
    cache.key_set(URI)
    assert fetch.calls == 2
    clock.t += 30
    cache.key_set(URI)
    assert fetch.calls == 3


def test_failed_unknown_kid_refresh_keeps_old_keys_and_logs(setup, caplog):
    cache, fetch, clock = setup
    cache.key_set(URI)
    clock.t += 60
    fetch.error = ValueError("boom " + RSA_B.as_dict(private=False)["n"])
    with caplog.at_level(logging.WARNING, logger="chalicelib.login.jwks"):
        assert cache.refresh_for_unknown_kid(URI) is False
    assert kids(cache.key_set(URI)) == ["a"]
    assert "ValueError" in caplog.text
    # Only our own (admin-readable) exception messages are logged, never a foreign one.
    assert RSA_B.as_dict(private=False)["n"][:20] not in caplog.text


def test_stale_copy_served_up_to_24_hours(setup):
    cache, fetch, clock = setup
    cache.key_set(URI)
    fetch.error = jc.OutboundError("down")
    clock.t += 24 * 3600 - 1
    assert kids(cache.key_set(URI)) == ["a"]
    clock.t += 61
    with pytest.raises(JwksUnavailable):
        cache.key_set(URI)
    fetch.error = None
    clock.t += 60
    assert kids(cache.key_set(URI)) == ["a"]


def test_first_fetch_failure_raises_unavailable(setup):
    cache, fetch, _ = setup
    fetch.error = jc.OutboundRefused("refused")
    with pytest.raises(JwksUnavailable):
        cache.key_set(URI)


def test_invalid_document_is_a_failure_and_old_copy_kept(setup):
    cache, fetch, clock = setup
    cache.key_set(URI)
    for bad in ({"keys": "nope"}, {"nokeys": []}, {"keys": []}, ["x"]):
        clock.t += 3600
        fetch.doc = bad
        assert kids(cache.key_set(URI)) == ["a"]


def test_symmetric_and_broken_keys_are_skipped(caplog):
    secret = OctKey.generate_key(256, parameters={"kid": "a"})
    doc = {
        "keys": [
            secret.as_dict(),
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            {"kty": "weird", "kid": "w"},
            "not-an-object",
            EC_C.as_dict(private=False),
        ]
    }
    with caplog.at_level(logging.WARNING, logger="chalicelib.login.jwks"):
        key_set = parse_jwks(doc, source="idp.example")
    assert [k.kid for k in key_set] == ["c"]
    assert secret.as_dict()["k"] not in caplog.text


def test_only_symmetric_keys_is_invalid():
    with pytest.raises(JwksError):
        parse_jwks({"keys": [OctKey.generate_key(256).as_dict()]})


def test_private_parts_are_dropped():
    key_set = parse_jwks({"keys": [RSA_A.as_dict(private=True)]})
    (key,) = list(key_set)
    assert not key.is_private and key.kid == "a"


def test_concurrent_callers_fetch_once():
    clock = Clock()
    gate = threading.Event()
    calls = []

    def slow_fetch(uri):
        calls.append(uri)
        gate.wait(5)
        return public(RSA_A)

    cache = JwksCache(fetch=slow_fetch, clock=clock)
    results = []
    threads = [threading.Thread(target=lambda: results.append(kids(cache.key_set(URI)))) for _ in range(8)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(5)
    assert results == [["a"]] * 8
    assert len(calls) == 1


def test_default_fetch_uses_safe_get(monkeypatch):
    seen = {}

    class Resp:
        status_code = 200
        content = json.dumps(public(RSA_A)).encode()

    def fake_safe_get(url, *, allow_loopback, **kw):
        seen.update(url=url, allow_loopback=allow_loopback)
        return Resp()

    monkeypatch.setattr(jc, "safe_get", fake_safe_get)
    cache = JwksCache(allow_loopback=True)
    assert kids(cache.key_set("http://127.0.0.1:9/jwks")) == ["a"]
    assert seen == {"url": "http://127.0.0.1:9/jwks", "allow_loopback": True}


def test_default_fetch_http_error_is_a_failure(monkeypatch):
    class Resp:
        status_code = 500
        content = b"oops"

    monkeypatch.setattr(jc, "safe_get", lambda url, **kw: Resp())
    with pytest.raises(JwksUnavailable):
        JwksCache(allow_loopback=False).key_set(URI)


def test_singleton():
    assert jc.jwks_cache() is jc.jwks_cache()


def test_no_copy_at_all_is_retried_after_a_few_seconds():
    """With no good copy every login fails, so recovery must not wait a whole minute."""
    from chalicelib.login.jwks_cache import NO_COPY_RETRY_SECONDS, JwksCache, JwksUnavailable

    now = [1000.0]
    calls = []
    answers = [RuntimeError("down"), public(RSA_A)]

    def fetch(uri):
        calls.append(uri)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    cache = JwksCache(fetch=fetch, clock=lambda: now[0])
    with pytest.raises(JwksUnavailable):
        cache.key_set("https://idp.example/jwks")
    now[0] += 1  # too soon: no new attempt
    with pytest.raises(JwksUnavailable):
        cache.key_set("https://idp.example/jwks")
    assert len(calls) == 1
    now[0] += NO_COPY_RETRY_SECONDS
    assert cache.key_set("https://idp.example/jwks")
    assert len(calls) == 2


# --------------------------------------------------------------------------- abuse (SPEC §8)

class PerUriFetcher:
    """One document per URI; counts fetches per URI."""

    def __init__(self, docs: dict) -> None:
        self.docs = docs
        self.calls: dict[str, int] = {}

    def __call__(self, uri: str) -> dict:
        self.calls[uri] = self.calls.get(uri, 0) + 1
        return self.docs[uri]


def test_a_forged_kid_flood_on_one_connection_leaves_the_others_alone():
    other = "https://other.example/jwks"
    clock = Clock()
    fetch = PerUriFetcher({URI: public(RSA_A), other: public(RSA_B)})
    cache = JwksCache(fetch=fetch, clock=clock)
    cache.key_set(URI)
    cache.key_set(other)
    for _ in range(10_000):
        clock.t += 0.01  # 100 s in all
        cache.refresh_for_unknown_kid(URI)
    assert fetch.calls[URI] == 2  # the first fetch, then one refetch a minute
    assert fetch.calls[other] == 1
    assert kids(cache.key_set(other)) == ["b"]
    assert fetch.calls[other] == 1  # still served from the cache, not refetched or evicted


def test_uris_are_bounded_and_the_longest_unfetched_gives_way():
    clock = Clock()
    uris = [f"https://idp{i}.example/jwks" for i in range(4)]
    fetch = PerUriFetcher({uri: public(RSA_A) for uri in uris})
    cache = JwksCache(fetch=fetch, clock=clock, max_uris=3)
    for uri in uris[:3]:
        clock.t += 1
        cache.key_set(uri)
    clock.t += 1
    cache.key_set(uris[3])
    assert len(cache._entries) == 3
    assert uris[0] not in cache._entries and uris[0] not in cache._locks
    for uri in uris[1:]:
        cache.key_set(uri)
        assert fetch.calls[uri] == 1
