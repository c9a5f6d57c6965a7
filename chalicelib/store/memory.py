"""An in-memory table with DynamoDB's semantics: the second backend of chalicelib/store/.

``MemoryTable`` has :class:`~chalicelib.store.dynamo.Table`'s methods and answers them as
DynamoDB (through dynamo.py) would: the same values back (numbers as ``_native`` gives them,
sets as sorted lists, ``None`` attributes dropped), expiry on read by the injected clock
while expired items still count for conditions (TTL deletion lags), conditional writes that
fail with :class:`ConditionFailed`, all-or-nothing transactions with DynamoDB's per-item
cancellation reasons, and the sparse keys-only indexes of infra/resources.yaml. What DynamoDB
refuses as invalid (an undefined or unused placeholder, a reserved word, a key attribute in an
update, two operations on one item in a transaction...) becomes ``ServiceUnavailable`` as
``Table`` turns every ValidationException into one; an expression this evaluator does not know
raises ``ValueError``, never passes silently.

Tests install it with ``dynamo.install(MemoryTable())``; production code never imports it.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from decimal import Context, Decimal
from typing import Any, Callable, Iterator

from chalicelib import clock as broker_clock
from chalicelib.errors import ServiceUnavailable
from chalicelib.store.dynamo import ConditionFailed, _native, retry_lost_races

log = logging.getLogger(__name__)

# The global secondary indexes of infra/resources.yaml: name -> (hash key, range key or None).
# Both are keys-only: a query answers the table's keys and the index's keys, nothing else.
INDEXES: dict[str, tuple[str, str | None]] = {
    "users": ("list_pk", "list_sk"),
    "user_email": ("email_key", None),
}
KEYS = ("pk", "sk")
MAX_PARTITION_KEY_BYTES = 2048
MAX_SORT_KEY_BYTES = 1024
MAX_ITEM_BYTES = 400 * 1024
MAX_TRANSACTION_ITEMS = 100

# DynamoDB's reserved words: unescaped in an expression, the request is refused.
_RESERVED = frozenset((
    "ABORT ABSOLUTE ACTION ADD AFTER AGENT AGGREGATE ALL ALLOCATE ALTER ANALYZE AND ANY ARCHIVE ARE "
    "ARRAY AS ASC ASCII ASENSITIVE ASSERTION ASYMMETRIC AT ATOMIC ATTACH ATTRIBUTE AUTH "
    "AUTHORIZATION AUTHORIZE AUTO AVG BACK BACKUP BASE BATCH BEFORE BEGIN BETWEEN BIGINT BINARY BIT "
    "BLOB BLOCK BOOLEAN BOTH BREADTH BUCKET BULK BY BYTE CALL CALLED CALLING CAPACITY CASCADE "
    "CASCADED CASE CAST CATALOG CHAR CHARACTER CHECK CLASS CLOB CLOSE CLUSTER CLUSTERED CLUSTERING "
    "CLUSTERS COALESCE COLLATE COLLATION COLLECTION COLUMN COLUMNS COMBINE COMMENT COMMIT COMPACT "
    "COMPILE COMPRESS CONDITION CONFLICT CONNECT CONNECTION CONSISTENCY CONSISTENT CONSTRAINT "
    "CONSTRAINTS CONSTRUCTOR CONSUMED CONTINUE CONVERT COPY CORRESPONDING COUNT COUNTER CREATE "
    "CROSS CUBE CURRENT CURSOR CYCLE DATA DATABASE DATE DATETIME DAY DEALLOCATE DEC DECIMAL DECLARE "
    "DEFAULT DEFERRABLE DEFERRED DEFINE DEFINED DEFINITION DELETE DELIMITED DEPTH DEREF DESC "
    "DESCRIBE DESCRIPTOR DETACH DETERMINISTIC DIAGNOSTICS DIRECTORIES DISABLE DISCONNECT DISTINCT "
    "DISTRIBUTE DO DOMAIN DOUBLE DROP DUMP DURATION DYNAMIC EACH ELEMENT ELSE ELSEIF EMPTY ENABLE "
    "END EQUAL EQUALS ERROR ESCAPE ESCAPED EVAL EVALUATE EXCEEDED EXCEPT EXCEPTION EXCEPTIONS "
    "EXCLUSIVE EXEC EXECUTE EXISTS EXIT EXPLAIN EXPLODE EXPORT EXPRESSION EXTENDED EXTERNAL EXTRACT "
    "FAIL FALSE FAMILY FETCH FIELDS FILE FILTER FILTERING FINAL FINISH FIRST FIXED FLATTERN FLOAT "
    "FOR FORCE FOREIGN FORMAT FORWARD FOUND FREE FROM FULL FUNCTION FUNCTIONS GENERAL GENERATE GET "
    "GLOB GLOBAL GO GOTO GRANT GREATER GROUP GROUPING HANDLER HASH HAVE HAVING HEAP HIDDEN HOLD "
    "HOUR IDENTIFIED IDENTITY IF IGNORE IMMEDIATE IMPORT IN INCLUDING INCLUSIVE INCREMENT "
    "INCREMENTAL INDEX INDEXED INDEXES INDICATOR INFINITE INITIALLY INLINE INNER INNTER INOUT INPUT "
    "INSENSITIVE INSERT INSTEAD INT INTEGER INTERSECT INTERVAL INTO INVALIDATE IS ISOLATION ITEM "
    "ITEMS ITERATE JOIN KEY KEYS LAG LANGUAGE LARGE LAST LATERAL LEAD LEADING LEAVE LEFT LENGTH "
    "LESS LEVEL LIKE LIMIT LIMITED LINES LIST LOAD LOCAL LOCALTIME LOCALTIMESTAMP LOCATION LOCATOR "
    "LOCK LOCKS LOG LOGED LONG LOOP LOWER MAP MATCH MATERIALIZED MAX MAXLEN MEMBER MERGE METHOD "
    "METRICS MIN MINUS MINUTE MISSING MOD MODE MODIFIES MODIFY MODULE MONTH MULTI MULTISET NAME "
    "NAMES NATIONAL NATURAL NCHAR NCLOB NEW NEXT NO NONE NOT NULL NULLIF NUMBER NUMERIC OBJECT OF "
    "OFFLINE OFFSET OLD ON ONLINE ONLY OPAQUE OPEN OPERATOR OPTION OR ORDER ORDINALITY OTHER OTHERS "
    "OUT OUTER OUTPUT OVER OVERLAPS OVERRIDE OWNER PAD PARALLEL PARAMETER PARAMETERS PARTIAL "
    "PARTITION PARTITIONED PARTITIONS PATH PERCENT PERCENTILE PERMISSION PERMISSIONS PIPE PIPELINED "
    "PLAN POOL POSITION PRECISION PREPARE PRESERVE PRIMARY PRIOR PRIVATE PRIVILEGES PROCEDURE "
    "PROCESSED PROJECT PROJECTION PROPERTY PROVISIONING PUBLIC PUT QUERY QUIT QUORUM RAISE RANDOM "
    "RANGE RANK RAW READ READS REAL REBUILD RECORD RECURSIVE REDUCE REF REFERENCE REFERENCES "
    "REFERENCING REGEXP REGION REINDEX RELATIVE RELEASE REMAINDER RENAME REPEAT REPLACE REQUEST "
    "RESET RESIGNAL RESOURCE RESPONSE RESTORE RESTRICT RESULT RETURN RETURNING RETURNS REVERSE "
    "REVOKE RIGHT ROLE ROLES ROLLBACK ROLLUP ROUTINE ROW ROWS RULE RULES SAMPLE SATISFIES SAVE "
    "SAVEPOINT SCAN SCHEMA SCOPE SCROLL SEARCH SECOND SECTION SEGMENT SEGMENTS SELECT SELF SEMI "
    "SENSITIVE SEPARATE SEQUENCE SERIALIZABLE SESSION SET SETS SHARD SHARE SHARED SHORT SHOW SIGNAL "
    "SIMILAR SIZE SKEWED SMALLINT SNAPSHOT SOME SOURCE SPACE SPACES SPARSE SPECIFIC SPECIFICTYPE "
    "SPLIT SQL SQLCODE SQLERROR SQLEXCEPTION SQLSTATE SQLWARNING START STATE STATIC STATUS STORAGE "
    "STORE STORED STREAM STRING STRUCT STYLE SUB SUBMULTISET SUBPARTITION SUBSTRING SUBTYPE SUM "
    "SUPER SYMMETRIC SYNONYM SYSTEM TABLE TABLESAMPLE TEMP TEMPORARY TERMINATED TEXT THAN THEN "
    "THROUGHPUT TIME TIMESTAMP TIMEZONE TINYINT TO TOKEN TOTAL TOUCH TRAILING TRANSACTION TRANSFORM "
    "TRANSLATE TRANSLATION TREAT TRIGGER TRIM TRUE TRUNCATE TTL TUPLE TYPE UNDER UNDO UNION UNIQUE "
    "UNIT UNKNOWN UNLOGGED UNNEST UNPROCESSED UNSIGNED UNTIL UPDATE UPPER URL USAGE USE USER USERS "
    "USING UUID VACUUM VALUE VALUED VALUES VARCHAR VARIABLE VARIANCE VARINT VARYING VIEW VIEWS "
    "VIRTUAL VOID WAIT WHEN WHENEVER WHERE WHILE WINDOW WITH WITHIN WITHOUT WORK WRAPPED WRITE YEAR "
    "ZONE "
).split())

_MISSING = object()
_NUMBERS = Context(prec=38)  # DynamoDB's number precision


VALIDATION = "ValidationException"


def _invalid(message: str) -> ServiceUnavailable:
    """What DynamoDB refuses with a ValidationException, as ``Table`` reports it: a 503."""
    log.error("dynamodb call failed: ValidationException %s", message[:200])
    exc = ServiceUnavailable("A dependency is temporarily unavailable")
    exc.cause = VALIDATION
    exc.add_note(f"MemoryTable: DynamoDB would refuse this: {message}")
    return exc


# --- values ----------------------------------------------------------------------------------

def _stored(value: Any) -> Any:
    """A value as DynamoDB keeps it (numbers as Decimal, sets as sets), in new containers."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float, Decimal)):
        number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
        if not number.is_finite():
            raise TypeError("Infinity and NaN not supported")
        return number
    if isinstance(value, dict):
        return {k: _stored(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_stored(v) for v in value]
    if isinstance(value, (set, frozenset)):
        if any(isinstance(v, float) for v in value):   # dynamo.py's ``_plain`` leaves them be
            raise TypeError("Float types are not supported. Use Decimal types instead.")
        members = {_stored(v) for v in value}
        if not members:
            raise _invalid("a set may not be empty")
        if not (all(isinstance(m, str) for m in members)
                or all(isinstance(m, Decimal) for m in members)):
            raise TypeError(f"a set must hold only strings or only numbers: {value!r}")
        return members
    raise TypeError(f"Unsupported type {type(value)} for value {value!r}")


def _stored_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _stored(v) for k, v in item.items() if v is not None}  # like to_dynamo


def _out(item: dict[str, Any]) -> dict[str, Any]:
    """What dynamo.py's ``from_dynamo`` would give back: a deep copy, sets as sorted lists."""
    return {k: _native(v) for k, v in item.items()}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, str):
        return "S"
    if isinstance(value, Decimal):
        return "N"
    if value is None:
        return "NULL"
    if isinstance(value, dict):
        return "M"
    if isinstance(value, list):
        return "L"
    if isinstance(value, set):
        return "SS" if all(isinstance(m, str) for m in value) else "NS"
    raise TypeError(f"not a stored value: {value!r}")


def _equal(a: Any, b: Any) -> bool:
    """DynamoDB's ``=``: values of different types are never equal; maps compare by value."""
    if a is _MISSING or b is _MISSING or _kind(a) != _kind(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _ordered(a: Any, b: Any) -> bool:
    """Whether ``<`` and friends apply: two strings or two numbers (else the comparison is false)."""
    return a is not _MISSING and b is not _MISSING and _kind(a) == _kind(b) and _kind(a) in "SN"


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": _equal,
    "<>": lambda a, b: not _equal(a, b),
    "<": lambda a, b: _ordered(a, b) and a < b,
    "<=": lambda a, b: _ordered(a, b) and a <= b,
    ">": lambda a, b: _ordered(a, b) and a > b,
    ">=": lambda a, b: _ordered(a, b) and a >= b,
}


def _size(value: Any) -> int:
    """DynamoDB's item-size arithmetic, closely enough for its 400 KB limit."""
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, Decimal):
        return len(value.as_tuple().digits) // 2 + 2
    if isinstance(value, dict):
        return 3 + sum(len(k.encode("utf-8")) + _size(v) + 1 for k, v in value.items())
    if isinstance(value, list):
        return 3 + sum(_size(v) + 1 for v in value)
    if isinstance(value, set):
        return sum(_size(v) for v in value)
    return 1


def _check_key_value(attribute: str, value: Any, limit: int) -> None:
    if not isinstance(value, str) or not value:
        raise _invalid(f"key attribute {attribute} must be a non-empty string: {value!r}")
    if len(value.encode("utf-8")) > limit:
        raise _invalid(f"key attribute {attribute} is longer than {limit} bytes")


def _key(pk: Any, sk: Any) -> tuple[str, str]:
    _check_key_value("pk", pk, MAX_PARTITION_KEY_BYTES)
    _check_key_value("sk", sk, MAX_SORT_KEY_BYTES)
    return pk, sk


def _key_of(key: Any) -> tuple[str, str]:
    if not isinstance(key, dict) or set(key) != set(KEYS):
        raise _invalid(f"the provided key element does not match the schema: {key!r}")
    return _key(key["pk"], key["sk"])


def _check_item(item: dict[str, Any]) -> None:
    _key(item.get("pk"), item.get("sk"))
    for hash_key, range_key in INDEXES.values():
        for attribute, limit in ((hash_key, MAX_PARTITION_KEY_BYTES),
                                 (range_key, MAX_SORT_KEY_BYTES)):
            if attribute is not None and attribute in item:
                _check_key_value(attribute, item[attribute], limit)
    size = sum(len(k.encode("utf-8")) + _size(v) for k, v in item.items())
    if size > MAX_ITEM_BYTES:
        raise _invalid(f"item size {size} has exceeded the maximum allowed size")


# --- expressions -----------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(?P<name>#[A-Za-z0-9_]+)|(?P<value>:[A-Za-z0-9_]+)"
                    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*)|(?P<op><>|<=|>=|=|<|>|\(|\)|,|\+|-|\.))")
_CLAUSES = ("SET", "REMOVE", "ADD", "DELETE")


def _tokens(text: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    position, end = 0, len(text.rstrip())
    while position < end:
        match = _TOKEN.match(text, position)
        # A match that moved on matched one of the named alternatives, so ``lastgroup`` is set.
        if match is None or match.end() == position or match.lastgroup is None:
            raise ValueError(f"MemoryTable cannot parse {text[position:]!r} in {text!r}")
        found.append((match.lastgroup, match.group(match.lastgroup)))
        position = match.end()
    return found


class _Scope:
    """One request's placeholders; DynamoDB refuses undefined ones and unused ones."""

    def __init__(self, names: dict[str, Any] | None, values: dict[str, Any] | None):
        names, values = names or {}, values or {}
        if any(not isinstance(k, str) or not k.startswith("#") for k in names):
            raise _invalid(f"ExpressionAttributeNames contains an invalid key: {list(names)}")
        if any(not isinstance(k, str) or not k.startswith(":") for k in values):
            raise _invalid(f"ExpressionAttributeValues contains an invalid key: {list(values)}")
        self.names: dict[str, str] = dict(names)
        self.values = _stored_item(values)
        self.used_names: set[str] = set()
        self.used_values: set[str] = set()

    def name(self, placeholder: str) -> str:
        if placeholder not in self.names:
            raise _invalid(f"an expression attribute name used is not defined: {placeholder}")
        self.used_names.add(placeholder)
        return self.names[placeholder]

    def value(self, placeholder: str) -> Any:
        if placeholder not in self.values:
            raise _invalid(f"an expression attribute value used is not defined: {placeholder}")
        self.used_values.add(placeholder)
        return self.values[placeholder]

    def check_all_used(self) -> None:
        unused_names = set(self.names) - self.used_names
        unused_values = set(self.values) - self.used_values
        if unused_names:
            raise _invalid(f"ExpressionAttributeNames unused in expressions: {sorted(unused_names)}")
        if unused_values:
            raise _invalid(f"ExpressionAttributeValues unused in expressions: {sorted(unused_values)}")


Condition = Callable[[dict[str, Any]], bool]
Operand = Callable[[dict[str, Any]], Any]
Path = tuple[str, ...]  # an attribute, then the keys of the maps inside it


def _lookup(item: dict[str, Any], path: Path) -> Any:
    value: Any = item
    for segment in path:
        if not isinstance(value, dict) or segment not in value:
            return _MISSING
        value = value[segment]
    return value


def _assign(item: dict[str, Any], path: Path, value: Any) -> None:
    """Set (or, with ``_MISSING``, remove) ``path`` in ``item``, copying the maps on the way:
    stored values are never changed in place."""
    node = item
    for segment in path[:-1]:
        child = node.get(segment)
        if not isinstance(child, dict):
            raise _invalid("the document path provided in the update expression is invalid "
                           "for update")
        node[segment] = node = dict(child)
    if value is _MISSING:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value


def _overlap(a: Path, b: Path) -> bool:
    return a[:len(b)] == b[:len(a)]


def _project(source: dict[str, Any], paths: list[Path]) -> dict[str, Any]:
    """The values at ``paths`` in ``source``, in maps shaped like it (UPDATED_NEW/OLD)."""
    found: dict[str, Any] = {}
    for path in paths:
        value = _lookup(source, path)
        if value is not _MISSING:
            node = found
            for segment in path[:-1]:
                node = node.setdefault(segment, {})
            node[path[-1]] = value
    return found


class _Parser:
    def __init__(self, text: str, scope: _Scope):
        self.text = text
        self.scope = scope
        self.tokens = _tokens(text)
        self.at = 0

    # tokens

    def _peek(self, offset: int = 0) -> tuple[str | None, str | None]:
        index = self.at + offset
        return self.tokens[index] if index < len(self.tokens) else (None, None)

    def _take(self) -> tuple[str, str]:
        if self.at >= len(self.tokens):
            raise ValueError(f"MemoryTable: {self.text!r} ends too early")
        self.at += 1
        return self.tokens[self.at - 1]

    def _expect(self, op: str) -> None:
        kind, text = self._take()
        if (kind, text) != ("op", op):
            raise ValueError(f"MemoryTable: expected {op!r}, found {text!r} in {self.text!r}")

    def _keyword(self, word: str) -> bool:
        kind, text = self._peek()
        if kind == "word" and text is not None and text.upper() == word:
            self.at += 1
            return True
        return False

    def _fail(self, what: str) -> ValueError:
        kind, text = self._peek()
        return ValueError(f"MemoryTable does not support {what} (at {text!r}) in {self.text!r}")

    def _finish(self) -> None:
        if self.at != len(self.tokens):
            raise self._fail("this syntax")

    # paths and operands

    def _path(self) -> Path:
        """``a``, ``#a`` or a path into maps (``a.#b.c``); list elements (``a[0]``) are not
        supported."""
        segments = [self._segment()]
        while self._peek() == ("op", "."):
            self.at += 1
            segments.append(self._segment())
        if self._peek() == ("op", "("):
            raise self._fail("a function here")
        return tuple(segments)

    def _segment(self) -> str:
        kind, text = self._take()
        if kind == "name":
            return self.scope.name(text)
        if kind == "word" and self._peek() != ("op", "("):
            if text.upper() in _RESERVED:
                raise _invalid(f"attribute name is a reserved keyword: {text}")
            return text
        self.at -= 1
        raise self._fail("this attribute path")

    def _operand(self) -> Operand:
        if self._peek()[0] == "value":
            _, placeholder = self._take()
            value = self.scope.value(placeholder)
            return lambda item: value
        path = self._path()
        return lambda item: _lookup(item, path)

    # conditions: OR < AND < NOT < comparison, function, parentheses

    def condition(self) -> Condition:
        found = self._or()
        self._finish()
        return found

    def _or(self) -> Condition:
        left = self._and()
        while self._keyword("OR"):
            right = self._and()
            left = (lambda a, b: lambda item: a(item) or b(item))(left, right)
        return left

    def _and(self) -> Condition:
        left = self._not()
        while self._keyword("AND"):
            right = self._not()
            left = (lambda a, b: lambda item: a(item) and b(item))(left, right)
        return left

    def _not(self) -> Condition:
        if self._keyword("NOT"):
            inner = self._not()
            return lambda item: not inner(item)
        return self._primary()

    def _primary(self) -> Condition:
        if self._peek() == ("op", "("):
            self.at += 1
            inner = self._or()
            self._expect(")")
            return inner
        kind, text = self._peek()
        if kind == "word" and self._peek(1) == ("op", "("):
            return self._function()
        left = self._operand()
        kind, op = self._peek()
        if kind == "op" and op in _COMPARE:
            self.at += 1
            right = self._operand()
            compare = _COMPARE[op]
            return lambda item: compare(left(item), right(item))
        raise self._fail("this condition")

    def _function(self) -> Condition:
        _, name = self._take()
        self._expect("(")
        if name in ("attribute_exists", "attribute_not_exists"):
            path = self._path()
            self._expect(")")
            if name == "attribute_exists":
                return lambda item: _lookup(item, path) is not _MISSING
            return lambda item: _lookup(item, path) is _MISSING
        if name == "begins_with":
            whole = self._operand()
            self._expect(",")
            prefix = self._operand()
            self._expect(")")

            def begins_with(item: dict[str, Any]) -> bool:
                a, b = whole(item), prefix(item)
                return isinstance(a, str) and isinstance(b, str) and a.startswith(b)
            return begins_with
        self.at -= 2
        raise self._fail(f"the function {name}()")

    # update expressions

    def update(self) -> _Update:
        update = _Update()
        while self.at < len(self.tokens):
            kind, word = self._take()
            clause = word.upper() if kind == "word" else None
            if clause not in _CLAUSES:
                self.at -= 1
                raise self._fail("this update clause")
            if clause in update.clauses:
                raise _invalid(f'the "{clause}" section can only be used once')
            update.clauses.add(clause)
            while True:
                attribute = self._path()
                if attribute[0] in KEYS:
                    raise _invalid(f"cannot update attribute {attribute[0]}: part of the key")
                if any(_overlap(attribute, other) for other in update.paths):
                    raise _invalid(f"two document paths overlap: {'.'.join(attribute)}")
                if clause in ("ADD", "DELETE") and len(attribute) > 1:
                    raise _invalid(f"{clause} applies to top-level attributes only")
                update.paths.append(attribute)
                if clause == "SET":
                    self._expect("=")
                    update.actions.append((clause, attribute, self._set_value()))
                elif clause == "REMOVE":
                    update.actions.append((clause, attribute, None))
                else:
                    kind, text = self._take()
                    if kind != "value":
                        self.at -= 1
                        raise self._fail(f"{clause} with an operand other than a :value")
                    update.actions.append((clause, attribute, self.scope.value(text)))
                if self._peek() != ("op", ","):
                    break
                self.at += 1
        if not update.actions:
            raise _invalid("the update expression can not be empty")
        return update

    def _set_value(self) -> Operand:
        left = self._set_term()
        kind, op = self._peek()
        if (kind, op) in (("op", "+"), ("op", "-")):
            self.at += 1
            right = self._set_term()

            def arithmetic(item: dict[str, Any]) -> Any:
                a, b = left(item), right(item)
                if a is _MISSING or b is _MISSING:
                    raise _invalid("the provided expression refers to an attribute that does "
                                   "not exist in the item")
                if _kind(a) != "N" or _kind(b) != "N":
                    raise _invalid("an operand in the update expression has an incorrect data type")
                return _NUMBERS.add(a, b) if op == "+" else _NUMBERS.subtract(a, b)
            return arithmetic
        return left

    def _set_term(self) -> Operand:
        kind, text = self._peek()
        if kind == "word" and self._peek(1) == ("op", "("):
            if text != "if_not_exists":
                raise self._fail(f"the function {text}()")
            self.at += 2
            path = self._path()
            self._expect(",")
            default = self._set_term()
            self._expect(")")

            def if_not_exists(item: dict[str, Any]) -> Any:
                found = _lookup(item, path)
                return default(item) if found is _MISSING else found
            return if_not_exists
        return self._operand()


class _Update:
    """A parsed update expression; :meth:`apply` reads only the item as it was before."""

    def __init__(self) -> None:
        self.clauses: set[str] = set()
        self.paths: list[Path] = []
        self.actions: list[tuple[str, Path, Any]] = []

    def apply(self, old: dict[str, Any] | None, key: tuple[str, str]) -> dict[str, Any]:
        before = old or {"pk": key[0], "sk": key[1]}
        after = dict(before)  # stored values are never changed in place, only replaced
        for clause, attribute, operand in self.actions:
            if clause == "SET":
                value = operand(before)
                if value is _MISSING:
                    raise _invalid("the provided expression refers to an attribute that does not "
                                   "exist in the item")
                _assign(after, attribute, value)
            elif clause == "REMOVE":
                _assign(after, attribute, _MISSING)
            elif clause == "ADD":
                (name,) = attribute
                current = before.get(name, _MISSING)
                if _kind(operand) not in ("N", "SS", "NS") or (
                        current is not _MISSING and _kind(current) != _kind(operand)):
                    raise _invalid(f"an operand in the update expression has an incorrect data "
                                   f"type (ADD {name})")
                if current is _MISSING:
                    after[name] = set(operand) if isinstance(operand, set) else operand
                elif isinstance(operand, set):
                    after[name] = current | operand
                else:
                    after[name] = _NUMBERS.add(current, operand)
            else:  # DELETE
                (name,) = attribute
                current = before.get(name, _MISSING)
                if _kind(operand) not in ("SS", "NS") or (
                        current is not _MISSING and _kind(current) != _kind(operand)):
                    raise _invalid(f"an operand in the update expression has an incorrect data "
                                   f"type (DELETE {name})")
                if current is not _MISSING:
                    left = current - operand
                    if left:
                        after[name] = left
                    else:
                        after.pop(name, None)
        _check_item(after)
        return after


def _compile(condition: str | None = None, names: dict[str, Any] | None = None,
             values: dict[str, Any] | None = None, update: str | None = None
             ) -> tuple[Condition | None, _Update | None]:
    scope = _Scope(names, values)
    parsed_update = _Parser(update, scope).update() if update is not None else None
    parsed_condition = _Parser(condition, scope).condition() if condition else None
    scope.check_all_used()
    return parsed_condition, parsed_update


def _holds(condition: Condition | None, item: dict[str, Any] | None) -> bool:
    return condition is None or bool(condition(item or {}))


# --- the table -------------------------------------------------------------------------------

_TRANSACT_FIELDS = {
    "Put": ({"Item"}, {"ConditionExpression"}),
    "Update": ({"Key", "UpdateExpression"}, {"ConditionExpression"}),
    "Delete": ({"Key"}, {"ConditionExpression"}),
    "ConditionCheck": ({"Key", "ConditionExpression"}, set()),
}
_PLACEHOLDERS = {"ExpressionAttributeNames", "ExpressionAttributeValues", "TableName"}
_RETURN_VALUES = ("ALL_NEW", "ALL_OLD", "UPDATED_NEW", "UPDATED_OLD", "NONE")


class MemoryTable:
    """:class:`chalicelib.store.dynamo.Table`'s methods and semantics, held in this process.

    One lock serialises every call, so of concurrent conditional writes exactly one wins. With
    one lock no transaction ever meets another one on an item, as DynamoDB's do; the test hook
    :meth:`conflict_next` cancels transactions with ``TransactionConflict`` instead."""

    indexes = INDEXES

    def __init__(self, clock: Callable[[], float] | None = None,
                 sleep: Callable[[float], None] = time.sleep, *, name: str = "memory"):
        self.name = name
        self.clock = clock if clock is not None else broker_clock.now
        self.sleep = sleep
        self._partitions: dict[str, dict[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._conflicts = 0

    # test hooks

    def conflict_next(self, count: int = 1) -> None:
        """Cancel the next ``count`` transaction attempts as DynamoDB cancels one that met a
        concurrent transaction on an item: reasons ``TransactionConflict`` (first item) and
        ``None`` (the others), nothing written."""
        with self._lock:
            self._conflicts += count

    def dump(self) -> list[dict[str, Any]]:
        """Every stored item, expired ones included, in key order (what TTL has not deleted)."""
        with self._lock:
            return [_out(self._partitions[pk][sk]) for pk in sorted(self._partitions)
                    for sk in sorted(self._partitions[pk])]

    # reads

    def _alive(self, item: dict[str, Any] | None) -> dict[str, Any] | None:
        if item is None:
            return None
        expiry = item.get("ttl")
        if expiry is not None and expiry <= self.clock():
            return None
        return item

    def _stored(self, key: tuple[str, str]) -> dict[str, Any] | None:
        return self._partitions.get(key[0], {}).get(key[1])

    def _write(self, key: tuple[str, str], item: dict[str, Any] | None) -> None:
        if item is not None:
            self._partitions.setdefault(key[0], {})[key[1]] = item
            return
        partition = self._partitions.get(key[0], {})
        partition.pop(key[1], None)
        if not partition:
            self._partitions.pop(key[0], None)

    def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        key = _key(pk, sk)
        with self._lock:
            item = self._stored(key)
            found = _out(item) if item is not None else None
        return self._alive(found)

    def batch_get(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        distinct = [_key(pk, sk) for pk, sk in dict.fromkeys(keys)]
        with self._lock:
            found = {key: _out(item) for key in distinct
                     if (item := self._stored(key)) is not None}
        return {key: item for key, item in found.items() if self._alive(item) is not None}

    def query(self, pk: str, *, sk_prefix: str | None = None, after: str | None = None,
              before: str | None = None, descending: bool = False,
              page_size: int | None = None) -> Iterator[dict[str, Any]]:
        _check_key_value("pk", pk, MAX_PARTITION_KEY_BYTES)
        with self._lock:
            partition = self._partitions.get(pk, {})
            found = [_out(partition[sk]) for sk in sorted(partition, reverse=descending)
                     if (not sk_prefix or sk.startswith(sk_prefix))
                     and (sk_prefix or after is None or sk > after)
                     and (sk_prefix or after is not None or before is None or sk < before)]
        for item in found:
            if self._alive(item) is not None:
                yield item

    def query_index(self, index: str, key: str, value: str, *, range_key: str | None = None,
                    before: str | None = None, descending: bool = False,
                    page_size: int | None = None) -> Iterator[dict[str, Any]]:
        if index not in INDEXES:
            raise _invalid(f"the table does not have the specified index: {index}")
        hash_key, index_range = INDEXES[index]
        if key != hash_key:
            raise _invalid(f"query condition missed key schema element: {hash_key}")
        if before is not None and range_key and range_key != index_range:
            raise _invalid(f"query key condition not supported: {range_key}")
        _check_key_value(hash_key, value, MAX_PARTITION_KEY_BYTES)
        projected = [a for a in (*KEYS, hash_key, index_range) if a is not None]
        with self._lock:
            found = [_out({a: item[a] for a in projected})
                     for partition in self._partitions.values() for item in partition.values()
                     if item.get(hash_key) == value and (index_range is None or index_range in item)
                     and (before is None or not index_range or item[index_range] < before)]
        found.sort(key=lambda item: (item.get(index_range, "") if index_range else "",
                                     item["pk"], item["sk"]), reverse=descending)
        for item in found:
            if self._alive(item) is not None:
                yield item

    # writes

    def put(self, item: dict[str, Any], *, condition: str | None = None, names: dict[str, Any] | None = None,
            values: dict[str, Any] | None = None) -> None:
        stored = _stored_item(item)
        _check_item(stored)
        key = (stored["pk"], stored["sk"])
        check, _ = _compile(condition, names, values)
        with self._lock:
            if not _holds(check, self._stored(key)):
                raise ConditionFailed()
            self._write(key, stored)

    def put_new(self, item: dict[str, Any]) -> None:
        """Create an item that must not exist yet (or only as an expired leftover)."""
        self.put(item, condition="attribute_not_exists(pk) OR #ttl <= :now",
                 names={"#ttl": "ttl"}, values={":now": int(self.clock())})

    def update(self, pk: str, sk: str, expression: str, *, condition: str | None = None,
               names: dict[str, Any] | None = None, values: dict[str, Any] | None = None,
               return_values: str = "ALL_NEW") -> dict[str, Any] | None:
        key = _key(pk, sk)
        if return_values not in _RETURN_VALUES:
            raise _invalid(f"ReturnValues {return_values!r} is not valid")
        check, update = _compile(condition, names, values, update=expression)
        assert update is not None  # an expression parses to an _Update or raises
        with self._lock:
            old = self._stored(key)
            if not _holds(check, old):
                raise ConditionFailed()
            new = update.apply(old, key)
            self._write(key, new)
            if return_values == "NONE":
                return None
            if return_values in ("UPDATED_NEW", "UPDATED_OLD"):
                source = new if return_values == "UPDATED_NEW" else (old or {})
                answer: dict[str, Any] | None = _project(source, update.paths)
            else:
                answer = new if return_values == "ALL_NEW" else old
            return _out(answer) if answer else None

    def delete(self, pk: str, sk: str, *, condition: str | None = None,
               names: dict[str, Any] | None = None, values: dict[str, Any] | None = None,
               return_old: bool = False) -> dict[str, Any] | None:
        key = _key(pk, sk)
        check, _ = _compile(condition, names, values)
        with self._lock:
            old = self._stored(key)
            if not _holds(check, old):
                raise ConditionFailed()
            self._write(key, None)
            return _out(old) if return_old and old else None

    def transact(self, operations: list[dict[str, Any]], *, conflict_retries: int = 0) -> None:
        """As :meth:`Table.transact`: all-or-nothing, sent again after a short jittered pause
        up to ``conflict_retries`` times when cancelled only by a concurrent transaction."""
        retry_lost_races(lambda: self._transact_once(operations), conflict_retries, self.sleep)

    def _transact_once(self, operations: list[dict[str, Any]]) -> None:
        if not 1 <= len(operations) <= MAX_TRANSACTION_ITEMS:
            raise _invalid(f"a transaction holds 1 to {MAX_TRANSACTION_ITEMS} items, "
                           f"not {len(operations)}")
        plans = []
        seen: set[tuple[str, str]] = set()
        for op in operations:
            (kind, body), = op.items()
            if kind not in _TRANSACT_FIELDS:
                raise _invalid(f"unknown transaction item {kind!r}")
            required, optional = _TRANSACT_FIELDS[kind]
            if "ReturnValuesOnConditionCheckFailure" in body:
                raise ValueError("MemoryTable does not support ReturnValuesOnConditionCheckFailure")
            if not required <= set(body) or set(body) - required - optional - _PLACEHOLDERS:
                raise _invalid(f"{kind} needs {sorted(required)}, got {sorted(body)}")
            item = None
            if kind == "Put":
                item = _stored_item(body["Item"])
                _check_item(item)
                key = (item["pk"], item["sk"])
            else:
                key = _key_of(body["Key"])
            if key in seen:
                raise _invalid("transaction request cannot include multiple operations on one item")
            seen.add(key)
            check, update = _compile(body.get("ConditionExpression"),
                                     body.get("ExpressionAttributeNames"),
                                     body.get("ExpressionAttributeValues"),
                                     update=body.get("UpdateExpression"))
            plans.append((kind, key, item, check, update))
        with self._lock:
            if self._conflicts:
                self._conflicts -= 1
                raise ConditionFailed(["TransactionConflict"] + ["None"] * (len(plans) - 1))
            reasons, writes = [], []
            for kind, key, item, check, update in plans:
                old = self._stored(key)
                if not _holds(check, old):
                    reasons.append("ConditionalCheckFailed")
                    continue
                reason = "None"
                if kind == "Put":
                    writes.append((key, item))
                elif kind == "Delete":
                    writes.append((key, None))
                elif kind == "Update":
                    assert update is not None  # "UpdateExpression" is a required field
                    try:
                        writes.append((key, update.apply(old, key)))
                    except ServiceUnavailable:
                        reason = "ValidationError"
                reasons.append(reason)
            if "ConditionalCheckFailed" in reasons:
                raise ConditionFailed(reasons)
            if "ValidationError" in reasons:
                raise _invalid(f"transaction cancelled: {reasons}")
            for key, item in writes:
                self._write(key, item)
