"""store/replay.py: a Global Token Revocation ``jti`` is accepted once per connection."""
from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from chalicelib.store import replay
from chalicelib.store.dynamo import ConditionFailed, table
from chalicelib.tokens import random_token
from tests.store.conftest import PARALLEL, race


def assert_recorded_once(record: Callable[[], replay.ReplayMarker], jti: str,
                         ttl: int) -> tuple[replay.ReplayMarker, dict]:
    """The first copy of a token writes its marker (expiring at ``ttl``, without the ``jti``
    itself), a second copy is refused: (the marker, the stored item)."""
    marker = record()
    with pytest.raises(ConditionFailed):
        record()
    stored = table().get(marker.pk, marker.sk)
    assert jti not in str(stored) and stored["ttl"] == ttl
    return marker, stored


def test_a_jti_is_recorded_once():
    now, jti = int(time.time()), random_token(16)
    _, stored = assert_recorded_once(lambda: replay.record_gtr_jti("con_1", jti, now, now + 660),
                                     jti, now + 660)
    assert stored["connection_id"] == "con_1"
    # The same jti from another connection's IdP is another token.
    replay.record_gtr_jti("con_2", jti, now, now + 660)


def assert_exactly_one_winner(record: Callable[[], replay.ReplayMarker]) -> None:
    """``PARALLEL`` copies of one token recorded at once: one marker, every other copy refused."""
    results = race(record)
    winners = [r for r in results if isinstance(r, replay.ReplayMarker)]
    losers = [r for r in results if isinstance(r, ConditionFailed)]
    assert len(winners) == 1 and len(losers) == PARALLEL - 1, results


def test_concurrent_copies_have_exactly_one_winner():
    now, jti = int(time.time()), random_token(16)
    assert_exactly_one_winner(lambda: replay.record_gtr_jti("con_1", jti, now, now + 660))


def test_a_released_jti_may_be_recorded_again():
    now, jti = int(time.time()), random_token(16)
    marker = replay.record_gtr_jti("con_1", jti, now, now + 660)
    replay.release(marker)
    assert table().get(marker.pk, marker.sk) is None
    assert replay.record_gtr_jti("con_1", jti, now, now + 660) == marker


def test_an_expired_marker_does_not_block_the_jti():
    now, jti = int(time.time()), random_token(16)
    replay.record_gtr_jti("con_1", jti, now - 700, now - 40)   # expired, not yet deleted
    replay.record_gtr_jti("con_1", jti, now, now + 660)
