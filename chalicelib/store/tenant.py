"""Tenant settings (Auth0's ``/api/v2/tenants/settings``): the record and its key format.

One item for the whole deployment. Writes are conditional on the version they were computed
from, so two concurrent PATCHes cannot silently drop each other's fields: the loser gets
:class:`ConditionFailed` and the caller reads again.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from chalicelib.store.dynamo import table

PK = "TENANT"
SK = "SETTINGS"

DEFAULT_SESSION_LIFETIME_HOURS = 168       # Auth0's default: 7 days
DEFAULT_IDLE_SESSION_LIFETIME_HOURS = 72   # Auth0's default: 3 days
DEFAULT_LOCALES = ("en", "fr")


@dataclass(frozen=True)
class TenantSettings:
    friendly_name: str | None = None
    picture_url: str | None = None
    support_email: str | None = None
    support_url: str | None = None
    session_lifetime: float = DEFAULT_SESSION_LIFETIME_HOURS
    idle_session_lifetime: float = DEFAULT_IDLE_SESSION_LIFETIME_HOURS
    default_audience: str | None = None
    enabled_locales: tuple[str, ...] = DEFAULT_LOCALES
    default_redirection_uri: str | None = None
    # Auth0 fields the broker stores and echoes but does not act on (docs: inert).
    inert: dict[str, Any] = field(default_factory=dict)
    version: int = 0  # 0: never written

    def item(self) -> dict[str, Any]:
        body = asdict(self)
        body["enabled_locales"] = list(self.enabled_locales)
        return {"pk": PK, "sk": SK, **body}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> TenantSettings:
        return cls(
            friendly_name=item.get("friendly_name"), picture_url=item.get("picture_url"),
            support_email=item.get("support_email"), support_url=item.get("support_url"),
            session_lifetime=item.get("session_lifetime", DEFAULT_SESSION_LIFETIME_HOURS),
            idle_session_lifetime=item.get("idle_session_lifetime",
                                           DEFAULT_IDLE_SESSION_LIFETIME_HOURS),
            default_audience=item.get("default_audience"),
            enabled_locales=tuple(item.get("enabled_locales") or DEFAULT_LOCALES),
            default_redirection_uri=item.get("default_redirection_uri"),
            inert=dict(item.get("inert") or {}), version=int(item.get("version", 0)))


def get() -> TenantSettings:
    """The stored settings, or the defaults when none were ever written."""
    item = table().get(PK, SK)
    return TenantSettings.from_item(item) if item else TenantSettings()


def replace(settings: TenantSettings, expected_version: int) -> None:
    """Store ``settings`` (whose ``version`` is ``expected_version + 1``); :class:`ConditionFailed`
    when another write landed since ``expected_version`` was read."""
    if expected_version == 0:
        condition = "attribute_not_exists(pk) OR #v = :v"
    else:
        condition = "#v = :v"
    table().put(settings.item(), condition=condition, names={"#v": "version"},
                values={":v": expected_version})


def delete() -> None:
    """Back to the defaults (tests and teardown)."""
    table().delete(PK, SK)
