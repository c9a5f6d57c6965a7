"""Resource servers (APIs) as ``/authorize`` and the token endpoint read them (SPEC §2.5).

Read through a 30 s per-container cache; a create, update or delete drops it in its own container
(``management/resource_servers`` calls :func:`forget_cached_resource_servers`). Deletion is still
immediate for tokens, because each token write checks the API in its own transaction
(``store.resource_servers.still_exists_check``).
"""
from __future__ import annotations

from chalicelib.settings import get_settings
from chalicelib.store import resource_servers as store
from chalicelib.store.resource_servers import ResourceServer
from chalicelib.ttl_cache import TtlCache

# The scopes OpenID Connect defines (OIDC Core §5.4, §11): every token may carry them, and no
# API may define them as its own.
OIDC_SCOPES = ("openid", "profile", "email", "offline_access", "address", "phone")
MAX_AUDIENCE_LENGTH = 600  # longer is never a registered identifier: not looked up, not cached
CONFIG_CACHE_SECONDS = 30
_cache = TtlCache(CONFIG_CACHE_SECONDS)


def cached_resource_server(identifier: str) -> ResourceServer | None:
    if not isinstance(identifier, str) or not 0 < len(identifier) <= MAX_AUDIENCE_LENGTH:
        return None
    return _cache.get((get_settings().table_name, identifier),
                      lambda: store.get_by_identifier(identifier))


def forget_cached_resource_servers() -> None:
    _cache.clear()


def token_scope(scope: str, server: ResourceServer) -> str:
    """The scope of a token for ``server``: the OpenID scopes plus the ones the API (still)
    defines; offline_access only while the API allows refresh tokens (SPEC §2.5)."""
    defined = server.scope_values()
    kept = [s for s in scope.split()
            if (s in OIDC_SCOPES and (s != "offline_access" or server.allow_offline_access))
            or s in defined]
    return " ".join(kept)
