"""One validated settings object, read from the environment on first use.

Chalice's test client (and ``chalice local``) set a stage's environment variables only while a
request runs, so nothing here may be read at import time: call :func:`get_settings` inside handlers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from chalicelib.errors import ConfigurationError

_ENV_KEYS = (
    "BROKER_ISSUER",
    "PORT",
    "BROKER_STAGE",
    "BROKER_TABLE",
    "BROKER_SECRET_PREFIX",
    "BROKER_ADMIN_CLIENT_ID",
    "BROKER_ADMIN_SECRET_NAME",
    "BROKER_ALLOW_INSECURE_LOOPBACK",
    "BROKER_LOGOUT_QUEUE_URL",
    "BROKER_LOG_RETENTION_DAYS",
    "BROKER_VAULT_KEY_ID",
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    issuer: str
    stage: str
    table_name: str
    secret_prefix: str
    admin_client_id: str
    admin_secret_name: str
    allow_insecure_loopback: bool
    logout_queue_url: str
    log_retention_days: int = 30
    # The KMS key that encrypts the upstream token vault's data keys (SPEC §10): a key id, ARN or
    # alias; infra/resources.yaml creates ``alias/broker-{stage}-vault``.
    vault_key_id: str = "alias/broker-local-vault"

    @property
    def management_audience(self) -> str:
        return f"{self.issuer}api/v2/"

    def url(self, path: str) -> str:
        """An absolute URL on the broker, always built from the issuer (never from ``Host``)."""
        return self.issuer + path.lstrip("/")

    def connection_callback_url(self, connection_name: str) -> str:
        """The redirect URI the broker sends to a connection's IdP (SPEC §3.2): one per
        connection, so an answer can only be read for the connection it was meant for (RFC 9700
        §4.4 mix-up defence). Connection names are ``[a-zA-Z0-9-]`` only: no escaping needed."""
        return self.url(f"login/callback/{connection_name}")

    @property
    def shared_callback_url(self) -> str:
        """Auth0's single callback URL, kept for IdPs registered that way (SPEC §3.3)."""
        return self.url("login/callback")


def _parse_bool(name: str, raw: str | None, default: bool) -> bool:
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be true or false")


def _load(env: dict[str, str]) -> Settings:
    port = env.get("PORT") or "8000"
    if not port.isdigit():
        raise ConfigurationError("PORT must be a number")
    issuer = env.get("BROKER_ISSUER") or f"http://127.0.0.1:{port}/"
    parts = urlsplit(issuer)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigurationError("BROKER_ISSUER must be an absolute http(s) URL")
    if not issuer.endswith("/"):
        issuer += "/"
    stage = env.get("BROKER_STAGE") or "local"
    allow_loopback = _parse_bool(
        "BROKER_ALLOW_INSECURE_LOOPBACK", env.get("BROKER_ALLOW_INSECURE_LOOPBACK"), False
    )
    if parts.scheme == "http" and not (allow_loopback and is_loopback_host(parts.hostname or "")):
        raise ConfigurationError(
            "BROKER_ISSUER must use https (http only on loopback with BROKER_ALLOW_INSECURE_LOOPBACK)"
        )
    retention = (env.get("BROKER_LOG_RETENTION_DAYS") or "30").strip()
    if not retention.isdigit() or not 1 <= int(retention) <= 3650:
        raise ConfigurationError("BROKER_LOG_RETENTION_DAYS must be a whole number of days, 1 to 3650")
    prefix = env.get("BROKER_SECRET_PREFIX") or f"broker/{stage}/"
    if not prefix.endswith("/"):
        prefix += "/"
    return Settings(
        issuer=issuer,
        stage=stage,
        table_name=env.get("BROKER_TABLE") or f"broker-{stage}",
        secret_prefix=prefix,
        admin_client_id=env.get("BROKER_ADMIN_CLIENT_ID") or "",
        admin_secret_name=env.get("BROKER_ADMIN_SECRET_NAME") or f"{prefix}admin-client-secret",
        allow_insecure_loopback=allow_loopback,
        logout_queue_url=env.get("BROKER_LOGOUT_QUEUE_URL") or "",
        log_retention_days=int(retention),
        vault_key_id=env.get("BROKER_VAULT_KEY_ID") or f"alias/broker-{stage}-vault",
    )


LOOPBACK_NAMES = frozenset({"localhost", "localhost."})


def is_loopback_host(host: str) -> bool:
    """The one loopback test for a URL's host (the issuer, stored URLs, outbound calls):
    ``localhost`` or a loopback IP literal (IPv6 with or without brackets)."""
    import ipaddress

    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_cache: dict[tuple, Settings] = {}


def get_settings() -> Settings:
    """Settings for the current environment; re-read only when a relevant variable changed."""
    key = tuple(os.environ.get(k) for k in _ENV_KEYS)
    settings = _cache.get(key)
    if settings is None:
        settings = _load({k: v for k, v in zip(_ENV_KEYS, key, strict=True) if v is not None})
        _cache.clear()
        _cache[key] = settings
    return settings
