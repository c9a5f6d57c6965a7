"""Minting the broker's tokens: RFC 9068 access tokens and OIDC ID tokens."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chalicelib.keys import ALGORITHM, sign_jwt
from chalicelib.provider import lifetimes
from chalicelib.registry.resource_servers import OIDC_SCOPES  # noqa: F401 - one list, defined low
from chalicelib.settings import get_settings
from chalicelib.tokens import half_hash, random_token

PROFILE_CLAIMS = ("name", "given_name", "family_name", "middle_name", "nickname",
                  "preferred_username", "profile", "picture", "website", "gender", "birthdate",
                  "zoneinfo", "locale", "updated_at")
EMAIL_CLAIMS = ("email", "email_verified")
ROOT_ATTRIBUTES = ("email", "email_verified", "name", "given_name", "family_name", "nickname",
                   "picture", "username")


def prepare_signing() -> None:
    """Load the signing keys (Secrets Manager, cached) before a grant consumes anything: a token
    request that cannot sign must fail while its code or refresh token is still usable (SPEC §8)."""
    from chalicelib.keys import current_key

    current_key()


def userinfo_audience() -> str:
    return get_settings().url("userinfo")


def access_token(*, user_id: str, client_id: str, scope: str, audience: str | None, sid: str,
                 grant_id: str, auth_time: int, now: int,
                 lifetime: int | None = None) -> tuple[str, int]:
    """``lifetime``: the API's (SPEC §2.5) when ``audience`` is one; else the broker's default."""
    settings = get_settings()
    lifetime = lifetime or lifetimes.ACCESS_TOKEN
    audiences = []
    if audience:
        audiences.append(audience)
    if "openid" in scope.split() or not audiences:
        audiences.append(userinfo_audience())
    claims = {
        "iss": settings.issuer,
        "sub": user_id,
        "aud": audiences[0] if len(audiences) == 1 else audiences,
        "client_id": client_id,
        "azp": client_id,
        "iat": now,
        "exp": now + lifetime,
        "jti": random_token(16),
        "scope": scope,
        "sid": sid,
        "gid": grant_id,
        "auth_time": auth_time,
    }
    return sign_jwt(claims, typ="at+jwt"), lifetime


def profile_claims(user: Mapping[str, Any], scope: str) -> dict[str, Any]:
    """Claims released for the granted scopes (OIDC Core §5.4) plus mapped attributes."""
    attributes = dict(user.get("attributes") or {})
    scopes = scope.split()
    claims: dict[str, Any] = {}
    if "profile" in scopes:
        for name in PROFILE_CLAIMS:
            if name in attributes:
                claims[name] = attributes[name]
        if "username" in attributes:
            claims.setdefault("preferred_username", attributes["username"])
        if user.get("updated_at"):
            claims["updated_at"] = _epoch(user["updated_at"])
    if "email" in scopes:
        for name in EMAIL_CLAIMS:
            if name in attributes:
                claims[name] = attributes[name]
    # Mapped (non-root) attributes appear in the profile, /userinfo and the ID token (§3.4).
    for name, value in attributes.items():
        if name not in ROOT_ATTRIBUTES and name not in PROFILE_CLAIMS and name not in claims:
            claims[name] = value
    return claims


def _epoch(iso_text: str) -> int:
    import datetime as dt

    return int(dt.datetime.fromisoformat(iso_text.replace("Z", "+00:00")).timestamp())


def id_token(*, user: Mapping[str, Any], client: dict[str, Any], scope: str, nonce: str | None, sid: str,
             auth_time: int, now: int, access_token_value: str | None,
             acr: str | None = None, amr: list[str] | None = None) -> str:
    """``auth_time``, ``acr`` and ``amr`` are the upstream login's (SPEC §3.1, OIDC Core §2)."""
    settings = get_settings()
    lifetime = (client.get("jwt_configuration") or {}).get("lifetime_in_seconds") or (
        lifetimes.ID_TOKEN_DEFAULT)
    claims = {**profile_claims(user, scope)}
    # Registered claims last, so a mapped attribute can never shadow them.
    claims.update({
        "iss": settings.issuer,
        "sub": user["user_id"],
        "aud": client["client_id"],
        "azp": client["client_id"],
        "iat": now,
        "exp": now + int(lifetime),
        "auth_time": auth_time,
        "sid": sid,
    })
    if nonce:
        claims["nonce"] = nonce
    if acr:
        claims["acr"] = acr
    if amr:
        claims["amr"] = list(amr)
    if access_token_value:
        claims["at_hash"] = half_hash(access_token_value, ALGORITHM)
    return sign_jwt(claims, typ="JWT")
