"""The upstream token vault (SPEC §10): a connection with ``options.token_storage: vault`` keeps
each user's upstream access, refresh and ID tokens, sealed, for the RFC 8693 token exchange.

Envelope encryption: the tokens' JSON is sealed with AES-256-GCM under a data key from KMS
``GenerateDataKey`` (the key :attr:`~chalicelib.settings.Settings.vault_key_id`, encryption
context ``{"connection": <connection id>, "user": <user id>}``); the entry keeps the data key only
as KMS's ciphertext blob, opened with KMS ``Decrypt`` under the same context. The GCM additional
data is the same pair, so an entry copied to another user's or connection's key opens neither at
KMS nor at AES. Nothing in the item (chalicelib/store/vault.py) holds a token in clear.

Plaintext data keys are cached in this container only (:class:`DataKeyCache`: at most
:data:`DATA_KEY_CACHE_SIZE` entries, least recently used out first), keyed by the encrypted blob
*and* its context, so a cached key never opens an entry under another context: a warm read makes
no KMS call. A new write for the same user and connection in the same container (a login again,
a refresh) reuses that pair's data key while it is younger than :data:`DATA_KEY_REUSE_SECONDS`
(same context, a fresh 96-bit random nonce per seal; far below GCM's 2^32 messages per key): one
``GenerateDataKey`` per user and connection per hour and container at most, none on a refresh.

Refreshing at the upstream is serialised by a lease (store/vault.py): :func:`take_refresh_lease`,
then :func:`replace` (only while the lease is held) or :func:`release_lease`.

:func:`forget_user` is the revocation side (Global Token Revocation, deleting or blocking a user,
deleting a connection: chalicelib/revocation.py): the entries go, and the upstream refresh token
is revoked at the IdP's RFC 7009 ``revocation_endpoint`` when its discovery document advertises
one, best effort, each outcome a log event (``slo``, or ``flo`` when the IdP refused or failed).
The HTTP call is the relying party's (chalicelib/login/upstream_revocation.py: netguard's
transport, the connection's client authentication), handed in by the caller since the login
flows sit above this module.
"""
from __future__ import annotations

import base64
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from chalicelib import audit, aws
from chalicelib.errors import ServiceUnavailable
from chalicelib.settings import get_settings
from chalicelib.store import vault as store
from chalicelib.store.unit_of_work import Write
from chalicelib.tokens import random_token

log = logging.getLogger(__name__)

STORAGE_OPTION = "token_storage"
DEFAULT_RETENTION_DAYS = 30
DAY = 86400
LEASE_SECONDS = 15
DATA_KEY_CACHE_SIZE = 1000
DATA_KEY_REUSE_SECONDS = 3600
NONCE_BYTES = 12  # GCM's 96-bit nonce


@dataclass(frozen=True)
class UpstreamTokens:
    """An upstream token response as the vault keeps it. ``expires_at``: the access token's
    expiry (epoch seconds; the callback's ``now`` + ``expires_in``), None when not given. No
    token ever shows in a repr."""
    access_token: str = field(repr=False)
    expires_at: int | None
    refresh_token: str | None = field(default=None, repr=False)
    id_token: str | None = field(default=None, repr=False)
    token_type: str = "Bearer"
    scope: str | None = None


class EntryUnreadable(Exception):
    """An entry that does not open under the context it is read with (moved, tampered with, or
    its data key's KMS key is gone). Says nothing of its content."""


class UpstreamRevocationFailed(Exception):
    """The IdP did not confirm the revocation: ``outcome`` is a short, token-free reason (an HTTP
    status, ``unavailable``...), for the log event."""

    def __init__(self, outcome: str):
        super().__init__(outcome)
        self.outcome = outcome


# (connection record, refresh token) -> None, or UpstreamRevocationFailed.
UpstreamRevoker = Callable[[Mapping[str, Any], str], None]


# --------------------------------------------------------------------------- options

def enabled(connection: Mapping[str, Any] | None) -> bool:
    """Whether the connection keeps its users' upstream tokens (``options.token_storage``)."""
    options = (connection or {}).get("options") or {}
    return options.get(STORAGE_OPTION) == "vault"


def retention_seconds(connection: Mapping[str, Any]) -> int:
    days = (connection.get("options") or {}).get("token_retention_days")
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 365:
        days = DEFAULT_RETENTION_DAYS
    return days * DAY


# --------------------------------------------------------------------------- data keys

class DataKeyCache:
    """Plaintext data keys of this container, least recently used out first. Two kinds of
    entries share the bound: ``("blob", connection, user, blob)`` → key (reading) and
    ``("pair", connection, user)`` → (blob, key id, key, since) (writing again)."""

    def __init__(self, size: int = DATA_KEY_CACHE_SIZE):
        self.size = size
        self._entries: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Any:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: tuple, value: Any) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:  # never show a key
        return f"<DataKeyCache {len(self._entries)} entries>"


data_keys = DataKeyCache()


def _context(connection_id: str, user_id: str) -> dict[str, str]:
    return {"connection": connection_id, "user": user_id}


def _aad(connection_id: str, user_id: str) -> bytes:
    # JSON, so no pair of ids can run into another's bytes.
    return json.dumps([connection_id, user_id], separators=(",", ":")).encode()


def _kms():
    return aws.client("kms")


def _kms_unavailable(exc: Exception) -> ServiceUnavailable:
    response = getattr(exc, "response", None)
    code = (response.get("Error", {}) if isinstance(response, dict) else {}).get(
        "Code", type(exc).__name__)
    log.error("kms call failed: %s", code)
    return ServiceUnavailable("A dependency is temporarily unavailable")


def _new_data_key(connection_id: str, user_id: str, now: int) -> tuple[bytes, str, str]:
    """(plaintext key, its encrypted blob as base64, the KMS key's id): the pair's cached one
    while young enough, else a new one from ``GenerateDataKey``."""
    key_id = get_settings().vault_key_id
    reused = data_keys.get(("pair", connection_id, user_id, key_id))
    if reused is not None and 0 <= now - reused[3] < DATA_KEY_REUSE_SECONDS:
        return reused[2], reused[0], reused[1]
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer = _kms().generate_data_key(KeyId=key_id, KeySpec="AES_256",
                                          EncryptionContext=_context(connection_id, user_id))
    except (ClientError, BotoCoreError) as exc:
        raise _kms_unavailable(exc) from None
    plaintext = answer["Plaintext"]
    blob = base64.b64encode(answer["CiphertextBlob"]).decode("ascii")
    stored_key_id = answer.get("KeyId") or key_id
    data_keys.put(("pair", connection_id, user_id, key_id), (blob, stored_key_id, plaintext, now))
    data_keys.put(("blob", connection_id, user_id, blob), plaintext)
    return plaintext, blob, stored_key_id


def _data_key(record: store.VaultRecord, connection_id: str, user_id: str) -> bytes:
    """The entry's plaintext data key: from this container's cache, else KMS ``Decrypt`` under
    the context of the ids it is read for."""
    blob = record["data_key"]
    cache_key = ("blob", connection_id, user_id, blob)
    found = data_keys.get(cache_key)
    if found is not None:
        return found
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer = _kms().decrypt(CiphertextBlob=base64.b64decode(blob), KeyId=record["key_id"],
                                EncryptionContext=_context(connection_id, user_id))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("InvalidCiphertextException", "IncorrectKeyException", "NotFoundException",
                    "KMSInvalidStateException"):
            raise EntryUnreadable(code) from None
        raise _kms_unavailable(exc) from None
    except BotoCoreError as exc:
        raise _kms_unavailable(exc) from None
    except ValueError:  # not base64
        raise EntryUnreadable("data key") from None
    plaintext = answer["Plaintext"]
    data_keys.put(cache_key, plaintext)
    return plaintext


# --------------------------------------------------------------------------- seal and open

def _payload(tokens: UpstreamTokens) -> bytes:
    return json.dumps({k: v for k, v in asdict(tokens).items() if v is not None},
                      separators=(",", ":")).encode()


def seal(connection: Mapping[str, Any], user_id: str, tokens: UpstreamTokens,
         now: int) -> store.SealedFields:
    """The tokens sealed for this user and connection (at most one KMS call, see above)."""
    # cold start: cryptography loads only when a vault connection stores or reads tokens.
    import os

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not isinstance(tokens.access_token, str) or not tokens.access_token:
        raise ValueError("no access token to keep")
    connection_id = connection["id"]
    plaintext_key, blob, key_id = _new_data_key(connection_id, user_id, now)
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(plaintext_key).encrypt(nonce, _payload(tokens), _aad(connection_id, user_id))
    return {"connection": connection["name"],
            "sealed": base64.b64encode(sealed).decode("ascii"),
            "nonce": base64.b64encode(nonce).decode("ascii"),
            "data_key": blob, "key_id": key_id, "access_expires_at": tokens.expires_at}


def open_entry(record: store.VaultRecord, connection_id: str, user_id: str) -> UpstreamTokens:
    """The tokens of ``record``, read for this connection and user: :class:`EntryUnreadable`
    unless the entry is theirs (its stored ids, KMS's context and the GCM data all agree)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if record.get("connection_id") != connection_id or record.get("user_id") != user_id:
        raise EntryUnreadable("ids")
    plaintext_key = _data_key(record, connection_id, user_id)
    try:
        clear = AESGCM(plaintext_key).decrypt(base64.b64decode(record["nonce"]),
                                              base64.b64decode(record["sealed"]),
                                              _aad(connection_id, user_id))
        fields = json.loads(clear)
        return UpstreamTokens(**{"expires_at": None, **fields})
    except (InvalidTag, ValueError, TypeError, KeyError):
        raise EntryUnreadable("sealed") from None


# --------------------------------------------------------------------------- the interface

def store_operation(connection: Mapping[str, Any], user_id: str, tokens: UpstreamTokens,
                    now: int) -> Write:
    """The sealed entry as one write of the login's transaction (created or replaced, version
    one up, any refresh lease dropped, retention from now)."""
    fields = seal(connection, user_id, tokens, now)
    return store.store_operation(user_id, connection["id"], fields, now,
                                 now + retention_seconds(connection))


def read(connection: Mapping[str, Any], user_id: str,
         now: int) -> tuple[UpstreamTokens, int] | None:
    """The user's upstream tokens of this connection and the entry's version; None when there
    is no entry, its retention ran out, or it does not open (logged: moved or tampered with)."""
    record = store.get(user_id, connection["id"], now)
    if record is None:
        return None
    try:
        return open_entry(record, connection["id"], user_id), int(record["version"])
    except EntryUnreadable as exc:
        log.error("vault entry of %s at %s does not open (%s)", user_id[:80],
                  connection.get("name"), exc)
        return None


def take_refresh_lease(connection: Mapping[str, Any], user_id: str, now: int,
                       seconds: int = LEASE_SECONDS) -> str | None:
    """A lease token when this caller may refresh the entry's tokens upstream (it won the
    conditional update), else None (another caller holds a live lease, or there is no entry)."""
    lease = random_token(18)
    taken = store.take_lease(user_id, connection["id"], lease, now, now + seconds)
    return lease if taken is not None else None


def replace(connection: Mapping[str, Any], user_id: str, tokens: UpstreamTokens, lease: str,
            now: int) -> int:
    """Write refreshed tokens while holding ``lease`` (then released); the new version.
    :class:`~chalicelib.store.dynamo.ConditionFailed` when the lease was lost."""
    fields = seal(connection, user_id, tokens, now)
    return store.replace(user_id, connection["id"], fields, lease, now,
                         now + retention_seconds(connection))


def release_lease(connection: Mapping[str, Any], user_id: str, lease: str) -> None:
    """Give the lease back (a refresh that failed): the next caller may try at once."""
    store.release_lease(user_id, connection["id"], lease)


# --------------------------------------------------------------------------- revocation

def forget_user(user_id: str, now: int, *, revoke_upstream: bool = True,
                revoker: UpstreamRevoker | None = None, reason: str | None = None) -> int:
    """Delete every vault entry of the user; with ``revoke_upstream`` and a ``revoker`` (the
    relying party's RFC 7009 call), revoke each entry's refresh token at its connection's
    ``revocation_endpoint`` when advertised, best effort (logged). A storage failure (the list or
    a delete) raises :class:`ServiceUnavailable`: an entry left behind must fail the revocation,
    so that its caller answers an error and is retried. One log event per entry. Returns how
    many entries were deleted."""
    deleted = 0
    for record in store.of_user(user_id):
        try:
            if _forget_entry(record, user_id, revoker if revoke_upstream else None, reason):
                deleted += 1
        except ServiceUnavailable:
            raise  # the entry is still there: the revocation must fail so that it is retried
        except Exception:  # noqa: BLE001 - best effort: the other entries still go
            log.exception("vault entry of %s at %s not forgotten", user_id[:80],
                          record.get("connection"))
    return deleted


def _forget_entry(record: store.VaultRecord, user_id: str, revoker: UpstreamRevoker | None,
                  reason: str | None) -> bool:
    from chalicelib.registry.connections import cached_connection

    connection_id = record["connection_id"]
    connection = cached_connection(connection_id)
    refresh_token = None
    unreadable = None
    if revoker is not None and connection is not None and _revocation_endpoint(connection):
        # Opened before the delete: once gone, the refresh token could not be revoked anymore.
        try:
            refresh_token = open_entry(record, connection_id, user_id).refresh_token
        except (EntryUnreadable, ServiceUnavailable) as exc:
            unreadable = type(exc).__name__
    if store.delete(user_id, connection_id) is None:
        return False  # a concurrent forget took it
    upstream = _revoke(connection, refresh_token, revoker, unreadable)
    _event(connection or {"id": connection_id, "name": record.get("connection")}, user_id,
           upstream, reason)
    return True


def _revocation_endpoint(connection: Mapping[str, Any]) -> str | None:
    metadata = (connection.get("options") or {}).get("oidc_metadata") or {}
    endpoint = metadata.get("revocation_endpoint") if isinstance(metadata, Mapping) else None
    return endpoint if isinstance(endpoint, str) and endpoint else None


def _revoke(connection: Mapping[str, Any] | None, refresh_token: str | None,
            revoker: UpstreamRevoker | None, unreadable: str | None) -> str:
    """What became of the upstream refresh token: ``revoked``, or why not."""
    if revoker is None:
        return "not_requested"
    if connection is None:
        return "connection_gone"
    if not _revocation_endpoint(connection):
        return "not_advertised"
    if unreadable is not None:
        return "entry_unreadable"
    if not refresh_token:
        return "no_refresh_token"
    try:
        revoker(connection, refresh_token)
    except UpstreamRevocationFailed as exc:
        return f"failed: {exc.outcome}"
    except Exception as exc:  # noqa: BLE001 - best effort, never fails the revocation
        log.warning("upstream revocation at %s crashed: %s", connection.get("name"),
                    type(exc).__name__)
        return "failed: internal"
    return "revoked"


def _event(connection: Mapping[str, Any], user_id: str, upstream: str,
           reason: str | None) -> None:
    """SPEC §9 has no vault type: the tokens leaving the vault are the user's logout from the
    upstream's tokens, an ``slo``; ``flo`` when the IdP did not confirm the revocation."""
    failed = upstream.startswith("failed")
    audit.record(audit.event(
        "flo" if failed else "slo", connection=connection, user_id=user_id,
        description=("Upstream tokens deleted from the vault; the identity provider did not "
                     "revoke the refresh token") if failed else
        "Upstream tokens deleted from the vault",
        details={"vault": "deleted", "upstream_revocation": upstream, "reason": reason}))
