"""The OpenAPI 3.1 document of the Management API (``GET /api/v2/openapi.json``).

Request bodies come from the pydantic models the handlers validate with (their JSON Schemas, with
``$defs`` hoisted into ``components.schemas``); response schemas describe the ``view()`` functions.
Built on first use, then cached: nothing here runs at import time (Lambda cold starts), and nothing
reads the environment, so the document is the same everywhere (URLs are relative to the issuer).
"""
from __future__ import annotations

import json
import threading
from typing import Any

OPENAPI_VERSION = "3.1.0"
REF = "#/components/schemas/{model}"

_cached: str | None = None
_lock = threading.Lock()


def document() -> dict:
    """The document, as a fresh dict each call (built once per process)."""
    global _cached
    if _cached is None:
        with _lock:
            if _cached is None:
                _cached = json.dumps(_build(), separators=(",", ":"))
    return json.loads(_cached)


# --- small builders ---------------------------------------------------------------------------

def _ref(name: str) -> dict:
    return {"$ref": REF.format(model=name)}


def _obj(properties: dict, required: tuple | list = (), *, closed: bool = True, **extra) -> dict:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    schema.update(extra)
    return schema


def _str(**extra) -> dict:
    return {"type": "string", **extra}


def _bool(**extra) -> dict:
    return {"type": "boolean", **extra}


def _int(**extra) -> dict:
    return {"type": "integer", **extra}


def _array(items: dict, **extra) -> dict:
    return {"type": "array", "items": items, **extra}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _query(name: str, schema: dict, description: str, **extra) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description, **extra}


def _path(name: str, description: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": _str(minLength=1),
            "description": description}


# --- request bodies: the pydantic models --------------------------------------------------------

def _model_schemas(schemas: dict) -> None:
    from chalicelib.management.clients import ClientCreate, ClientUpdate
    from chalicelib.management.connections import (
        ConnectionCreate,
        ConnectionUpdate,
        EnablementItem,
    )
    from chalicelib.management.grants import GrantCreate, GrantUpdate
    from chalicelib.management.resource_servers import (
        ResourceServerCreate,
        ResourceServerUpdate,
    )

    for model in (ConnectionCreate, ConnectionUpdate, EnablementItem, ClientCreate, ClientUpdate,
                  GrantCreate, GrantUpdate, ResourceServerCreate, ResourceServerUpdate):
        schema = model.model_json_schema(ref_template=REF, mode="validation")
        for name, definition in schema.pop("$defs", {}).items():
            if schemas.setdefault(name, definition) != definition:
                raise RuntimeError(f"two different pydantic models named {name}")
        schemas[model.__name__] = schema
    schemas["EnablementList"] = _array(_ref("EnablementItem"), minItems=1, maxItems=50,
                                       description="Clients to enable (status true) or disable "
                                                   "(status false) on the connection.")


# --- responses: the view() functions --------------------------------------------------------------

def _auth0_only_properties(model, names: tuple[str, ...]) -> dict:
    """Response schemas of the Auth0 fields a model stores without acting on them, taken from the
    model itself (x-broker says inert or refused-otherwise), less the null a request may send."""
    properties = model.model_json_schema(ref_template=REF, mode="validation")["properties"]
    found = {}
    for name in names:
        schema = dict(properties[name])
        options = [s for s in schema.pop("anyOf", []) if s.get("type") != "null"]
        if len(options) == 1:
            schema.update(options[0])
        elif options:
            schema["anyOf"] = options
        schema.pop("default", None)
        found[name] = schema
    return found


def _response_schemas(schemas: dict) -> None:
    from chalicelib.management.auth import MANAGEMENT_SCOPES
    from chalicelib.management.clients import INERT_FIELDS as CLIENT_INERT
    from chalicelib.management.clients import PUBLIC_FIELDS, ClientUpdate
    from chalicelib.management.clients import REFUSED_OTHERWISE_FIELDS as CLIENT_REFUSED_OTHERWISE
    from chalicelib.management.connection_keys import ALGORITHMS as CONNECTION_KEY_ALGORITHMS
    from chalicelib.management.connection_keys import DEFAULT_ALGORITHM as CONNECTION_KEY_DEFAULT
    from chalicelib.management.connections import (
        ALIASABLE,
        ASYMMETRIC_ALGS,
        OPTION_EXTRAS,
        TOP_LEVEL_EXTRAS,
        ConnectionUpdate,
        Options,
    )

    schemas["Error"] = _obj(
        {"statusCode": _int(minimum=400, maximum=599), "error": _str(),
         "message": _str(), "errorCode": _str()},
        ("statusCode", "error", "message", "errorCode"),
        description="Auth0's Management API error body. errorCode is one of invalid_body, "
                    "invalid_query_string (400), invalid_token (401), insufficient_scope (403), "
                    "inexistent_connection, inexistent_client, inexistent_client_grant, "
                    "inexistent_user, inexistent_session, inexistent_signing_key, "
                    "inexistent_refresh_token, "
                    "inexistent_resource_server, inexistent_log (404), "
                    "signing_key_not_revocable (400), discovery_check_failed, "
                    "issuer_check_failed, jwks_check_failed (404, connection status), "
                    "tenant_settings_conflict (409), "
                    "connection_conflict, client_grant_conflict, resource_server_conflict (409), "
                    "payload_too_large (413), temporarily_unavailable (503).")
    schemas["GatewayError"] = _obj(
        {"Code": _str(), "Message": _str()}, ("Code", "Message"),
        description="Raised by the API layer before the handler runs (415 UnsupportedMediaType).")
    schemas["OAuthError"] = _obj(
        {"error": _str(), "error_description": _str()}, ("error",),
        description="RFC 6749 §5.2 error body.")

    url = _str(maxLength=2048)
    options_properties = {
        "type": _str(enum=["front_channel", "back_channel"]),
        "client_id": _str(),
        "discovery_url": url,
        "issuer": url,
        "authorization_endpoint": url,
        "token_endpoint": url,
        "jwks_uri": url,
        "userinfo_endpoint": url,
        "end_session_endpoint": url,
        "scope": _str(description="Space-separated; always contains openid."),
        "connection_settings": _obj({"pkce": _str(enum=["auto", "S256", "plain", "disabled"])},
                                    ("pkce",)),
        "attribute_map": _obj(
            {"mapping_mode": _str(enum=["use_map", "bind_all", "basic_profile"]),
             "userinfo_scope": _str(),
             "attributes": {"type": "object", "additionalProperties": _str()}},
            ("mapping_mode",)),
        "set_user_root_attributes": _str(enum=["on_each_login", "on_first_login",
                                               "never_on_login"]),
        "domain_aliases": _array(_str()),
        "icon_url": url,
        "upstream_params": {"type": "object", "additionalProperties": {
            "oneOf": [_obj({"value": _str()}, ("value",)),
                      _obj({"alias": _str(enum=list(ALIASABLE))}, ("alias",))]}},
        "token_endpoint_auth_method": _str(enum=["client_secret_post", "client_secret_basic",
                                                 "private_key_jwt"]),
        "token_endpoint_jwtca_aud_format": _str(enum=["token_endpoint", "issuer"]),
        "id_token_signed_response_algs": _array(_str(enum=list(ASYMMETRIC_ALGS)), minItems=1),
        "send_back_channel_nonce": _bool(),
        "token_storage": _str(enum=["none", "vault"], description=(
            "vault: each user's upstream tokens are kept, encrypted, for the token exchange. "
            "Absent: none.")),
        "token_retention_days": _int(minimum=1, maximum=365, description=(
            "Days a user's vaulted tokens are kept after their last write. Absent: 30.")),
        "token_exchange_clients": _array(_str(), maxItems=100, description=(
            "Client ids allowed to exchange tokens through this connection (RFC 8693).")),
        "oidc_metadata": {"type": "object", "description": "The discovery document as fetched."},
        "callback_url": _str(readOnly=True, description="The connection's own redirect URI, to "
                                                        "register at the upstream IdP."),
        "backchannel_logout_url": _str(readOnly=True, description=(
            "Where the upstream IdP sends OIDC Back-Channel Logout tokens, to register there. "
            "Accepted unchanged on write (a GET sent back by PATCH), refused when different.")),
        **_auth0_only_properties(Options, OPTION_EXTRAS),
    }
    schemas["ConnectionOptions"] = _obj(
        options_properties,
        ("type", "client_id", "issuer", "authorization_endpoint", "jwks_uri", "scope",
         "connection_settings", "attribute_map", "set_user_root_attributes",
         "token_endpoint_auth_method", "id_token_signed_response_algs", "send_back_channel_nonce",
         "callback_url", "backchannel_logout_url"),
        description="The stored options. client_secret is write-only: never returned. "
                    "callback_url and backchannel_logout_url are read-only.")
    connection_properties = {
        "id": _str(pattern="^con_[A-Za-z0-9]{16}$"),
        "name": _str(minLength=1, maxLength=128),
        "strategy": _str(enum=["oidc"]),
        "display_name": _str(),
        "show_as_button": _bool(),
        "is_domain_connection": _bool(),
        "realms": _array(_str()),
        "metadata": {"type": "object", "additionalProperties": _str()},
        "enabled_clients": _array(_str()),
        "options": _ref("ConnectionOptions"),
        **_auth0_only_properties(ConnectionUpdate, TOP_LEVEL_EXTRAS),
    }
    schemas["Connection"] = _obj(
        connection_properties,
        description="A connection as listed or read. With fields/include_fields only the selected "
                    "properties are present; options only with the read:connections_options scope.")
    schemas["ConnectionFull"] = {"allOf": [_ref("Connection"), {"required": [
        "id", "name", "strategy", "display_name", "show_as_button", "is_domain_connection",
        "realms", "metadata", "enabled_clients"]}],
        "description": "A connection as returned by create and update: every property; options "
                       "only with the read:connections_options scope, as on a GET."}
    schemas["ConnectionList"] = _list_schema("connections", "Connection")
    key_properties = {
        "kid": _str(),
        "cert": _str(pattern="^-----BEGIN CERTIFICATE-----"),
        "pkcs": _str(pattern="^-----BEGIN PKCS7-----"),
        "fingerprint": _str(pattern="^([0-9A-F]{2}:){19}[0-9A-F]{2}$"),
        "thumbprint": _str(pattern="^[0-9A-F]{40}$"),
        "algorithm": _str(enum=list(CONNECTION_KEY_ALGORITHMS)),
        "key_use": _str(enum=["signing"]),
        "subject_dn": _str(),
    }
    key_required = ("kid", "cert", "pkcs", "fingerprint", "thumbprint", "algorithm", "key_use",
                    "subject_dn")
    schemas["ConnectionKey"] = _obj(
        {**key_properties, "current": _bool(), "next": _bool(), "previous": _bool(),
         "current_since": _str(format="date-time")},
        (*key_required, "current", "next", "previous"),
        description="A private_key_jwt key of the connection: public certificate material only.")
    schemas["ConnectionKeyRotated"] = _obj(
        {**key_properties, "next": _bool(enum=[True])}, (*key_required, "next"),
        description="The new next key.")
    schemas["ConnectionKeyRequest"] = _obj(
        {"signing_alg": _str(enum=list(CONNECTION_KEY_ALGORITHMS),
                             default=CONNECTION_KEY_DEFAULT)},
        description="Optional; an empty body means the defaults.")
    schemas["ConnectionClients"] = _obj(
        {"clients": _array(_obj({"client_id": _str()}, ("client_id",))),
         "next": _str(description="Pass as from= to get the next page.")},
        ("clients",))

    refresh = _obj({
        "rotation_type": _str(enum=["rotating", "non-rotating"]),
        "expiration_type": _str(enum=["expiring", "non-expiring"]),
        "token_lifetime": _int(minimum=1),
        "idle_token_lifetime": _int(minimum=1),
        "infinite_token_lifetime": _bool(),
        "infinite_idle_token_lifetime": _bool(),
        "leeway": _int(minimum=0),
    }, ("rotation_type", "expiration_type", "token_lifetime", "idle_token_lifetime"))
    client_properties = {
        "client_id": _str(minLength=1),
        "name": _str(),
        "description": _str(),
        "app_type": _str(enum=["regular_web", "spa", "native", "non_interactive"]),
        "token_endpoint_auth_method": _str(enum=["none", "client_secret_basic",
                                                 "client_secret_post"]),
        "callbacks": _array(_str()),
        "allowed_logout_urls": _array(_str()),
        "allowed_origins": _array(_str()),
        "web_origins": _array(_str()),
        "grant_types": _array(_str(enum=["authorization_code", "refresh_token",
                                         "client_credentials"])),
        "oidc_logout": _obj({"backchannel_logout_urls": _array(_str())},
                            ("backchannel_logout_urls",)),
        "refresh_token": refresh,
        "jwt_configuration": _obj({"lifetime_in_seconds": _int(minimum=1),
                                   "alg": _str(enum=["RS256"])},
                                  ("lifetime_in_seconds", "alg")),
        "is_first_party": _bool(),
        "logo_uri": _str(),
        "client_metadata": {"type": "object", "additionalProperties": _str()},
        "created_at": _str(format="date-time"),
        "updated_at": _str(format="date-time"),
        **_auth0_only_properties(ClientUpdate, (*CLIENT_INERT, *CLIENT_REFUSED_OTHERWISE)),
    }
    missing = set(PUBLIC_FIELDS) ^ set(client_properties)
    if missing:
        raise RuntimeError(f"client response schema out of step with clients.view: {missing}")
    full_client = ["client_id", "name", "app_type", "token_endpoint_auth_method", "callbacks",
                   "allowed_logout_urls", "grant_types", "oidc_logout", "refresh_token",
                   "jwt_configuration", "is_first_party", "client_metadata", "created_at",
                   "updated_at"]
    schemas["Client"] = _obj(
        client_properties,
        description="An application as listed or read: never a client_secret. With "
                    "fields/include_fields only the selected properties are present.")
    schemas["ClientWithSecret"] = _obj(
        {**client_properties, "client_secret": _str(minLength=32)}, full_client,
        description="An application as returned by create and update: client_secret is present "
                    "only when one was just generated (a confidential application on create, or "
                    "one that became confidential on update). It is shown this once.")
    schemas["ClientRotated"] = _obj(
        {**client_properties, "client_secret": _str(minLength=32)},
        [*full_client, "client_secret"],
        description="The application with its new client_secret (shown this once).")
    schemas["ClientList"] = _list_schema("clients", "Client")

    schemas["ClientGrant"] = _obj(
        {"id": _str(pattern="^cgr_[A-Za-z0-9]{16}$"), "client_id": _str(), "audience": _str(),
         "scope": _array(_str())},
        ("id", "client_id", "audience", "scope"))
    schemas["ClientGrantList"] = _list_schema("client_grants", "ClientGrant")

    schemas["ResourceServer"] = _obj({
        "id": _str(pattern="^[0-9a-f]{24}$"),
        "identifier": _str(minLength=1, maxLength=600,
                           description="The audience. Immutable; never a client_id."),
        "name": _str(),
        "scopes": _array(_obj({"value": _str(), "description": _str()},
                              ("value", "description"))),
        "signing_alg": _str(enum=["RS256"]),
        "token_lifetime": _int(minimum=1, maximum=2592000),
        "token_lifetime_for_web": _int(minimum=1, maximum=2592000),
        "allow_offline_access": _bool(),
        "skip_consent_for_verifiable_first_party_clients": _bool(),
        "token_dialect": _str(enum=["access_token", "rfc9068_profile"],
                              description="Stored, inert."),
        "enforce_policies": _bool(enum=[False], description="Stored, inert."),
        "authorization_details": _array({"type": "object"}, description="Stored, inert."),
        "subject_type_authorization": {"type": "object", "description": "Stored, inert."},
        "allow_online_access": _bool(description="Stored, inert."),
        "allow_online_access_with_ephemeral_sessions": _bool(description="Stored, inert."),
    }, ("id", "identifier", "name", "scopes", "signing_alg", "token_lifetime",
        "token_lifetime_for_web", "allow_offline_access",
        "skip_consent_for_verifiable_first_party_clients"),
        description="An API (resource server). Sent back by PATCH less id and identifier, it "
                    "changes nothing.")
    schemas["ResourceServerList"] = _list_schema("resource_servers", "ResourceServer")

    schemas["SigningKey"] = _obj({
        "kid": _str(),
        "cert": _str(pattern="^-----BEGIN CERTIFICATE-----"),
        "pkcs7": _str(pattern="^-----BEGIN PKCS7-----"),
        "fingerprint": _str(pattern="^([0-9A-F]{2}:){19}[0-9A-F]{2}$"),
        "thumbprint": _str(pattern="^[0-9a-f]{40}$"),
        "current": _bool(),
        "next": _bool(),
        "previous": _bool(),
        "revoked": _bool(),
        "current_since": _str(format="date-time"),
        "revoked_at": _str(format="date-time"),
    }, ("kid", "cert", "pkcs7", "fingerprint", "thumbprint", "current", "next", "previous",
        "revoked"))
    _tenant_schemas(schemas)
    _log_schemas(schemas)
    schemas["SigningKeyRotated"] = _obj(
        {"kid": _str(), "cert": _str(pattern="^-----BEGIN CERTIFICATE-----")}, ("kid", "cert"),
        description="The key that is now current.")

    root_attributes = {name: {"description": "Root attribute, as mapped from the upstream "
                                             "claims (attribute_map)."}
                       for name in ("email", "email_verified", "name", "given_name", "family_name",
                                    "nickname", "picture", "username")}
    schemas["UserIdentity"] = _obj(
        {"connection": _str(), "provider": _str(enum=["oidc"]),
         "user_id": _str(description="The upstream sub."), "iss": _str(), "isSocial": _bool()},
        ("connection", "provider", "user_id"), closed=False)
    schemas["User"] = _obj(
        {**root_attributes,
         "user_id": _str(pattern=r"^oidc\\|",
                         description="oidc|{connection name}|{upstream sub}"),
         "identities": _array(_ref("UserIdentity")),
         "created_at": _str(format="date-time"),
         "updated_at": _str(format="date-time"),
         "last_login": _str(format="date-time"),
         "logins_count": _int(minimum=0),
         "blocked": _bool(description="Present once set by PATCH."),
         "app_metadata": {"type": "object", "description": "Present once set by PATCH."},
         "user_metadata": {"type": "object", "description": "Present once set by PATCH."}},
        closed=False,
        description="Root attributes and mapped attributes at the top level, then the broker's "
                    "own fields. With fields/include_fields only the selected properties are "
                    "present.")
    schemas["UserList"] = {"oneOf": _list_schema("users", "User")["oneOf"][:2]}
    metadata = {"type": ["object", "null"],
                "description": "Merged one level deep into the stored object: each top-level "
                               "key replaces the stored one, a null value removes it, {} (or "
                               "null) clears the object. At most 16 KB once merged; keys "
                               "without dots and not starting with $."}
    schemas["UserUpdate"] = _obj(
        {"blocked": _bool(description="true ends the user's sessions and revokes its refresh "
                                      "tokens; until false, logins end with access_denied and "
                                      "refresh tokens and /userinfo are refused."),
         "app_metadata": metadata, "user_metadata": metadata},
        minProperties=1,
        description="Other Auth0 user fields give 400: the upstream identity provider owns a "
                    "federated user's root attributes.")
    schemas["RefreshToken"] = _obj({
        "id": _str(description="The token family's id."), "user_id": _str(),
        "created_at": _str(format="date-time"), "idle_expires_at": _str(format="date-time"),
        "expires_at": _str(format="date-time"), "client_id": _str(),
        "session_id": {"type": ["string", "null"]}, "rotating": _bool(),
        "resource_servers": _array(_obj({"audience": _str(), "scopes": _str()},
                                        ("audience", "scopes"))),
        "last_exchanged_at": {"type": ["string", "null"], "format": "date-time"},
    }, ("id", "user_id", "created_at", "idle_expires_at", "expires_at", "client_id",
        "session_id", "rotating", "resource_servers", "last_exchanged_at"),
        description="A live refresh token family (Auth0's refresh token object); never the "
                    "token itself.")
    schemas["UserRefreshTokens"] = _obj(
        {"tokens": _array(_ref("RefreshToken")),
         "next": _str(description="Pass as from= to get the next page.")}, ("tokens",))

    moment = _str(format="date-time")
    schemas["Session"] = _obj({
        "id": _str(), "user_id": _str(), "created_at": moment, "updated_at": moment,
        "authenticated_at": moment, "last_interacted_at": moment, "idle_expires_at": moment,
        "expires_at": moment,
        "clients": _array(_obj({"client_id": _str()}, ("client_id",)),
                          description="Applications that got tokens in this session."),
        "authentication": _obj({"methods": _array(_obj(
            {"name": _str(), "timestamp": moment}, ("name", "timestamp")))}, ("methods",)),
    }, ("id", "user_id", "created_at", "updated_at", "authenticated_at", "last_interacted_at",
        "idle_expires_at", "expires_at", "clients", "authentication"),
        description="A live broker session (Auth0's session object).")
    schemas["UserSessions"] = _obj({"sessions": _array(_ref("Session"))}, ("sessions",))

    schemas["TokenRequest"] = _obj(
        {"grant_type": _str(enum=["client_credentials", "authorization_code", "refresh_token"],
                            description="client_credentials for the Management API; "
                                        "authorization_code and refresh_token for applications. "
                                        "Others give 400 unsupported_grant_type."),
         "client_id": _str(),
         "client_secret": _str(description="Or HTTP Basic client authentication."),
         "audience": _str(description="{BROKER_ISSUER}api/v2/ for the Management API."),
         "scope": _str(description="Space-separated subset of the granted scopes."),
         "code": _str(), "redirect_uri": _str(), "code_verifier": _str(),
         "refresh_token": _str()},
        ("grant_type",), closed=False, description="Other parameters are ignored.")
    schemas["TokenRequest"]["additionalProperties"] = _str()
    nullable = {"type": ["string", "null"]}
    schemas["TokenRequestJson"] = {
        **schemas["TokenRequest"],
        "properties": {name: {**prop, "type": ["string", "null"]}
                       for name, prop in schemas["TokenRequest"]["properties"].items()},
        "additionalProperties": nullable,
        "description": "As the form body; a null value counts as absent (Auth0's SDKs send "
                       "unset parameters as null)."}
    schemas["TokenResponse"] = _obj(
        {"access_token": _str(), "token_type": _str(enum=["Bearer"]),
         "expires_in": _int(minimum=1), "scope": _str(),
         "id_token": _str(description="authorization_code / refresh_token grants with openid."),
         "refresh_token": _str(description="When offline_access was granted.")},
        ("access_token", "token_type", "expires_in", "scope"))
    schemas["ManagementScope"] = _str(enum=list(MANAGEMENT_SCOPES))


def _list_schema(key: str, item: str) -> dict:
    items = _array(_ref(item))
    return {"oneOf": [
        {**items, "description": "Offset paging without include_totals: a bare array."},
        _obj({"start": _int(minimum=0), "limit": _int(minimum=1, maximum=100),
              "total": _int(minimum=0), key: items},
             ("start", "limit", "total", key),
             description="Offset paging with include_totals=true."),
        _obj({key: items, "next": _str(description="Pass as from= to get the next page.")},
             (key,), description="Checkpoint paging (from/take)."),
    ]}


# --- shared responses and parameters -------------------------------------------------------------

_STATUS_TEXT = {
    400: "Invalid body or query string (invalid_body, invalid_query_string).",
    401: "Missing, invalid or expired token, or its client no longer exists (invalid_token).",
    403: "The token lacks a required scope (insufficient_scope).",
    404: "The resource does not exist.",
    409: "Conflict with an existing resource.",
    413: "Request body larger than {max_body} KiB (payload_too_large).",
    415: "Content-Type not accepted by the route.",
    503: "A dependency (DynamoDB, Secrets Manager) is temporarily unavailable.",
}
_RESPONSE_NAMES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                   409: "Conflict", 413: "PayloadTooLarge", 415: "UnsupportedMediaType",
                   503: "ServiceUnavailable"}


def _shared_responses() -> dict:
    from chalicelib.api.http import MAX_BODY_BYTES

    responses = {}
    for status, name in _RESPONSE_NAMES.items():
        schema = _ref("GatewayError") if status == 415 else _ref("Error")
        text = _STATUS_TEXT[status].format(max_body=MAX_BODY_BYTES // 1024)
        responses[name] = _json(schema, text)
    responses["Unauthorized"]["headers"] = {"WWW-Authenticate": {
        "description": 'Bearer error="invalid_token"', "schema": _str()}}
    responses["NoContent"] = {"description": "Done; no body."}
    return responses


def _errors(*statuses: int) -> dict:
    return {str(s): {"$ref": f"#/components/responses/{_RESPONSE_NAMES[s]}"} for s in statuses}


def _parameters() -> dict:
    true_false = _str(enum=["true", "false"])
    return {
        "page": _query("page", _int(minimum=0, maximum=100000),
                       "Offset paging: page number, 0-based (default 0)."),
        "per_page": _query("per_page", _int(minimum=1, maximum=100),
                           "Offset paging: items per page (default 50)."),
        "include_totals": _query("include_totals", true_false,
                                 "Offset paging: true returns {start, limit, total, <items>} "
                                 "instead of a bare array (default false). Ignored with "
                                 "checkpoint paging, as Auth0 does."),
        "from": _query("from", _str(minLength=1, maxLength=128),
                       "Checkpoint paging: the id after which to start (the previous page's "
                       "next). Cannot be combined with offset paging."),
        "take": _query("take", _int(minimum=1, maximum=100),
                       "Checkpoint paging: items per page (default 50)."),
        "fields": _query("fields", _str(),
                         "Comma-separated property names to include (or exclude); unknown names "
                         "give 400."),
        "include_fields": _query("include_fields", true_false,
                                 "Whether fields lists properties to include (true, default) or "
                                 "to exclude (false)."),
    }


def _p(*names: str) -> list[dict]:
    return [{"$ref": f"#/components/parameters/{name}"} for name in names]


# --- operations ------------------------------------------------------------------------------------

def _op(op_id: str, tag: str, summary: str, scopes: list[str] | None, responses: dict, *,
        parameters: list | None = None, body: str | None = None, body_required: bool = True,
        description: str = "", any_scope: bool = False) -> dict:
    """``scopes``: all required, or with ``any_scope`` any one of them."""
    operation: dict[str, Any] = {"operationId": op_id, "tags": [tag], "summary": summary}
    if scopes is None:
        operation["security"] = []
    elif any_scope:
        scope_text = "Scopes: any of " + ", ".join(f"`{s}`" for s in scopes) + "."
        description = f"{scope_text} {description}".strip()
        operation["security"] = [{scheme: [s]} for s in scopes
                                 for scheme in ("managementToken", "bearerAuth")]
        operation["x-any-of-scopes"] = scopes
    else:
        scope_text = "Scopes: " + ", ".join(f"`{s}`" for s in scopes) + "."
        description = f"{scope_text} {description}".strip()
        operation["security"] = [{"managementToken": scopes}, {"bearerAuth": scopes}]
        operation["x-required-scopes"] = scopes
    if description:
        operation["description"] = description
    responses = {**responses, **_errors(415)}  # any route, for a Content-Type it does not take
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {"required": body_required, "content": {
            "application/json": {"schema": _ref(body)}}}
    operation["responses"] = responses
    return operation


def _paths() -> dict:
    ok = _json
    connection_id = _path("connection_id", "Connection id (con_ + 16 alphanumerics).")
    client_id = _path("client_id", "The application's client_id.")
    grant_id = _path("grant_id", "Client grant id (cgr_ + 16 alphanumerics).")
    kid = _path("kid", "Signing key id.")
    user_id = _path("user_id", "oidc|{connection name}|{upstream sub}, percent-encoded.")
    strategy = _query("strategy", _array(_str()), "Only connections of these strategies "
                      "(repeatable).", style="form", explode=True)
    name = _query("name", _str(), "Only the connection with exactly this name.")
    app_type = _query("app_type", _array(_str()), "Only applications of these types (repeatable; "
                      "a value may also be comma-separated).", style="form", explode=True)
    audience = _query("audience", _str(), "Only grants for this audience.")
    grant_client = _query("client_id", _str(), "Only grants of this client.")
    true_false = _str(enum=["true", "false"])
    is_global = _query("is_global", true_false, "true lists no application (the broker has no "
                       "Auth0-style global client); false changes nothing.")
    is_first_party = _query("is_first_party", true_false, "Only first-party (true) or "
                            "third-party (false) applications.")
    any_organization = _query("allow_any_organization", true_false,
                              "true lists no grant (grants here belong to no organization).")
    subject_type = _query("subject_type", _str(enum=["client", "user"]),
                          "user lists no grant (grants here are for client_credentials).")
    identifiers = _query("identifiers", _array(_str()), "Only the APIs with these identifiers "
                         "(repeatable).", style="form", explode=True)
    paging = ("page", "per_page", "include_totals", "from", "take")
    no_content = {"204": {"$ref": "#/components/responses/NoContent"}}

    return {
        "/oauth/token": {"post": _token_operation(), "options": {
            "operationId": "options_token", "tags": ["oauth"], "summary": "CORS preflight",
            "security": [],
            "description": "Answered for any origin; the POST itself is refused unless the "
                           "origin is one the client allows (allowed_origins, web_origins or a "
                           "callback URL's origin).",
            "responses": {"204": {"description": "Preflight answer: Access-Control-Allow-Origin "
                                                 "echoes the request's Origin."}}}},
        "/api/v2/openapi.json": {"get": _op(
            "get_openapi", "meta", "This document", None,
            {"200": ok({"type": "object", "required": ["openapi", "info", "paths"]},
                       "The OpenAPI document.")})},
        "/api/v2/connections": {
            "get": _op("get_connections", "connections", "List connections",
                       ["read:connections"],
                       {"200": ok(_ref("ConnectionList"), "Connections, sorted by id."),
                        **_errors(400, 401, 403, 503)},
                       parameters=[*_p(*paging), strategy, name, *_p("fields", "include_fields")],
                       description="options is included only with the read:connections_options "
                                   "scope. Offset paging (page/per_page/include_totals) and "
                                   "checkpoint paging (from/take) cannot be combined."),
            "post": _op("post_connections", "connections", "Create a connection",
                        ["create:connections"],
                        {"201": ok(_ref("ConnectionFull"), "The connection."),
                         **_errors(400, 401, 403, 409, 413, 415, 503)},
                        body="ConnectionCreate",
                        description="strategy must be oidc. Endpoints come from discovery_url "
                                    "(fetched and checked) or are given explicitly."),
        },
        "/api/v2/connections/{connection_id}": {
            "parameters": [connection_id],
            "get": _op("get_connections_by_id", "connections", "Get a connection",
                       ["read:connections"],
                       {"200": ok(_ref("Connection"), "The connection."),
                        **_errors(400, 401, 403, 404, 503)},
                       parameters=_p("fields", "include_fields"),
                       description="options is included only with the read:connections_options "
                                   "scope."),
            "patch": _op("patch_connections_by_id", "connections", "Update a connection",
                         ["update:connections"],
                         {"200": ok(_ref("ConnectionFull"), "The updated connection."),
                          **_errors(400, 401, 403, 404, 413, 415, 503)},
                         body="ConnectionUpdate",
                         description="A body with options also needs update:connections_options. "
                                     "options is replaced as a whole, except that an absent "
                                     "client_secret keeps the stored one. name and strategy "
                                     "cannot change."),
            "delete": _op("delete_connections_by_id", "connections", "Delete a connection",
                          ["delete:connections"], {**no_content, **_errors(401, 403, 404, 503)}),
        },
        "/api/v2/connections/{connection_id}/clients": {
            "parameters": [connection_id],
            "get": _op("get_connection_clients", "connections",
                       "Applications enabled on a connection", ["read:connections"],
                       {"200": ok(_ref("ConnectionClients"), "Checkpoint-paged client ids."),
                        **_errors(400, 401, 403, 404, 503)},
                       parameters=_p("from", "take")),
            "patch": _op("patch_connection_clients", "connections",
                         "Enable or disable applications on a connection", ["update:connections"],
                         {**no_content, **_errors(400, 401, 403, 404, 413, 415, 503)},
                         body="EnablementList"),
        },
        "/api/v2/connections/{connection_id}/keys": {
            "parameters": [connection_id],
            "get": _op("get_connection_keys", "connections", "The connection's private_key_jwt keys",
                       ["read:connections_keys", "read:connections"],
                       {"200": ok(_array(_ref("ConnectionKey")), "Current, next and previous."),
                        **_errors(401, 403, 404, 503)},
                       description="Generated on first use.", any_scope=True),
            "post": _op("post_connection_keys", "connections",
                        "Create the connection's private_key_jwt keys",
                        ["create:connections_keys", "update:connections"],
                        {"201": ok(_array(_ref("ConnectionKey")), "The new current and next keys."),
                         **_errors(400, 401, 403, 404, 409, 413, 503)},
                        body="ConnectionKeyRequest", body_required=False,
                        description="409 (connection_keys_exist) when it has keys already.",
                        any_scope=True),
        },
        "/api/v2/connections/{connection_id}/keys/rotate": {
            "parameters": [connection_id],
            "post": _op("rotate_connection_keys", "connections",
                        "Rotate the connection's private_key_jwt keys",
                        ["update:connections_keys", "update:connections"],
                        {"201": ok(_ref("ConnectionKeyRotated"), "The new next key."),
                         **_errors(400, 401, 403, 404, 413, 503)},
                        body="ConnectionKeyRequest", body_required=False,
                        description="next becomes current, current becomes previous (still "
                                    "published), a new next key is made; older previous keys "
                                    "are retired.", any_scope=True),
        },
        "/api/v2/connections/{connection_id}/try": {
            "parameters": [connection_id],
            "get": _op("try_connection", "connections", "A one-time link to test a login",
                       ["read:connections", "update:connections"],
                       {"200": {**ok(_obj({"url": _str(format="uri")}, ("url",)),
                                     "Open url in a browser to try a login through the "
                                     "connection (single use, short-lived)."),
                                "headers": {"Cache-Control": {"schema": _str(enum=["no-store"])}}},
                        **_errors(401, 403, 404, 503)},
                       description="Enables the broker's own try application on the connection "
                                   "when it is not yet."),
        },
        "/api/v2/clients": {
            "get": _op("get_clients", "clients", "List applications", ["read:clients"],
                       {"200": ok(_ref("ClientList"), "Applications, sorted by client_id."),
                        **_errors(400, 401, 403, 503)},
                       parameters=[*_p(*paging, "fields", "include_fields"), app_type,
                                   is_global, is_first_party]),
            "post": _op("post_clients", "clients", "Create an application", ["create:clients"],
                        {"201": ok(_ref("ClientWithSecret"), "The application; client_secret "
                                   "for confidential applications, shown this once."),
                         **_errors(400, 401, 403, 413, 415, 503)},
                        body="ClientCreate"),
        },
        "/api/v2/clients/{client_id}": {
            "parameters": [client_id],
            "get": _op("get_clients_by_id", "clients", "Get an application", ["read:clients"],
                       {"200": ok(_ref("Client"), "The application."),
                        **_errors(400, 401, 403, 404, 503)},
                       parameters=_p("fields", "include_fields")),
            "patch": _op("patch_clients_by_id", "clients", "Update an application",
                         ["update:clients"],
                         {"200": ok(_ref("ClientWithSecret"), "The updated application."),
                          **_errors(400, 401, 403, 404, 413, 415, 503)},
                         body="ClientUpdate"),
            "delete": _op("delete_clients_by_id", "clients", "Delete an application",
                          ["delete:clients"], {**no_content, **_errors(401, 403, 404, 503)},
                          description="Its client grants and connection enablements go too."),
        },
        "/api/v2/clients/{client_id}/rotate-secret": {
            "parameters": [client_id],
            "post": _op("rotate_client_secret", "clients", "Rotate an application's secret",
                        ["update:clients"],
                        {"200": ok(_ref("ClientRotated"), "The application and its new secret."),
                         **_errors(400, 401, 403, 404, 415, 503)},
                        description="No body. 400 for public applications (they have no "
                                    "secret)."),
        },
        "/api/v2/client-grants": {
            "get": _op("get_client_grants", "client-grants", "List client grants",
                       ["read:client_grants"],
                       {"200": ok(_ref("ClientGrantList"), "Client grants, sorted by id."),
                        **_errors(400, 401, 403, 503)},
                       parameters=[*_p(*paging), audience, grant_client, any_organization,
                                   subject_type]),
            "post": _op("post_client_grants", "client-grants", "Create a client grant",
                        ["create:client_grants"],
                        {"201": ok(_ref("ClientGrant"), "The grant."),
                         **_errors(400, 401, 403, 404, 409, 413, 415, 503)},
                        body="GrantCreate",
                        description="404 when the client does not exist; 409 when the client "
                                    "already has a grant for the audience."),
        },
        "/api/v2/client-grants/{grant_id}": {
            "parameters": [grant_id],
            "patch": _op("patch_client_grants_by_id", "client-grants", "Update a grant's scopes",
                         ["update:client_grants"],
                         {"200": ok(_ref("ClientGrant"), "The grant."),
                          **_errors(400, 401, 403, 404, 413, 415, 503)},
                         body="GrantUpdate"),
            "delete": _op("delete_client_grants_by_id", "client-grants", "Delete a client grant",
                          ["delete:client_grants"], {**no_content, **_errors(401, 403, 404, 503)}),
        },
        "/api/v2/resource-servers": {
            "get": _op("get_resource_servers", "resource-servers", "List APIs",
                       ["read:resource_servers"],
                       {"200": ok(_ref("ResourceServerList"), "APIs, sorted by id."),
                        **_errors(400, 401, 403, 503)},
                       parameters=[*_p(*paging), identifiers],
                       description="fields and include_fields select properties as on the "
                                   "other lists."),
            "post": _op("post_resource_servers", "resource-servers", "Create an API",
                        ["create:resource_servers"],
                        {"201": ok(_ref("ResourceServer"), "The API."),
                         **_errors(400, 401, 403, 409, 413, 415, 503)},
                        body="ResourceServerCreate",
                        description="409 when the identifier is taken. 400 for an identifier "
                                    "that is a client_id or the Management API's audience, and "
                                    "for signing_alg other than RS256."),
        },
        "/api/v2/resource-servers/{server_id}": {
            "parameters": [_path("server_id", "The API's id.")],
            "get": _op("get_resource_servers_by_id", "resource-servers", "Get an API",
                       ["read:resource_servers"],
                       {"200": ok(_ref("ResourceServer"), "The API."),
                        **_errors(400, 401, 403, 404, 503)},
                       description="fields and include_fields select properties as on the "
                                   "list."),
            "patch": _op("patch_resource_servers_by_id", "resource-servers", "Update an API",
                         ["update:resource_servers"],
                         {"200": ok(_ref("ResourceServer"), "The API."),
                          **_errors(400, 401, 403, 404, 413, 415, 503)},
                         body="ResourceServerUpdate",
                         description="identifier cannot be changed."),
            "delete": _op("delete_resource_servers_by_id", "resource-servers", "Delete an API",
                          ["delete:resource_servers"], {**no_content, **_errors(401, 403, 404, 503)},
                          description="Its client grants go too; no further tokens are issued "
                                      "for it, tokens already issued expire."),
        },
        "/api/v2/users": {
            "get": _op("get_users", "users", "List users", ["read:users"],
                       {"200": ok(_ref("UserList"), "Users, sorted by user_id."),
                        **_errors(400, 401, 403, 503)},
                       parameters=[*_p("page", "per_page", "include_totals"),
                                   _query("connection", _str(), "Only users of this connection "
                                          "(by name)."),
                                   *_p("fields", "include_fields"),
                                   _query("q", _str(maxLength=1024),
                                          'Search: email:"...", user_id:"...", '
                                          'identities.connection:"..." and blocked:true, '
                                          "joined by AND (exact matches; email is "
                                          "case-insensitive). Anything else gives 400 naming "
                                          "the unsupported part."),
                                   _query("search_engine", _str(enum=["v2", "v3"]),
                                          "Accepted for Auth0 SDKs; the search is the "
                                          "broker's own.")],
                       description="Offset paging only (no from/take)."),
        },
        "/api/v2/users-by-email": {
            "get": _op("get_users_by_email", "users", "Users with an email", ["read:users"],
                       {"200": ok(_array(_ref("User")), "Users, sorted by user_id."),
                        **_errors(400, 401, 403, 503)},
                       parameters=[{**_query("email", _str(minLength=1, maxLength=320),
                                             "Exact match, case-insensitive."),
                                    "required": True},
                                   *_p("fields", "include_fields")]),
        },
        "/api/v2/users/{user_id}/refresh-tokens": {
            "parameters": [user_id],
            "get": _op("get_user_refresh_tokens", "users", "A user's refresh tokens",
                       ["read:refresh_tokens"],
                       {"200": ok(_ref("UserRefreshTokens"), "Live token families, by id."),
                        **_errors(400, 401, 403, 404, 503)},
                       parameters=[*_p("from", "take"),
                                   _query("include_totals", _str(enum=["true", "false"]),
                                          "Accepted for Auth0 SDKs; ignored (checkpoint "
                                          "paging).")]),
        },
        "/api/v2/refresh-tokens/{token_id}": {
            "parameters": [_path("token_id", "A refresh token family's id.")],
            "get": _op("get_refresh_token", "users", "Get a refresh token",
                       ["read:refresh_tokens"],
                       {"200": ok(_ref("RefreshToken"), "The token family."),
                        **_errors(401, 403, 404, 503)}),
            "delete": _op("delete_refresh_token", "users", "Revoke a refresh token",
                          ["delete:refresh_tokens"], {**no_content, **_errors(401, 403, 404, 503)},
                          description="Revokes the whole family: every refresh token of it and "
                                      "the access tokens issued from it."),
        },
        "/api/v2/users/{user_id}": {
            "parameters": [user_id],
            "get": _op("get_users_by_id", "users", "Get a user", ["read:users"],
                       {"200": ok(_ref("User"), "The user."), **_errors(401, 403, 404, 503)}),
            "patch": _op("patch_users_by_id", "users", "Update a user", ["update:users"],
                         {"200": ok(_ref("User"), "The updated user."),
                          **_errors(400, 401, 403, 404, 413, 415, 503)},
                         body="UserUpdate"),
            "delete": _op("delete_users_by_id", "users", "Delete a user", ["delete:users"],
                          {**no_content, **_errors(401, 403, 404, 503)},
                          description="Ends the user's sessions and revokes their refresh tokens "
                                      "first, as Global Token Revocation does."),
        },
        "/api/v2/users/{user_id}/sessions": {
            "parameters": [user_id],
            "get": _op("get_user_sessions", "sessions", "A user's live sessions", ["read:sessions"],
                       {"200": ok(_ref("UserSessions"), "Sessions, oldest first."),
                        **_errors(401, 403, 404, 503)}),
            "delete": _op("delete_user_sessions", "sessions", "End all of a user's sessions",
                          ["delete:sessions"], {**no_content, **_errors(401, 403, 404, 503)},
                          description="Revokes like Global Token Revocation: the sessions end, "
                                      "refresh tokens (offline ones too) are revoked, "
                                      "applications get back-channel logout."),
        },
        "/api/v2/sessions/{session_id}": {
            "parameters": [_path("session_id", "Session id.")],
            "get": _op("get_session", "sessions", "Get a live session", ["read:sessions"],
                       {"200": ok(_ref("Session"), "The session."),
                        **_errors(401, 403, 404, 503)},
                       description="404 (inexistent_session) once it ended or expired."),
            "delete": _op("delete_session", "sessions", "End a session", ["delete:sessions"],
                          {**no_content, **_errors(401, 403, 404, 503)},
                          description="Its refresh tokens (offline ones too) are revoked and its "
                                      "applications get back-channel logout."),
        },
        "/api/v2/keys/signing": {
            "get": _op("get_signing_keys", "keys", "List the signing keys", ["read:signing_keys"],
                       {"200": ok(_array(_ref("SigningKey")), "Current, next and previous keys."),
                        **_errors(401, 403, 503)}),
        },
        "/api/v2/keys/signing/rotate": {
            "post": _op("rotate_signing_key", "keys", "Rotate the signing key",
                        ["create:signing_keys", "update:signing_keys"],
                        {"201": ok(_ref("SigningKeyRotated"), "The new current key."),
                         **_errors(401, 403, 415, 503)},
                        description="No body. next becomes current, current becomes previous, "
                                    "a new next key is made; older previous keys are retired."),
        },
        "/api/v2/keys/signing/{kid}": {
            "parameters": [kid],
            "get": _op("get_signing_key", "keys", "Get a signing key", ["read:signing_keys"],
                       {"200": ok(_ref("SigningKey"), "The key."),
                        **_errors(401, 403, 404, 503)}),
        },
        "/api/v2/keys/signing/{kid}/revoke": {
            "parameters": [kid],
            "put": _op("put_signing_keys", "keys", "Revoke a signing key", ["update:signing_keys"],
                       {"200": ok(_ref("SigningKey"), "The revoked key."),
                        **_errors(400, 401, 403, 404, 503)},
                       description="No body. Only a previous key can be revoked (400 "
                                   "signing_key_not_revocable for the current or next key, or "
                                   "one already revoked). It leaves the JWKS at once and tokens "
                                   "it signed stop verifying; the last three revoked keys stay "
                                   "listed."),
        },
        "/api/v2/tenants/settings": {
            "get": _op("get_tenant_settings", "tenants", "Get the tenant settings",
                       ["read:tenant_settings"],
                       {"200": ok(_ref("TenantSettings"), "The settings."),
                        **_errors(400, 401, 403, 503)},
                       parameters=_p("fields", "include_fields")),
            "patch": _op("patch_tenant_settings", "tenants", "Update the tenant settings",
                         ["update:tenant_settings"],
                         {"200": ok(_ref("TenantSettings"), "The updated settings."),
                          **_errors(400, 401, 403, 409, 413, 415, 503)},
                         body="TenantSettingsPatch",
                         description="session_lifetime and idle_session_lifetime (hours) set new "
                                     "broker sessions' lifetimes; default_audience (a registered "
                                     "API) stands in for a missing audience at /authorize; "
                                     "enabled_locales limit the login page's languages (the "
                                     "first is the default). null restores a default. Other "
                                     "warm containers see a change within 30 s."),
        },
        "/api/v2/connections/{connection_id}/status": {
            "parameters": [connection_id],
            "get": _op("get_connection_status", "connections", "Check a connection now",
                       ["read:connections"],
                       {"200": ok(_ref("ConnectionStatus"), "Every check passed."),
                        **_errors(400, 401, 403, 404, 503)},
                       description="Fetches the discovery document (checked as at creation), "
                                   "compares its issuer with the connection's, and fetches the "
                                   "JWKS (at least one usable public key), under the same "
                                   "outbound rules as logins. As Auth0 answers for an offline "
                                   "connection, a failed check is a 404 whose errorCode names it: "
                                   "discovery_check_failed, issuer_check_failed or "
                                   "jwks_check_failed (inexistent_connection: no such "
                                   "connection)."),
        },
        **_log_paths(user_id),
    }


def _tenant_schemas(schemas: dict) -> None:
    """Tenant settings (request: the pydantic model; answer: what view() gives) and the
    connection status answer."""
    from chalicelib.management.connection_status import CHECKS
    from chalicelib.management.tenant_settings import INERT_FIELDS, TenantSettingsPatch

    schemas["TenantSettingsPatch"] = TenantSettingsPatch.model_json_schema(ref_template=REF,
                                                                           mode="validation")
    hours = {"type": "number"}
    schemas["TenantSettings"] = _obj({
        "friendly_name": _str(), "picture_url": _str(), "support_email": _str(),
        "support_url": _str(), "session_lifetime": hours, "idle_session_lifetime": hours,
        "default_audience": _str(), "enabled_locales": _array(_str(enum=["en", "fr"])),
        "default_redirection_uri": _str(),
        **_auth0_only_properties(TenantSettingsPatch, INERT_FIELDS),
    }, description="session_lifetime, idle_session_lifetime and enabled_locales are always "
                   "present (unless fields= leaves them out); other fields never set are absent. "
                   "Auth0 fields other than the first nine are stored and echoed, not acted on "
                   "(inert).")
    schemas["ConnectionStatus"] = _obj({
        "status": _str(enum=["online"]),
        "checks": _obj({c: _str() for c in CHECKS}, CHECKS),
    }, ("status", "checks"))


def _log_schemas(schemas: dict) -> None:
    """Log events (SPEC §9): the properties are chalicelib/store/log_events.py's LogEvent."""
    from typing import get_type_hints

    from chalicelib.audit import DESCRIPTIONS
    from chalicelib.store.log_events import LogEvent

    special = {
        "log_id": _str(pattern="^900[0-9]{53}$", description="56 digits, in time order: "
                       "from= of checkpoint paging."),
        "date": _str(format="date-time", description="UTC, milliseconds."),
        "type": _str(description="Auth0's event code: " + ", ".join(
            f"{code} ({text})" for code, text in DESCRIPTIONS.items()) + "."),
        "details": {"type": "object", "description": "The failed check, the upstream error "
                    "code and the like; never a token, code, secret, assertion or cookie."},
        "strategy": _str(enum=["oidc"]),
        "strategy_type": _str(enum=["enterprise"]),
    }
    properties = {}
    for name, kind in get_type_hints(LogEvent).items():
        if name in special:
            properties[name] = special[name]
        elif kind is str:
            properties[name] = _str()
        else:
            raise RuntimeError(f"LogEvent.{name}: no schema for {kind}")
    schemas["LogEvent"] = _obj(
        properties, description="A log event in Auth0's shape. Properties without a value are "
                                "absent. With fields/include_fields only the selected properties "
                                "are present.")
    schemas["LogEventFull"] = {"allOf": [_ref("LogEvent"), {"required": [
        "log_id", "date", "type", "description", "details"]}],
        "description": "A log event with every property it has."}
    paged = {"start": _int(minimum=0), "limit": _int(minimum=1, maximum=100),
             "length": _int(minimum=0), "total": _int(minimum=0, maximum=1000)}
    schemas["LogList"] = {"oneOf": [
        _array(_ref("LogEvent"), description="Without include_totals, and checkpoint paging."),
        _obj({**paged, "logs": _array(_ref("LogEvent"))}, (*paged, "logs"),
             description="Search paging with include_totals=true: total counts the matches "
                         "paging can reach (at most 1,000)."),
    ]}
    schemas["UserLogList"] = {"oneOf": [
        _array(_ref("LogEventFull"), description="Without include_totals."),
        _obj({**paged, "logs": _array(_ref("LogEventFull"))}, (*paged, "logs"),
             description="With include_totals=true."),
    ]}


def _log_paths(user_id: dict) -> dict:
    ok = _json
    newest = "Newest first (date:-1, the default) or oldest first (date:1)."
    sort = _query("sort", _str(enum=["date:-1", "date:1"]), newest)
    page = _query("page", _int(minimum=0, maximum=100000),
                  "Search paging: page number, 0-based (default 0). Only the first 1,000 matches "
                  "can be reached: a page starting past them gives 400.")
    q = ("Search (Auth0's log search syntax, the subset the broker answers): type:, user_id:, "
         "client_id:, connection: (exact, case-sensitive values; quote a value holding spaces "
         "or special characters) and date:[A TO B] ({A TO B} excludes the ends; each end a day, "
         "an ISO 8601 time or *; a day alone as date:2026-12-01 is that day), joined by AND or "
         "by a space. Anything else (OR, NOT, wildcards, other fields) gives 400 naming the "
         "unsupported part.")
    totals = _query("include_totals", _str(enum=["true", "false"]),
                    "Search paging: true returns {start, limit, length, total, logs} instead of "
                    "a bare array (default false); total counts the matches paging can reach "
                    "(at most 1,000).")
    link = {"Link": {"schema": _str(), "description": 'Checkpoint paging: <{BROKER_ISSUER}api/'
                     'v2/logs?from=...&take=...>; rel="next", the next call (the same one again '
                     'when no newer event exists yet).'}}
    return {
        "/api/v2/logs": {
            "get": _op("get_logs", "logs", "Search log events", ["read:logs"],
                       {"200": {**ok(_ref("LogList"), "The events."), "headers": link},
                        **_errors(400, 401, 403, 503)},
                       parameters=[
                           page, *_p("per_page"), totals, sort,
                           *_p("fields", "include_fields"),
                           _query("q", _str(maxLength=1024), q),
                           _query("search", _str(maxLength=1024), "The same as q (what "
                                  "auth0-python 6.x sends); not both."),
                           _query("from", _str(pattern="^900[0-9]{53}$"),
                                  "Checkpoint paging: the events after this log_id, oldest "
                                  "first (by log_id), as a bare array."),
                           _query("take", _int(minimum=1, maximum=100),
                                  "Checkpoint paging: at most this many events (default 50). "
                                  "take without from starts at the oldest kept event.")],
                       description="Two ways to page, as at Auth0. Search paging (page/per_page): "
                                   "the events that match q, newest first by default, up to the "
                                   "first 1,000 matches; a filter other than user_id: or date: "
                                   "examines at most 5,000 events of the date range (the newest; "
                                   "the oldest with sort=date:1); a search stopped there answers "
                                   "what it found. "
                                   "Checkpoint paging (from and/or take): every event after "
                                   "from, oldest first, and a Link header naming the next call; "
                                   "page, per_page, include_totals and sort are ignored there "
                                   "(auth0's SDKs send them along), q is refused. Events are "
                                   "kept BROKER_LOG_RETENTION_DAYS days (30 by default)."),
        },
        "/api/v2/logs/{log_id}": {
            "parameters": [_path("log_id", "The event's log_id.")],
            "get": _op("get_logs_by_id", "logs", "Get a log event", ["read:logs"],
                       {"200": ok(_ref("LogEventFull"), "The event."),
                        **_errors(401, 403, 404, 503)},
                       description="404 (inexistent_log) when no such event is kept, a malformed "
                                   "id included."),
        },
        "/api/v2/users/{user_id}/logs": {
            "parameters": [user_id],
            "get": _op("get_logs_by_user", "logs", "A user's log events",
                       ["read:logs_users", "read:logs"],
                       {"200": ok(_ref("UserLogList"), "The user's events."),
                        **_errors(400, 401, 403, 404, 503)},
                       parameters=[page, *_p("per_page"), totals, sort],
                       description="Whether or not the user still exists (its deletion is one of "
                                   "its events); up to the first 1,000 events. 404 "
                                   "(inexistent_user) only for an id longer than any user id.",
                       any_scope=True),
        },
    }


def _token_operation() -> dict:
    oauth_error = _ref("OAuthError")
    no_store = {"Cache-Control": {"schema": _str(enum=["no-store"]),
                                  "description": "Token responses are never cached."}}
    return {
        "operationId": "post_token",
        "tags": ["oauth"],
        "summary": "Get an access token (client_credentials)",
        "description": "Client authentication with client_id/client_secret in the body or HTTP "
                       "Basic. audience {BROKER_ISSUER}api/v2/ gives a Management API token with "
                       "the scopes granted to the client (client grants).",
        "security": [{}, {"clientBasic": []}],
        "requestBody": {"required": True, "content": {
            "application/x-www-form-urlencoded": {"schema": _ref("TokenRequest")},
            "application/json": {"schema": _ref("TokenRequestJson")},
        }},
        "responses": {
            "200": {**_json(_ref("TokenResponse"), "The access token."), "headers": no_store},
            "400": _json(oauth_error, "invalid_request, unsupported_grant_type, invalid_grant, "
                                      "invalid_scope, unauthorized_client."),
            "401": {**_json(oauth_error, "invalid_client: client authentication failed."),
                    "headers": {"WWW-Authenticate": {
                        "schema": _str(), "description": "With HTTP Basic authentication."}}},
            "403": _json(oauth_error, "access_denied: no client grant for the audience."),
            "413": _json(oauth_error, "invalid_request: body too large."),
            "429": {**_json(oauth_error, "too_many_requests: too many failed client "
                                         "authentications for this client_id; wait."),
                    "headers": {"Retry-After": {"schema": _str(pattern="^[0-9]+$"),
                                                "description": "Seconds.", "required": True}}},
            "415": {"$ref": "#/components/responses/UnsupportedMediaType"},
            "503": _json(oauth_error, "temporarily_unavailable."),
        },
    }


def _build() -> dict:
    from chalicelib.management.auth import MANAGEMENT_SCOPES

    schemas: dict[str, Any] = {}
    _model_schemas(schemas)
    _response_schemas(schemas)
    scopes = {scope: scope.replace(":", " ").replace("_", " ") for scope in MANAGEMENT_SCOPES}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Identity broker Management API",
            "version": "2",
            "description": "Auth0-shaped Management API v2 of the identity broker. Paths are "
                           "relative to BROKER_ISSUER. Get a token with POST /oauth/token "
                           "(client_credentials, audience {BROKER_ISSUER}api/v2/) and send it as "
                           "Authorization: Bearer <token>.",
        },
        "servers": [{"url": "/", "description": "BROKER_ISSUER"}],
        "tags": [{"name": name} for name in ("connections", "clients", "client-grants",
                                             "resource-servers", "users",
                                             "sessions", "keys", "tenants", "logs", "oauth",
                                             "meta")],
        "paths": _paths(),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "parameters": _parameters(),
            "responses": _shared_responses(),
            "securitySchemes": {
                "managementToken": {
                    "type": "oauth2",
                    "description": "Access token (JWT, typ at+jwt) for audience "
                                   "{BROKER_ISSUER}api/v2/, sent as a Bearer token.",
                    "flows": {"clientCredentials": {"tokenUrl": "/oauth/token",
                                                    "scopes": scopes}},
                },
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                               "description": "The same token as managementToken."},
                "clientBasic": {"type": "http", "scheme": "basic",
                                "description": "Client authentication at the token endpoint."},
            },
        },
    }
