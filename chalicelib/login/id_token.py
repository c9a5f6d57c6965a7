"""Validation of an upstream IdP's ID token (SPEC §3.3 step 4; OIDC Core §3.1.3.7, §3.2.2.11, §3.3.2.12).

The broker picks the verification key itself (by ``kid``, key type, curve, ``use`` and ``alg``) and
hands joserfc exactly one key with a one-element algorithm allow-list, so neither a token header
(``jwk``, ``jku``, ``x5u``, ``x5c``) nor a confused algorithm can choose the key. Only asymmetric
algorithms are ever accepted: ``none`` and ``HS*`` are refused even when a connection lists them.

:class:`IdTokenError` messages are public (fit for ``error_description``): they name the failed
check, never token contents. A JWKS that cannot be fetched at all raises
:class:`~chalicelib.login.jwks_cache.JwksUnavailable` (a dependency failure, not a bad token).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import warnings
from typing import Any, TypeGuard

from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError, SecurityWarning
from joserfc.jwk import Key
from joserfc.jws import JWSRegistry

from chalicelib.login.jwks_cache import JwksCache
from chalicelib.tokens import ASYMMETRIC_ALGS
from chalicelib.tokens import SIGNING_ALG_KEYS as _ALG_KEYS

__all__ = ["ASYMMETRIC_ALGS", "MAX_TOKEN_BYTES", "IdTokenError", "UnknownKey", "validate_id_token",
           "verify_signature"]

MAX_TOKEN_BYTES = 16 * 1024
MAX_SUB_LENGTH = 255


# EdDSA is what OIDC IdPs publish today; joserfc warns on every use since RFC 9864 superseded it.
warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)


def _registry(alg: str) -> JWSRegistry:
    # Unknown, non-critical header parameters must be ignored (RFC 7515 §4), so not strict; headers
    # may carry x5c/x5t (never used for key choice), so allow more than joserfc's 512 bytes.
    registry = JWSRegistry(algorithms=[alg], strict_check_header=False)
    registry.max_header_length = 8 * 1024
    return registry


_REGISTRIES = {alg: _registry(alg) for alg in ASYMMETRIC_ALGS}

# typ is a media type: case-insensitive, "application/" may be left out (RFC 7515 §4.1.9).
_ACCEPTED_TYP = frozenset({"jwt", "id_token+jwt"})
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class IdTokenError(Exception):
    """The ID token is not acceptable. ``check`` names the failed rule; the message is public."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check
        self.message = message


class UnknownKey(IdTokenError):
    """No key of the connection's JWKS matches the token, even after refetching it."""

    def __init__(self) -> None:
        super().__init__("kid", "no key in the connection's JWKS matches the ID token")


def _b64decode(segment: str) -> bytes:
    if not _B64URL.fullmatch(segment):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _parse_header(token: Any) -> tuple[dict, str]:
    if not isinstance(token, str) or not token:
        raise IdTokenError("format", "ID token is missing or not a string")
    if len(token.encode("utf-8", "replace")) > MAX_TOKEN_BYTES:
        raise IdTokenError("format", "ID token is too large")
    parts = token.split(".")
    if len(parts) == 5:
        raise IdTokenError("format", "encrypted ID tokens (JWE) are not supported")
    if len(parts) != 3 or not parts[0]:
        raise IdTokenError("format", "ID token is not a compact JWS")
    try:
        header = json.loads(_b64decode(parts[0]))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise IdTokenError("format", "ID token header is not valid JSON") from None
    if not isinstance(header, dict):
        raise IdTokenError("format", "ID token header is not a JSON object")
    return header, parts[0]


def _check_header(header: dict, allowed_algs: list[str]) -> tuple[str, str | None]:
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ASYMMETRIC_ALGS or alg not in allowed_algs:
        raise IdTokenError("alg", "ID token signing algorithm is not allowed for this connection")
    if "crit" in header:
        raise IdTokenError("crit", "ID token carries critical header parameters that are not supported")
    if "typ" in header:
        typ = header["typ"]
        media = typ.lower() if isinstance(typ, str) else None
        if media is not None and media.startswith("application/"):
            media = media[len("application/"):]
        if media not in _ACCEPTED_TYP:
            raise IdTokenError("typ", "token type 'typ' is not an ID token")
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid):
        raise IdTokenError("kid", "ID token 'kid' header is malformed")
    return alg, kid


def _usable(key: Key, alg: str) -> bool:
    """Whether ``key`` may verify a signature made with ``alg``."""
    kty, curves = _ALG_KEYS[alg]
    if key.key_type != kty:
        return False
    if curves is not None and key.get("crv") not in curves:
        return False
    use = key.get("use")
    if use is not None and use != "sig":
        return False
    key_ops = key.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        return False
    key_alg = key.get("alg")
    if key_alg is not None and key_alg != alg:
        return False
    return not key.is_private  # the cache strips private parts; never verify with one anyway


def _candidates(cache: JwksCache, jwks_uri: str, alg: str, kid: str | None) -> list[Key] | None:
    """Keys to try: ``None`` when the kid is unknown (or no key of the right type exists)."""
    keys = list(cache.key_set(jwks_uri))
    if kid is not None:
        named = [k for k in keys if k.kid == kid]
        if not named:
            return None
        usable = [k for k in named if _usable(k, alg)]
        if not usable:
            raise IdTokenError("kid", "the key named by the ID token's 'kid' cannot verify its algorithm")
        return usable
    usable = [k for k in keys if _usable(k, alg)]
    if not usable:
        return None
    if len(usable) > 1:
        raise IdTokenError("kid", "ID token has no 'kid' and the connection's JWKS has several usable keys")
    return usable


def _verify(token: str, keys: list[Key], alg: str) -> tuple[dict, Key]:
    for key in keys:
        try:
            claims = jwt.decode(token, key, algorithms=[alg], registry=_REGISTRIES[alg]).claims
        except BadSignatureError:
            continue
        except JoseError:
            raise IdTokenError("format", "ID token could not be decoded") from None
        except (ValueError, TypeError):
            raise IdTokenError("format", "ID token could not be decoded") from None
        if not isinstance(claims, dict):
            raise IdTokenError("format", "ID token payload is not a JSON object")
        return claims, key
    raise IdTokenError("signature", "ID token signature is invalid")


def verify_signature(token: str, *, jwks_uri: str, alg: str, kid: str | None,
                     cache: JwksCache) -> tuple[dict, Key]:
    """The claims of ``token`` and the key that verified it: the broker picks the key from the
    JWKS at ``jwks_uri`` (:func:`_candidates`), never the token. An unknown ``kid`` (keys rotated
    at the IdP, or a forged one) refetches the JWKS once, at most once a minute (the cache's
    rule), then raises :class:`UnknownKey`. Every JWT an upstream IdP signs goes through here:
    ID tokens, Global Token Revocation JWTs, logout tokens. Raises :class:`IdTokenError` for a
    bad token, :class:`~chalicelib.login.jwks_cache.JwksError` when no key set can be had."""
    keys = _candidates(cache, jwks_uri, alg, kid)
    if keys is None:
        cache.refresh_for_unknown_kid(jwks_uri)
        keys = _candidates(cache, jwks_uri, alg, kid)
        if keys is None:
            raise UnknownKey()
    return _verify(token, keys, alg)


def _is_number(value: Any) -> TypeGuard[float]:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _half_hash(value: str, alg: str, key_curve: str | None) -> str:
    """OIDC Core §3.1.3.6: left half of the hash of ``value``, base64url (errata 2 for EdDSA)."""
    data = value.encode("ascii", "surrogateescape")
    if alg == "EdDSA":
        raw = hashlib.shake_256(data).digest(114) if key_curve == "Ed448" else hashlib.sha512(data).digest()
    else:
        raw = hashlib.new("sha" + alg[-3:], data).digest()
    return base64.urlsafe_b64encode(raw[: len(raw) // 2]).rstrip(b"=").decode("ascii")


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


def _check_hash(claims: dict, name: str, value: str | None, required: bool, alg: str,
                curve: str | None) -> None:
    if name not in claims:
        if required:
            raise IdTokenError(name, f"ID token '{name}' is required but missing")
        return
    if value is None:
        return
    claim = claims[name]
    if not isinstance(claim, str) or not _same(claim, _half_hash(value, alg, curve)):
        raise IdTokenError(name, f"ID token '{name}' does not match")


def _check_claims(claims: dict, *, issuer: str, client_id: str, nonce: str | None, now: float,
                  leeway: int) -> None:
    if claims.get("iss") != issuer or not isinstance(claims.get("iss"), str):
        raise IdTokenError("iss", "ID token 'iss' does not match the connection's issuer")

    aud = claims.get("aud")
    if isinstance(aud, str):
        audiences = [aud]
    elif isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud):
        audiences = aud
    else:
        raise IdTokenError("aud", "ID token 'aud' is missing or malformed")
    if client_id not in audiences:
        raise IdTokenError("aud", "ID token 'aud' does not contain the connection's client_id")
    if "azp" in claims:
        if claims["azp"] != client_id:
            raise IdTokenError("azp", "ID token 'azp' does not match the connection's client_id")
    elif len(audiences) > 1:
        raise IdTokenError("azp", "ID token has several audiences but no 'azp'")

    exp = claims.get("exp")
    if not _is_number(exp):
        raise IdTokenError("exp", "ID token 'exp' is missing or not a number")
    if exp <= now - leeway:
        raise IdTokenError("exp", "ID token has expired")

    iat = claims.get("iat")
    if not _is_number(iat):
        raise IdTokenError("iat", "ID token 'iat' is missing or not a number")
    if iat > now + leeway:
        raise IdTokenError("iat", "ID token 'iat' is in the future")

    if "nbf" in claims:
        nbf = claims["nbf"]
        if not _is_number(nbf):
            raise IdTokenError("nbf", "ID token 'nbf' is not a number")
        if nbf > now + leeway:
            raise IdTokenError("nbf", "ID token is not valid yet ('nbf')")

    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > MAX_SUB_LENGTH:
        raise IdTokenError("sub", "ID token 'sub' is missing or malformed")

    if nonce is not None:
        claim = claims.get("nonce")
        if not isinstance(claim, str):
            raise IdTokenError("nonce", "ID token 'nonce' is missing")
        if not _same(claim, nonce):
            raise IdTokenError("nonce", "ID token 'nonce' does not match the login request")


def validate_id_token(
    token: str,
    *,
    issuer: str,
    client_id: str,
    nonce: str | None,
    jwks_uri: str,
    allowed_algs: list[str],
    cache: JwksCache,
    now: float,
    access_token: str | None = None,
    code: str | None = None,
    leeway: int = 60,
    require_at_hash: bool = False,
    require_c_hash: bool = False,
) -> dict:
    """Verify ``token`` and return its claims, or raise :class:`IdTokenError`.

    ``require_at_hash`` / ``require_c_hash``: for response types where OIDC makes them mandatory
    (``id_token token``, ``code id_token``); the broker's flows (``id_token``, ``code``) do not.
    Raises :class:`~chalicelib.login.jwks_cache.JwksUnavailable` when no key set can be had.
    """
    header, _ = _parse_header(token)
    alg, kid = _check_header(header, allowed_algs)

    claims, key = verify_signature(token, jwks_uri=jwks_uri, alg=alg, kid=kid, cache=cache)
    _check_claims(claims, issuer=issuer, client_id=client_id, nonce=nonce, now=now, leeway=leeway)
    crv = key.get("crv")
    curve = crv if isinstance(crv, str) else None
    _check_hash(claims, "at_hash", access_token, require_at_hash, alg, curve)
    _check_hash(claims, "c_hash", code, require_c_hash, alg, curve)
    return claims
