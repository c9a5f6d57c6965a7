"""The embedded AWS endpoint (moto's server) used by ``make run`` and the tests.

moto's DynamoDB backend is not thread-safe: a transaction deep-copies the table while other
request threads mutate it, which fails under concurrent load. Real DynamoDB serialises
conflicting writes, so this server does the same: one DynamoDB request at a time. Requests are
still accepted concurrently, and other services are not serialised.
"""
from __future__ import annotations

import logging
import threading

from moto.server import ThreadedMotoServer


IDEMPOTENCY_SECONDS = 600  # DynamoDB keeps a TransactWriteItems client token for 10 minutes


class _Serialised:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        # ClientRequestToken -> (expiry, body digest, status, headers, body) of a committed
        # TransactWriteItems.
        self.committed: dict[str, tuple[float, str, str, list, bytes]] = {}

    def __call__(self, environ, start_response):
        # Only DynamoDB needs it (its transactions deep-copy tables); an SQS long poll must not
        # hold the lock while it waits.
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith("DynamoDB_"):
            return self.app(environ, start_response)
        with self.lock:
            if target.endswith(".TransactWriteItems"):
                return self._idempotent_transaction(environ, start_response)
            # Drain the response inside the lock: moto computes it lazily for some services.
            return list(self.app(environ, start_response))

    def _idempotent_transaction(self, environ, start_response):
        """DynamoDB answers a TransactWriteItems repeated with the same ClientRequestToken
        (botocore fills one in and keeps it across its retries) with success and changes nothing
        when the first one committed. moto ignores the token, so a retry after a client-side
        read timeout (the first attempt did commit) would fail on its own conditions: remember
        committed tokens here, as DynamoDB does."""
        import hashlib
        import io
        import json
        import time

        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        try:
            token = json.loads(raw or b"{}").get("ClientRequestToken")
        except ValueError:
            token = None
        digest = hashlib.sha256(raw).hexdigest()
        now = time.monotonic()
        for stale in [t for t, entry in self.committed.items() if entry[0] <= now]:
            del self.committed[stale]
        if token and token in self.committed and self.committed[token][1] == digest:
            _, _, status, headers, body = self.committed[token]
            start_response(status, headers)
            return [body]
        answer: dict = {}

        def capture(status, headers, exc_info=None):
            answer["status"], answer["headers"] = status, list(headers)
            return start_response(status, headers, exc_info)

        body = b"".join(self.app(environ, capture))
        if token and answer.get("status", "").startswith("200"):
            self.committed[token] = (now + IDEMPOTENCY_SECONDS, digest, answer["status"],
                                     answer["headers"], body)
        return [body]


def install_item_level_transaction_rollback() -> None:
    """moto 5.2 backs up a transaction by deep-copying every table it touches, which makes each
    TransactWriteItems O(table size): a long test session slows to seconds per login and botocore
    starts retrying writes that already committed. Snapshot only the items the transaction names,
    and restore those when moto cancels it: the same all-or-nothing behaviour, at O(items)."""
    import copy

    import moto.dynamodb.models as models
    from moto.dynamodb.models.dynamo_type import DynamoType

    original = models.DynamoDBBackend.transact_write_items
    if getattr(original, "_item_level", False):
        return

    class _NoTableCopy:
        def __getattr__(self, name):
            return getattr(copy, name)

        @staticmethod
        def deepcopy(value, memo=None):
            if isinstance(value, models.Table):
                return value
            return copy.deepcopy(value, memo)

    def transact_write_items(self, transact_items):
        snapshots = []
        for entry in transact_items:
            _, op = next(iter(entry.items()))
            table = self.tables.get(op.get("TableName"))
            raw = op.get("Key") or op.get("Item") or {}
            if table is None or table.hash_key_attr not in raw or (
                    table.range_key_attr and table.range_key_attr not in raw):
                continue
            hash_key = DynamoType(raw[table.hash_key_attr])
            range_key = DynamoType(raw[table.range_key_attr]) if table.range_key_attr else None
            snapshots.append((table, hash_key, range_key,
                              copy.deepcopy(table.get_item(hash_key, range_key))))
        try:
            return original(self, transact_items)
        except Exception:
            for table, hash_key, range_key, item in reversed(snapshots):
                if range_key is None:
                    if item is None:
                        table.items.pop(hash_key, None)
                    else:
                        table.items[hash_key] = item
                    continue
                if item is None:
                    table.items.get(hash_key, {}).pop(range_key, None)
                else:
                    table.items[hash_key][range_key] = item
            raise

    transact_write_items._item_level = True
    models.copy = _NoTableCopy()
    models.DynamoDBBackend.transact_write_items = transact_write_items


def install_partition_query() -> None:
    """moto 5.2 answers every Query by sorting the whole table and then filtering it, so a query
    costs O(table size · log) where DynamoDB's costs O(partition). A long test session (every
    request writes log events) slows to tens of milliseconds per query under the server's one
    lock. Hand ``query`` only the candidates it would keep anyway: the named partition of the
    table, or the items carrying the index's hash key values. Its own filtering, sorting,
    paging and projection run unchanged, so the answers are the same.

    A Scan likewise sorted the whole table with DynamoType comparisons for every page and then
    compared each item with the page's start key, so a paged scan of a large table (the
    resilience tests' snapshots) took minutes. Hand ``scan`` the items in the same key order,
    sorted on plain values and cut at the start key by bisection; it stops at its page limit."""
    import moto.dynamodb.models.table as tables
    from moto.dynamodb.models.dynamo_type import DynamoType

    Table = tables.Table
    if getattr(Table.query, "_partitioned", False):
        return
    original_query = Table.query
    original_scan = Table.scan
    original_all_items = Table.all_items
    hint = threading.local()

    def all_items(self):
        scanning = getattr(hint, "scanning", None)
        if scanning is not None and scanning[0] is self:
            return scanning[1]
        wanted = getattr(hint, "wanted", None)
        if wanted is None or wanted[0] is not self:
            return original_all_items(self)
        _, hash_key, conditions = wanted
        if hash_key is not None:
            partition = self.items.get(hash_key)
            if partition is None:
                return []
            if not self.range_key_attr:
                return [partition]
            # In key order already (on plain values), so query's own sort has nothing to move.
            return sorted(partition.values(), key=lambda item: item.range_key.cast_value)
        # An index query: one pass comparing raw values (no sort, no DynamoType arithmetic).
        wanted_values = [(name, value.type, value.value) for name, value in conditions]
        out = []
        for hash_set in self.items.values():
            for item in (hash_set.values() if self.range_key_attr else (hash_set,)):
                attrs = item.attrs
                for name, type_, raw in wanted_values:
                    found = attrs.get(name)
                    if found is None or found.value != raw or found.type != type_:
                        break
                else:
                    out.append(item)
        return out

    def query(self, hash_key, *args, **kwargs):
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        conditions = kwargs.get("hash_key_conditions") or []
        if index_name is None and hash_key is not None:
            hint.wanted = (self, hash_key, None)
        elif index_name is not None and conditions:
            hint.wanted = (self, None, list(conditions))
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            hint.wanted = None

    def key_order(self, start):
        """Every item in key order (as moto's own scan walks them), from just after the
        ``start`` key (``None``: from the first), sorted on the plain key values (C string
        comparisons, not DynamoType's) and positioned by bisection."""
        import bisect

        def plain(item):
            return (item.hash_key.cast_value,
                    item.range_key.cast_value if self.range_key_attr else None)

        ordered = sorted((item for partition in self.items.values()
                          for item in (partition.values() if self.range_key_attr
                                       else (partition,))), key=plain)
        if start is None:
            return ordered
        position = (DynamoType(start[self.hash_key_attr]).cast_value,
                    DynamoType(start[self.range_key_attr]).cast_value
                    if self.range_key_attr else None)
        return ordered[bisect.bisect_right(ordered, position, key=plain):]

    def scan(self, filters, limit, exclusive_start_key, *args, **kwargs):
        index_name = args[1] if len(args) > 1 else kwargs.get("index_name")
        segments = kwargs.get("segments", args[4] if len(args) > 4 else (None, None))
        if index_name is not None or tuple(segments) != (None, None):
            return original_scan(self, filters, limit, exclusive_start_key, *args, **kwargs)
        hint.scanning = (self, key_order(self, exclusive_start_key))
        try:
            return original_scan(self, filters, limit, None, *args, **kwargs)
        finally:
            hint.scanning = None

    query._partitioned = True  # type: ignore[attr-defined]
    Table.query = query
    Table.scan = scan
    Table.all_items = all_items


def install_plain_item_responses() -> None:
    """moto 5.2 writes every DynamoDB answer through its generic, model-driven serializer, which
    walks each attribute of each item against botocore's shapes: a 1,000-event page of the logs
    search took over two seconds (past the broker's 2 s read timeout) on a table a full test run
    fills. For the item-heavy reads (GetItem, BatchGetItem, Query, Scan) write the same JSON
    directly: the result moto built, binary values base64-encoded as the wire format wants."""
    import base64
    import json

    from moto.dynamodb.responses import DynamoHandler, DynamoResult

    if getattr(DynamoHandler.query, "_plain", False):
        return

    def encode(value):
        if isinstance(value, (bytes, bytearray)):
            return base64.b64encode(value).decode("ascii")
        raise TypeError(f"not JSON: {type(value).__name__}")

    def plain(method):
        def answer(self):
            result = method(self)
            if type(result) is DynamoResult:
                return json.dumps(result.result, default=encode)
            return result

        answer._plain = True  # type: ignore[attr-defined]
        return answer

    for name in ("get_item", "batch_get_item", "query", "scan"):
        setattr(DynamoHandler, name, plain(getattr(DynamoHandler, name)))


class EmbeddedAws(ThreadedMotoServer):
    """``ThreadedMotoServer`` on loopback with serialised backends and quiet request logs."""

    def __init__(self, port: int = 0):
        super().__init__(ip_address="127.0.0.1", port=port, verbose=False)

    def _server_entry(self) -> None:
        install_item_level_transaction_rollback()
        install_partition_query()
        install_plain_item_responses()
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        app = _Serialised(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self._ip_address, self._port, app, threaded=True)
        self._server_ready_event.set()
        self._server.serve_forever()

    @property
    def endpoint(self) -> str:
        host, port = self.get_host_and_port()
        return f"http://{host}:{port}"
