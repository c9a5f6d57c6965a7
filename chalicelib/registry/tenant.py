"""Tenant settings as the login paths read them (SPEC §2.4): through a 30 s per-container cache.

A warm login makes no DynamoDB call for them; a PATCH drops the cache in its own container
(``management/tenant_settings`` calls :func:`forget_cached_tenant_settings`), other containers
see the change within :data:`CONFIG_CACHE_SECONDS`.
"""
from __future__ import annotations

from chalicelib.settings import get_settings
from chalicelib.store import tenant as store
from chalicelib.store.tenant import TenantSettings
from chalicelib.ttl_cache import TtlCache

CONFIG_CACHE_SECONDS = 30
# Never a "miss": absent settings are the defaults, which are cached like any value. Keyed by
# table, so tests that switch tables never read another table's settings.
_cache = TtlCache(CONFIG_CACHE_SECONDS, max_items=4, is_miss=lambda _value: False)


def cached_tenant_settings() -> TenantSettings:
    return _cache.get(get_settings().table_name, store.get)


def forget_cached_tenant_settings() -> None:
    _cache.clear()
