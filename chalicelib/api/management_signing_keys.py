"""Management API: ``/api/v2/keys/signing``: the broker's own signing keys, Auth0-shaped (SPEC §2.4)."""
from __future__ import annotations

from chalice import Blueprint

from chalicelib import keys
from chalicelib.api.http import MANAGEMENT_BODY_TYPES, handles_api_errors, json_response, management_caller
from chalicelib.errors import InvalidBody, NotFound

bp = Blueprint(__name__)
JSON = MANAGEMENT_BODY_TYPES


def _caller(*scopes: str):
    return management_caller(bp.current_request, *scopes)


def _not_found() -> NotFound:
    return NotFound("Signing key not found", error_code="inexistent_signing_key")


@bp.route("/api/v2/keys/signing", methods=["GET"])
@handles_api_errors
def list_signing_keys():
    _caller("read:signing_keys")
    return json_response([keys.key_view(k) for k in keys.signing_keys()])


@bp.route("/api/v2/keys/signing/{kid}", methods=["GET"])
@handles_api_errors
def get_signing_key(kid):
    _caller("read:signing_keys")
    for key in keys.signing_keys():
        if key.kid == kid:
            return json_response(keys.key_view(key))
    raise _not_found()


@bp.route("/api/v2/keys/signing/rotate", methods=["POST"], content_types=JSON)
@handles_api_errors
def rotate_signing_key():
    _caller("create:signing_keys", "update:signing_keys")
    key = keys.rotate()
    return json_response({"cert": key.cert, "kid": key.kid}, 201)


@bp.route("/api/v2/keys/signing/{kid}/revoke", methods=["PUT"], content_types=JSON)
@handles_api_errors
def revoke_signing_key(kid):
    _caller("update:signing_keys")
    try:
        revoked = keys.revoke(kid)
    except keys.SigningKeyNotFound:
        raise _not_found() from None
    except keys.SigningKeyNotRevocable as exc:
        raise InvalidBody(str(exc), error_code="signing_key_not_revocable") from None
    return json_response(keys.key_view(revoked))
