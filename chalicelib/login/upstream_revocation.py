"""Revoking a vaulted upstream refresh token at the IdP (RFC 7009; SPEC §10's revocation).

The relying party's call, next to its other calls to the IdP (chalicelib/login/upstream.py): the
same authlib client on netguard's transport (public addresses only, no redirect, short deadlines,
size cap) and the connection's client authentication (``token_endpoint_auth_method``, as at its
token endpoint: RFC 7009 §2.1 requires the client to authenticate as there). The token goes with
``token_type_hint=refresh_token`` to the ``revocation_endpoint`` of the connection's discovery
document. chalicelib/vault.py decides when to call it and logs the outcome; nothing here logs or
raises the token.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from chalicelib.vault import UpstreamRevocationFailed

if TYPE_CHECKING:
    from chalicelib.netguard import Resolver

log = logging.getLogger(__name__)


def revoke_refresh_token(connection: Mapping[str, Any], refresh_token: str, *,
                         resolver: Resolver | None = None) -> None:
    """RFC 7009 §2.1: revoke ``refresh_token`` at the connection's ``revocation_endpoint``.
    :class:`UpstreamRevocationFailed` (with a token-free reason) unless the IdP answered 200
    (§2.2: also for a token it no longer knows)."""
    from chalicelib.login import upstream
    from chalicelib.netguard import OutboundError, OutboundRefused
    from chalicelib.registry.connections import connection_secret
    from chalicelib.secrets import SecretNotFound

    record = dict(connection)
    endpoint = ((record.get("options") or {}).get("oidc_metadata") or {}).get("revocation_endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise UpstreamRevocationFailed("no_endpoint")
    try:
        secret = connection_secret(record)
    except SecretNotFound:
        secret = None  # client_secret_post then sends client_id alone, as a public client
    try:
        session = upstream.upstream_session(record, client_secret=secret, resolver=resolver)
        response = session.revoke_token(endpoint, token=refresh_token,
                                        token_type_hint="refresh_token",
                                        auth=session.client_auth(session.token_endpoint_auth_method))
    except upstream.UpstreamError as exc:
        raise UpstreamRevocationFailed(exc.error) from None
    except (OutboundError, OutboundRefused) as exc:
        log.warning("upstream revocation endpoint of %s failed: %s", record.get("name"), exc)
        raise UpstreamRevocationFailed("unavailable") from None
    if response.status_code != 200:
        log.warning("upstream revocation endpoint of %s answered %s", record.get("name"),
                    response.status_code)
        raise UpstreamRevocationFailed(f"status {response.status_code}")
