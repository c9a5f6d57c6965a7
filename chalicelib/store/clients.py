"""Applications (OAuth clients, SPEC §2.3): where a client's record lives.

One item per client, ``CLIENTS`` / ``{client_id}``. chalicelib/management/clients.py validates
the record and writes it through the functions below; :func:`get` is also the plain read for the
modules below the Management API (back-channel logout's URLs, a connection's enabled clients),
which need no validation models. Conditional writes raise
:class:`~chalicelib.store.dynamo.ConditionFailed` when their condition does not hold.

:class:`Client` lists every field the item carries. It is a ``TypedDict``: at run time the record
stays the plain dict DynamoDB returns, and the login paths load no validation model to read it.
"""
from __future__ import annotations

from typing import Any, TypedDict, cast

from chalicelib.store.dynamo import table

PK = "CLIENTS"
MAX_CLIENT_ID = 128
_EXISTS = "attribute_exists(pk)"


class OidcLogout(TypedDict, total=False):
    backchannel_logout_urls: list[str]
    backchannel_logout_initiators: dict[str, Any]  # {"mode", "selected_initiators"}
    backchannel_logout_session_metadata: dict[str, Any]  # {"include"}: inert


class RefreshTokenSettings(TypedDict, total=False):
    rotation_type: str  # "rotating" | "non-rotating"
    expiration_type: str  # "expiring" | "non-expiring"
    token_lifetime: int
    idle_token_lifetime: int
    infinite_token_lifetime: bool
    infinite_idle_token_lifetime: bool
    leeway: int
    policies: list[dict[str, Any]]  # inert: [{"audience", "scope"}]


class JwtConfiguration(TypedDict, total=False):
    lifetime_in_seconds: int
    alg: str  # "RS256"
    secret_encoded: bool  # inert
    scopes: dict[str, Any]  # inert


class Client(TypedDict, total=False):
    """An application as stored (management/clients.py's ``_resolve`` fills the defaults, so a
    stored client always has ``client_id``, ``name``, ``app_type``, ``token_endpoint_auth_method``,
    ``grant_types``, ``callbacks``, ``refresh_token`` and ``jwt_configuration``)."""
    pk: str
    sk: str
    # Acted on (SPEC §2.3).
    client_id: str
    name: str
    description: str
    app_type: str  # "regular_web" | "spa" | "native" | "non_interactive"
    token_endpoint_auth_method: str  # "none" | "client_secret_basic" | "client_secret_post"
    client_secret_hash: str  # registry/clients.hash_secret's "sha256$salt$digest"; never echoed
    callbacks: list[str]
    allowed_logout_urls: list[str]
    allowed_origins: list[str]
    web_origins: list[str]
    grant_types: list[str]
    oidc_logout: OidcLogout
    refresh_token: RefreshTokenSettings
    jwt_configuration: JwtConfiguration
    is_first_party: bool
    logo_uri: str
    client_metadata: dict[str, str]
    created_at: str | None
    updated_at: str
    # The failure counter (store/throttles.py): removed by a replace.
    auth_failures: int
    auth_fail_window: int
    # Stored and echoed, not acted on (management/auth0_fields.py: inert).
    oidc_conformant: bool
    client_aliases: list[str]
    allowed_clients: list[str]
    session_transfer: dict[str, Any]
    sso: bool
    sso_disabled: bool
    cross_origin_authentication: bool
    cross_origin_loc: str
    custom_login_page_on: bool
    custom_login_page: str
    custom_login_page_preview: str
    form_template: str
    addons: dict[str, Any]
    mobile: dict[str, Any]
    initiate_login_uri: str
    native_social_login: dict[str, Any]
    fedcm_login: dict[str, Any]
    default_organization: dict[str, Any]
    organization_require_behavior: str
    organization_discovery_methods: list[str]
    token_exchange: dict[str, Any]
    par_request_expiry: int
    resource_server_identifier: str
    identity_assertion_authorization_grant: dict[str, Any]
    third_party_security_mode: str
    redirection_policy: str
    express_configuration: dict[str, Any]
    my_organization_configuration: dict[str, Any]
    async_approval_notification_channels: dict[str, Any]
    # Accepted only with the value that asks for nothing the broker does not do (``refused``).
    organization_usage: str
    require_pushed_authorization_requests: bool
    require_proof_of_possession: bool
    compliance_level: str
    is_token_endpoint_ip_header_trusted: bool
    skip_non_verifiable_callback_uri_confirmation_prompt: bool
    signed_request_object: dict[str, Any]  # {"required": false, "credentials": []}
    client_authentication_methods: dict[str, Any]
    encryption_key: dict[str, Any]
    token_quota: dict[str, Any]
    token_vault_privileged_access: dict[str, Any]


def get(client_id: str) -> Client | None:
    if not isinstance(client_id, str) or not client_id or len(client_id) > MAX_CLIENT_ID:
        return None
    return cast("Client | None", table().get(PK, client_id))


def list_all() -> list[Client]:
    return [cast(Client, item) for item in table().query(PK)]


def create(record: Client) -> None:
    """A new client (``record["client_id"]``); fails when that id is taken."""
    table().put_new({"pk": PK, "sk": record["client_id"], **record})


def put(record: Client) -> None:
    """Write the client whether or not it exists (the built-in Try application)."""
    table().put({"pk": PK, "sk": record["client_id"], **record})


def replace(record: Client) -> None:
    """The whole record of an existing client (fields left out are removed, the failure
    counter included); fails when the client is gone."""
    table().put({"pk": PK, "sk": record["client_id"], **record}, condition=_EXISTS)


def set_secret_hash(client_id: str, secret_hash: str, updated_at: str) -> Client | None:
    """A new secret's hash; fails when the client is gone. Returns the updated record."""
    return cast("Client | None", table().update(
        PK, client_id, "SET client_secret_hash = :h, updated_at = :u",
        condition=_EXISTS, values={":h": secret_hash, ":u": updated_at}))


def delete(client_id: str) -> None:
    table().delete(PK, client_id)
