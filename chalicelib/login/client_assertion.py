"""``private_key_jwt`` client authentication at an upstream token endpoint (RFC 7523 §2.2 and §3,
RFC 7521 §4.2, OIDC Core §9).

The assertion: ``iss`` = ``sub`` = the connection's ``client_id``; ``aud`` = the IdP's token
endpoint, or its issuer when ``options.token_endpoint_jwtca_aud_format`` is ``issuer``; ``iat``;
``exp`` = ``iat`` + 60 s; a random ``jti`` (IdPs reject a replayed one). The header names the
signing key (``kid``) and its certificate (``x5t``, ``x5t#S256``: Entra ID looks keys up by
certificate thumbprint).

Signing and the token request's parameters are authlib's (``rfc7523``), signing with joserfc;
this module is imported only on the callback path (cold start), so authlib loads at its top.
"""
from __future__ import annotations

import secrets

from authlib.common.urls import add_params_to_qs
from authlib.oauth2.rfc7523 import PrivateKeyJWT, private_key_jwt_sign

from chalicelib import clock

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
    from chalicelib.management.connection_keys import signing_key

    key, loaded = signing_key(connection)
    issued = clock.now_int() if now is None else now
    # authlib sets iss = sub = client_id, aud, iat and exp; alg comes from the key, one only.
    return private_key_jwt_sign(
        loaded, client_id=connection["options"]["client_id"],
        token_endpoint=assertion_audience(connection), alg=key.algorithm,
        issued_at=issued, expires_in=LIFETIME_SECONDS,
        claims={"jti": secrets.token_urlsafe(32)},
        header={"typ": "JWT", "kid": key.kid, "x5t": key.x5t, "x5t#S256": key.x5t_s256})


class ConnectionKeyJWT(PrivateKeyJWT):
    """authlib's ``private_key_jwt`` client authentication with the connection's own key and
    header (``kid``, ``x5t``), registered on the upstream OAuth2Session."""

    def __init__(self, connection: dict):
        super().__init__(token_endpoint=assertion_audience(connection))
        self.connection = connection

    def __call__(self, auth, method, uri, headers, body):
        return uri, headers, add_params_to_qs(body or "", list(assertion_form(self.connection).items()))


def assertion_form(connection: dict) -> dict[str, str]:
    """The token request's client-authentication parameters. ``client_id`` too: RFC 6749
    §3.2.1 lets a client send it, and some IdPs need it to find the client's keys."""
    return {
        "client_id": connection["options"]["client_id"],
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion(connection),
    }
