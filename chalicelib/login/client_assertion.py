"""``private_key_jwt`` client authentication at an upstream token endpoint (RFC 7523 §2.2 and §3,
RFC 7521 §4.2, OIDC Core §9).

The assertion: ``iss`` = ``sub`` = the connection's ``client_id``; ``aud`` = the IdP's token
endpoint, or its issuer when ``options.token_endpoint_jwtca_aud_format`` is ``issuer``; ``iat``;
``exp`` = ``iat`` + 60 s; a random ``jti`` (IdPs reject a replayed one). The header names the
signing key (``kid``) and its certificate (``x5t``, ``x5t#S256``: Entra ID looks keys up by
certificate thumbprint).
"""
from __future__ import annotations

import secrets
import time

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
LIFETIME_SECONDS = 60
AUD_FORMATS = ("token_endpoint", "issuer")


def assertion_audience(connection: dict) -> str:
    options = connection["options"]
    aud_format = options.get("token_endpoint_jwtca_aud_format") or "token_endpoint"
    if aud_format == "issuer":
        return options["issuer"]
    return options["token_endpoint"]


def client_assertion(connection: dict, now: int | None = None) -> str:
    from joserfc import jwt

    from chalicelib.management.connection_keys import signing_key

    options = connection["options"]
    key, loaded = signing_key(connection)
    issued = int(time.time()) if now is None else now
    claims = {
        "iss": options["client_id"],
        "sub": options["client_id"],
        "aud": assertion_audience(connection),
        "iat": issued,
        "exp": issued + LIFETIME_SECONDS,
        "jti": secrets.token_urlsafe(32),
    }
    header = {"alg": key.algorithm, "typ": "JWT", "kid": key.kid, "x5t": key.x5t,
              "x5t#S256": key.x5t_s256}
    return jwt.encode(header, claims, loaded, algorithms=[key.algorithm])


def assertion_form(connection: dict) -> dict[str, str]:
    """The token request's client-authentication parameters."""
    return {
        "client_id": connection["options"]["client_id"],
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion(connection),
    }
