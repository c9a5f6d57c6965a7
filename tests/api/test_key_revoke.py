"""SPEC §2.4 PUT /api/v2/keys/signing/{kid}/revoke, with Auth0's rules: only a previously used
key can be revoked; it leaves the JWKS at once and tokens it signed stop verifying."""
from __future__ import annotations

import base64
import json

import pytest

from tests.conftest import token_with_scopes


def _kid(token: str) -> str:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "==="))["kid"]


def _name() -> str:
    from chalicelib.secrets import signing_keys_secret_name
    from chalicelib.settings import get_settings

    return signing_keys_secret_name(get_settings().secret_prefix)


@pytest.fixture()
def restore_signing_keys(aws_endpoint):
    """Put the key set back afterwards (other tests use its keys)."""
    from chalicelib.secrets import secret_store

    saved = secret_store().get(_name())
    yield
    secret_store().put(_name(), saved)


def _keys(api) -> dict[str, dict]:
    listed = api.call("GET", "/api/v2/keys/signing")
    assert listed.status_code == 200, listed.data
    return {k["kid"]: k for k in listed.data}


def _published(client) -> set[str]:
    return {k["kid"] for k in json.loads(client.http.get("/.well-known/jwks.json").body)["keys"]}


def test_revoking_a_previous_key_unpublishes_it_and_its_tokens_stop_verifying(
        client, api, restore_signing_keys):
    old_token = api.token  # signed by the key about to become "previous"
    old_kid = _kid(old_token)
    assert api.call("POST", "/api/v2/keys/signing/rotate").status_code == 201
    api.token = token_with_scopes(client, "read:signing_keys update:signing_keys")
    assert _keys(api)[old_kid]["previous"] is True
    assert old_kid in _published(client)
    assert api.call("GET", "/api/v2/keys/signing", token=old_token).status_code == 200

    revoked = api.call("PUT", f"/api/v2/keys/signing/{old_kid}/revoke")
    assert revoked.status_code == 200, revoked.data
    assert revoked.data["kid"] == old_kid and revoked.data["cert"].startswith("-----BEGIN")
    assert revoked.data["revoked"] is True and revoked.data["revoked_at"]
    assert not revoked.data["current"] and not revoked.data["next"] \
        and not revoked.data["previous"]
    assert {"fingerprint", "thumbprint", "pkcs7"} <= set(revoked.data)

    assert old_kid not in _published(client)
    refused = api.call("GET", "/api/v2/keys/signing", token=old_token)
    assert refused.status_code == 401 and refused.data["errorCode"] == "invalid_token"
    listed = _keys(api)[old_kid]  # still listed, as Auth0 lists revoked keys
    assert listed["revoked"] is True and listed["revoked_at"] == revoked.data["revoked_at"]
    again = api.call("PUT", f"/api/v2/keys/signing/{old_kid}/revoke")
    assert again.status_code == 400, again.data


def test_revoked_key_is_refused_by_verify_and_gone_from_the_secret_private_part(
        client, api, restore_signing_keys):
    from chalicelib import keys
    from chalicelib.secrets import secret_store

    old_token = api.token
    api.call("POST", "/api/v2/keys/signing/rotate")
    revoked = keys.revoke(_kid(old_token))
    with pytest.raises(keys.TokenRejected):
        keys.verify_jwt(old_token, typ="at+jwt")
    stored = json.loads(secret_store().get(_name()))["keys"]
    [item] = [k for k in stored if k["kid"] == revoked.kid]
    assert item["status"] == "revoked" and "d" not in item["jwk"]  # the private part is gone


@pytest.mark.parametrize("status", ["current", "next"])
def test_current_and_next_keys_cannot_be_revoked(client, api, restore_signing_keys, status):
    before = _keys(api)
    [kid] = [kid for kid, key in before.items() if key[status]]
    refused = api.call("PUT", f"/api/v2/keys/signing/{kid}/revoke")
    assert refused.status_code == 400, refused.data
    assert refused.data["errorCode"] == "signing_key_not_revocable"
    assert f"The {status} signing key cannot be revoked" in refused.data["message"]
    assert _keys(api) == before and kid in _published(client)


def test_unknown_kid_and_scope(client, api):
    missing = api.call("PUT", "/api/v2/keys/signing/nope/revoke")
    assert missing.status_code == 404 and missing.data["errorCode"] == "inexistent_signing_key"
    reader = token_with_scopes(client, "read:signing_keys")
    [kid] = [k["kid"] for k in api.call("GET", "/api/v2/keys/signing").data if k["current"]]
    refused = api.call("PUT", f"/api/v2/keys/signing/{kid}/revoke", token=reader)
    assert refused.status_code == 403
