"""Applications (OAuth clients, SPEC §2.3): where a client's record lives.

One item per client, ``CLIENTS`` / ``{client_id}``. chalicelib/management/clients.py validates
and writes it; this is the plain read for the modules below the Management API (back-channel
logout's URLs, a connection's enabled clients), which need no validation models.
"""
from __future__ import annotations

from chalicelib.store.dynamo import table

PK = "CLIENTS"
MAX_CLIENT_ID = 128


def get(client_id: str) -> dict | None:
    if not isinstance(client_id, str) or not client_id or len(client_id) > MAX_CLIENT_ID:
        return None
    return table().get(PK, client_id)
