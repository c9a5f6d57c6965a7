"""Pytest fixtures for the real upstream IdP.

from tests.support.idp_fixtures import oidc_idp  # noqa
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.idp import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    PLACEHOLDER_REDIRECT_URI,
    IdpProcess,
    default_idp_config,
    start_idp,
)

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "PLACEHOLDER_REDIRECT_URI",
    "oidc_idp",
]


SESSION_IDP_SECONDS = 90 * 60


@pytest.fixture(scope="session")
def oidc_idp() -> Iterator[IdpProcess]:
    """A default IdP: client broker-client/broker-secret (redirect_uris is a
    placeholder, PLACEHOLDER_REDIRECT_URI) and account alice. Shared by the
    session: tests needing their own clients or keys call start_idp(). It outlives the default
    15 minutes (a full run reaches its last user long after its first) but still stops by
    itself, after 90 minutes, CI's own limit."""
    with start_idp(default_idp_config(), max_seconds=SESSION_IDP_SECONDS) as idp:
        yield idp
