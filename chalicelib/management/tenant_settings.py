"""Tenant settings: validation and rules (SPEC §2.4). The key format lives in store/tenant.

What the broker acts on: ``session_lifetime`` and ``idle_session_lifetime`` (hours) set every new
broker session's absolute and idle lifetime; ``default_audience`` stands in for a missing
``audience`` at ``/authorize``; ``enabled_locales`` are the languages the login and logout pages
offer. ``friendly_name``, ``picture_url``, ``support_email``, ``support_url`` and
``default_redirection_uri`` are validated and stored. Every other field Auth0's schema defines and
the Deploy CLI or Terraform send is stored and echoed unchanged (inert), with size limits;
anything else is a 400.

Login paths read the settings through ``registry.tenant`` (a 30 s per-container cache, no
pydantic); a PATCH drops that cache in its own container, others see the change within 30 s.
"""
from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from chalicelib.errors import Conflict, InvalidBody
from chalicelib.management.validation import check_stored_url, validate
from chalicelib.provider import lifetimes
from chalicelib.registry.tenant import (  # noqa: F401  (cached_tenant_settings: old callers)
    cached_tenant_settings,
    forget_cached_tenant_settings,
)
from chalicelib.settings import get_settings
from chalicelib.store import resource_servers as resource_server_store
from chalicelib.store import tenant as store
from chalicelib.store.dynamo import ConditionFailed
from chalicelib.store.tenant import TenantSettings

MAX_INERT_FIELD_BYTES = 32 * 1024   # one inert value, as JSON
MAX_INERT_TOTAL_BYTES = 128 * 1024  # all of them: the item stays far below DynamoDB's 400 KB
# RFC 5321 §4.5.3.1.3: a path is at most 256 octets; one @, no spaces or angle brackets.
_EMAIL = re.compile(r"^[^@\s<>\"(),;:\\\[\]]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
# Auth0 flags that would ask for something weaker than the broker does (SPEC §2.4): refused when
# true, stored when false (a tenant export carries them as false).
WEAKER_FLAGS = ("disable_clickjack_protection_headers", "allow_legacy_delegation_grant_types",
                "allow_legacy_ro_grant_types", "allow_legacy_tokeninfo_endpoint",
                "enable_legacy_profile")

Hours = Union[int, float]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TenantSettingsPatch(_Strict):
    # acted on
    friendly_name: Optional[str] = Field(default=None, min_length=1, max_length=255)
    picture_url: Optional[str] = None
    support_email: Optional[str] = Field(default=None, max_length=254)
    support_url: Optional[str] = None
    session_lifetime: Optional[Hours] = Field(default=None, ge=lifetimes.SESSION_HOURS_MIN,
                                              le=lifetimes.SESSION_HOURS_MAX)
    idle_session_lifetime: Optional[Hours] = Field(default=None, ge=lifetimes.SESSION_HOURS_MIN,
                                                   le=lifetimes.IDLE_SESSION_HOURS_MAX)
    default_audience: Optional[str] = Field(default=None, max_length=600)
    enabled_locales: Optional[list[Literal["en", "fr"]]] = Field(default=None, min_length=1,
                                                                 max_length=2)
    default_redirection_uri: Optional[str] = None
    # inert (Auth0's schema; stored and echoed, never acted on)
    flags: Optional[dict[str, StrictBool]] = Field(default=None, max_length=100)
    change_password: Optional[dict] = None
    guardian_mfa_page: Optional[dict] = None
    error_page: Optional[dict] = None
    device_flow: Optional[dict] = None
    universal_login: Optional[dict] = None
    default_token_quota: Optional[dict] = None
    access_token: Optional[dict] = None
    security_headers: Optional[dict] = None
    session_cookie: Optional[dict] = None
    sessions: Optional[dict] = None
    oidc_logout: Optional[dict] = None
    mtls: Optional[dict] = None
    allowed_logout_urls: Optional[list[str]] = Field(default=None, max_length=100)
    acr_values_supported: Optional[list[str]] = Field(default=None, max_length=50)
    default_directory: Optional[str] = Field(default=None, max_length=255)
    sandbox_version: Optional[str] = Field(default=None, max_length=16)
    legacy_sandbox_version: Optional[str] = Field(default=None, max_length=16)
    resource_parameter_profile: Optional[str] = Field(default=None, max_length=64)
    ephemeral_session_lifetime: Optional[Hours] = Field(default=None, ge=1,
                                                        le=lifetimes.SESSION_HOURS_MAX)
    idle_ephemeral_session_lifetime: Optional[Hours] = Field(
        default=None, ge=1, le=lifetimes.IDLE_SESSION_HOURS_MAX)
    customize_mfa_in_postlogin_action: Optional[bool] = None
    allow_organization_name_in_authentication_api: Optional[bool] = None
    pushed_authorization_requests_supported: Optional[bool] = None
    authorization_response_iss_parameter_supported: Optional[bool] = None
    skip_non_verifiable_callback_uri_confirmation_prompt: Optional[bool] = None
    include_session_metadata_in_tenant_logs: Optional[bool] = None

    @field_validator("friendly_name")
    @classmethod
    def _name(cls, value):
        if value is not None and (any(c in value for c in "<>") or not value.isprintable()):
            raise ValueError("friendly_name cannot contain <, > or control characters")
        return value

    @field_validator("support_email")
    @classmethod
    def _email(cls, value):
        if value is not None and value != "" and not _EMAIL.match(value):
            raise ValueError("support_email must be an email address")
        return value

    @field_validator("enabled_locales")
    @classmethod
    def _locales(cls, value):
        if value is not None and len(set(value)) != len(value):
            raise ValueError("enabled_locales must not repeat a locale")
        return value

    @field_validator("flags")
    @classmethod
    def _flags(cls, value):
        for name in WEAKER_FLAGS:
            if (value or {}).get(name):
                raise ValueError(f"flags.{name} is not supported: the broker does not offer it")
        return value

    @field_validator("allowed_logout_urls", "acr_values_supported")
    @classmethod
    def _strings(cls, value, info):
        if value is not None and any(len(v) > 2048 for v in value):
            raise ValueError(f"{info.field_name} entries are at most 2048 characters")
        return value


ACTED_ON = ("friendly_name", "picture_url", "support_email", "support_url", "session_lifetime",
            "idle_session_lifetime", "default_audience", "enabled_locales",
            "default_redirection_uri")
INERT_FIELDS = tuple(f for f in TenantSettingsPatch.model_fields if f not in ACTED_ON)
_DEFAULTS = TenantSettings()


def _bad(message: str, where: str) -> InvalidBody:
    return InvalidBody(f"Payload validation error: '{message}' on property {where}")


def view(settings: TenantSettings) -> dict:
    """Auth0's tenant-settings object: the fields set, acted on and inert."""
    body: dict[str, Any] = {
        "session_lifetime": settings.session_lifetime,
        "idle_session_lifetime": settings.idle_session_lifetime,
        "enabled_locales": list(settings.enabled_locales),
    }
    for name in ("friendly_name", "picture_url", "support_email", "support_url",
                 "default_audience", "default_redirection_uri"):
        value = getattr(settings, name)
        if value is not None:
            body[name] = value
    body.update(settings.inert)
    return body


def _check_urls(patch: dict) -> None:
    allow_loopback = get_settings().allow_insecure_loopback
    for name in ("picture_url", "support_url", "default_redirection_uri"):
        if patch.get(name):
            check_stored_url(patch[name], field=name, allow_loopback_http=allow_loopback)


def _check_default_audience(audience: str | None) -> None:
    if not audience:
        return
    if resource_server_store.get_by_identifier(audience) is None:
        raise _bad("default_audience must be the identifier of a registered API "
                   "(resource server)", "default_audience")


def _check_inert_sizes(inert: dict) -> None:
    total = 0
    for name, value in inert.items():
        size = len(json.dumps(value, separators=(",", ":")).encode())
        if size > MAX_INERT_FIELD_BYTES:
            raise _bad(f"{name} is larger than {MAX_INERT_FIELD_BYTES // 1024} KB", name)
        total += size
    if total > MAX_INERT_TOTAL_BYTES:
        raise _bad(f"the settings are larger than {MAX_INERT_TOTAL_BYTES // 1024} KB", "body")


def _merged(current: TenantSettings, patch: dict) -> TenantSettings:
    """``patch`` over ``current``: null (and "" for the optional strings, as Auth0 takes it)
    restores a field's default."""
    changes: dict[str, Any] = {}
    inert = dict(current.inert)
    for name, value in patch.items():
        cleared = value is None or value == ""
        if name in ACTED_ON:
            changes[name] = getattr(_DEFAULTS, name) if cleared else value
        elif value is None:
            inert.pop(name, None)
        else:
            inert[name] = value
    if "enabled_locales" in changes:
        changes["enabled_locales"] = tuple(changes["enabled_locales"])
    _check_inert_sizes(inert)
    return replace(current, **changes, inert=inert, version=current.version + 1)


def update_tenant_settings(body: dict) -> dict:
    patch = validate(TenantSettingsPatch, body).model_dump(exclude_unset=True)
    _check_urls(patch)
    _check_default_audience(patch.get("default_audience"))
    current = store.get()
    updated = _merged(current, patch)
    forget_cached_tenant_settings()
    try:
        store.replace(updated, expected_version=current.version)
    except ConditionFailed:
        raise Conflict("The tenant settings changed meanwhile; read them again and retry",
                       error_code="tenant_settings_conflict") from None
    forget_cached_tenant_settings()
    return view(updated)


def tenant_settings_view() -> dict:
    return view(store.get())

