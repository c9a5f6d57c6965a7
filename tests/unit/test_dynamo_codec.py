"""store.dynamo's typed-JSON codec against boto3's own TypeSerializer/TypeDeserializer (what it
replaced): the same typed JSON out, the same plain values back, the same errors."""
from __future__ import annotations

import base64
from collections import OrderedDict
from decimal import Decimal, Inexact, Rounded

import pytest
from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer

from chalicelib.store import dynamo


def _plain(value):
    """The conversion the store made before boto3's serializer (the old code, kept here)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def reference_to_dynamo(item: dict) -> dict:
    ser = TypeSerializer()
    return {k: ser.serialize(_plain(v)) for k, v in item.items() if v is not None}


def reference_from_dynamo(raw: dict) -> dict:
    de = TypeDeserializer()
    return {k: dynamo._native(de.deserialize(v)) for k, v in raw.items()}


ITEMS = [
    {"pk": "RT#abc", "sk": "RT", "ttl": 1_900_000_000, "scope": "openid profile"},
    {"n": 0, "neg": -17, "big": 10 ** 37, "small": -(10 ** 37) + 1, "flag": True, "off": False},
    {"f": 1.5, "tiny": 1e-07, "huge": 1.5e100, "third": 1 / 3, "whole": 2.0, "neg": -0.25},
    {"d": Decimal("1.10"), "di": Decimal("12"), "de": Decimal("1E+2")},
    {"gone": None, "kept": "x", "nested": {"a": None, "b": [None, 1, "two", 3.5]}},
    {"attributes": {"email": "a@example.com", "email_verified": True, "groups": ["a", "b"],
                    "age": 42, "score": 0.5, "deep": {"deeper": {"x": [1, [2, [3]]]}}}},
    {"empty_map": {}, "empty_list": [], "empty_string": ""},
    {"ss": {"b", "a", "c"}, "ns": {3, 1, 2}, "nsd": {Decimal("1.5"), Decimal("0.5")}},
    {"bin": b"\x00\x01raw", "binary": Binary(b"xyz")},
    {"tuple": ("a", 1), "ordered": OrderedDict([("z", 1.25), ("a", 2)])},
    {"unicode": "žluťoučký 🐎", "int_subclass": True},
]


@pytest.mark.parametrize("item", ITEMS)
def test_to_dynamo_writes_what_boto3_wrote(item):
    assert dynamo.to_dynamo(item) == reference_to_dynamo(item)


@pytest.mark.parametrize("item", ITEMS)
def test_from_dynamo_reads_what_boto3_read(item):
    raw = reference_to_dynamo(item)
    got = dynamo.from_dynamo(raw)
    assert got == reference_from_dynamo(raw)
    assert {k: type(v) for k, v in got.items()} == {
        k: type(v) for k, v in reference_from_dynamo(raw).items()}


@pytest.mark.parametrize("text", ["0", "-0", "7", "-7", "123456789012345678", "1234567890123456789",
                                  "99999999999999999999999999999999999999", "1.0", "1.50", "1E+2",
                                  "1e-7", "-2.5", "0.1", "3.14159265358979323846264338327950288"])
def test_numbers_read_back_alike(text):
    raw = {"n": {"N": text}, "ns": {"NS": [text, "4"]}}
    got = dynamo.from_dynamo(raw)
    want = reference_from_dynamo(raw)
    assert got == want
    assert type(got["n"]) is type(want["n"])


def test_binary_from_the_wire_as_base64_text_reads_as_binary():
    """The lean client hands over the JSON wire format, where binary is base64 text."""
    wire = {"b": {"B": base64.b64encode(b"\x00raw").decode()},
            "bs": {"BS": [base64.b64encode(b"one").decode()]}}
    assert dynamo.from_dynamo(wire) == reference_from_dynamo({"b": {"B": b"\x00raw"},
                                                             "bs": {"BS": [b"one"]}})


@pytest.mark.parametrize("value, error", [
    (10 ** 38, (Inexact, Rounded)), (float("nan"), TypeError), (float("inf"), TypeError),
    (object(), TypeError), ({1.5, 2.5}, TypeError)])
def test_what_boto3_refused_is_still_refused(value, error):
    with pytest.raises(error):
        reference_to_dynamo({"v": value})
    with pytest.raises(error):
        dynamo.to_dynamo({"v": value})
