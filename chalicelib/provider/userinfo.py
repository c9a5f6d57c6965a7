"""``GET|POST /userinfo`` (OIDC Core §5.3) with the broker's RFC 9068 access tokens."""
from __future__ import annotations

from typing import Any

from chalicelib import clock
from chalicelib.errors import OAuthError
from chalicelib.keys import TokenRejected, verify_jwt
from chalicelib.provider import grant_store, issue
from chalicelib.settings import get_settings


def _invalid_token(description: str) -> OAuthError:
    # RFC 6750 §3.1
    return OAuthError("invalid_token", description, 401,
                      {"WWW-Authenticate": f'Bearer error="invalid_token", '
                                           f'error_description="{description}"'})


def bearer_token(authorization: str | None, form: dict[str, Any] | None) -> str:
    header_token = None
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _invalid_token("Malformed Authorization header")
        header_token = value.strip()
    body_token = (form or {}).get("access_token")
    if header_token and body_token:
        raise OAuthError("invalid_request", "Send the access token only once", 400)
    token = header_token or body_token
    if not token:
        raise OAuthError("invalid_request", "Missing access token", 401,
                         {"WWW-Authenticate": 'Bearer realm="broker"'})
    return token


def userinfo(token: str, now: float | None = None) -> dict[str, Any]:
    from chalicelib.users import get_user, is_blocked

    now = clock.now() if now is None else now
    try:
        claims = verify_jwt(token, typ="at+jwt").claims
    except TokenRejected as exc:
        raise _invalid_token(str(exc)) from None
    settings = get_settings()
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if claims.get("iss") != settings.issuer or issue.userinfo_audience() not in audiences:
        raise _invalid_token("The access token is not for this endpoint")
    exp = claims.get("exp")
    if not isinstance(exp, int) or exp <= now:
        raise _invalid_token("The access token expired")
    grant_id = claims.get("gid")
    if not isinstance(grant_id, str) or not grant_store.grant_is_active(grant_id):
        raise _invalid_token("The access token was revoked")
    user = get_user(claims.get("sub", ""))
    if user is None:
        raise _invalid_token("The access token was revoked")
    if is_blocked(user):
        # SPEC §2.4: refused until unblocked, even while the grants' revocation is in flight.
        raise _invalid_token("The user is blocked")
    scope = claims.get("scope", "")
    if "openid" not in scope.split():
        raise OAuthError("insufficient_scope", "The openid scope is required", 403,
                         {"WWW-Authenticate": 'Bearer error="insufficient_scope", scope="openid"'})
    return {**issue.profile_claims(user, scope), "sub": user["user_id"]}
