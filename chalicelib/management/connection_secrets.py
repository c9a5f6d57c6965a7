"""A connection's upstream client secret in Secrets Manager (SPEC §2.2).

The secret is never written to DynamoDB: the connection's item records only that one is set
(``client_secret_set``), and the login flow reads it through ``registry/connections``.
"""
from __future__ import annotations

from chalicelib.secrets import connection_secret_name, secret_store
from chalicelib.settings import get_settings


def put_upstream_secret(connection_id: str, secret: str, connection_name: str) -> None:
    secret_store().put(connection_secret_name(get_settings().secret_prefix, connection_id),
                       secret, description=f"Upstream client secret of {connection_name}")


def schedule_upstream_secret_deletion(connection_id: str) -> None:
    secret_store().schedule_deletion(
        connection_secret_name(get_settings().secret_prefix, connection_id))
