"""The typed records of the store (``TypedDict``s) list exactly the fields the Management API
stores: a field added to a body model and stored must be added to its record too."""
from __future__ import annotations


def _keys(record) -> set[str]:
    return set(record.__required_keys__ | record.__optional_keys__)


def test_the_client_record_lists_every_stored_field():
    from chalicelib.management.clients import PUBLIC_FIELDS
    from chalicelib.store.clients import Client
    from chalicelib.store.throttles import FailureCounter

    stored = {*PUBLIC_FIELDS, "client_secret_hash", *_keys(FailureCounter)}
    assert _keys(Client) == stored


def test_the_connection_record_lists_every_stored_field():
    from chalicelib.management.connections import ConnectionCreate, Options
    from chalicelib.store.connections import Connection, ConnectionOptions

    assert _keys(Connection) == {*ConnectionCreate.model_fields, "id", "client_secret_set",
                                 "pk", "sk"}
    # client_secret goes to Secrets Manager, scopes is read as scope, callback_url is computed.
    assert _keys(ConnectionOptions) == set(Options.model_fields) - {
        "client_secret", "scopes", "callback_url"}


def test_the_client_grant_record_lists_every_stored_field():
    from chalicelib.management.grants import GrantCreate
    from chalicelib.store.client_grants import ClientGrant

    assert _keys(ClientGrant) == {*GrantCreate.model_fields, "id", "resource_server_id",
                                  "pk", "sk"}
