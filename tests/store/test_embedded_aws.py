"""The embedded endpoint's query and scan shortcuts (scripts/embedded_aws.install_partition_query)
answer exactly what DynamoDB answers: random items in a table of their own, random queries (a
partition, a range condition, a filter, limits, both orders, paging, an index) and paged scans,
each checked against the answer computed here from the items themselves."""
from __future__ import annotations

import random
import secrets

import boto3
import pytest

BACKENDS = ("dynamodb",)
PARTITIONS = ("A", "B", "C", "D")
OWNERS = ("u1", "u2", "u3")


@pytest.fixture(scope="module")
def world(aws_endpoint):
    client = boto3.client("dynamodb", endpoint_url=aws_endpoint)
    name = f"query-check-{secrets.token_hex(4)}"
    client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"}
                              for a in ("pk", "sk", "owner", "at")],
        GlobalSecondaryIndexes=[{
            "IndexName": "by_owner", "Projection": {"ProjectionType": "ALL"},
            "KeySchema": [{"AttributeName": "owner", "KeyType": "HASH"},
                          {"AttributeName": "at", "KeyType": "RANGE"}]}])
    rng = random.Random(7)
    items = []
    for n in range(400):
        item = {"pk": rng.choice(PARTITIONS), "sk": f"{n:04d}", "n": rng.randrange(100)}
        if rng.random() < 0.4:  # a sparse index: only some items carry its keys
            item.update(owner=rng.choice(OWNERS), at=f"{rng.randrange(10 ** 6):07d}")
        items.append(item)
    for item in items:
        client.put_item(TableName=name, Item={
            k: ({"N": str(v)} if k == "n" else {"S": v}) for k, v in item.items()})
    yield client, name, items
    client.delete_table(TableName=name)


def _plain(item: dict) -> dict:
    return {k: (int(v["N"]) if "N" in v else v["S"]) for k, v in item.items()}


def _pages(operation: str, client, **request) -> tuple[list[dict], int]:
    """Every item of a paged ``query`` or ``scan``, and how many pages it took."""
    found, pages = [], 0
    while True:
        answer = getattr(client, operation)(**request)
        found += [_plain(i) for i in answer["Items"]]
        pages += 1
        if "LastEvaluatedKey" not in answer:
            return found, pages
        request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


@pytest.mark.parametrize("seed", range(12))
def test_table_queries_answer_what_the_items_say(world, seed):
    client, name, items = world
    rng = random.Random(seed)
    partition = rng.choice([*PARTITIONS, "nobody"])
    low, high = sorted(f"{rng.randrange(400):04d}" for _ in range(2))
    floor = rng.randrange(100)
    forward = rng.random() < 0.5
    limit = rng.choice([1, 3, 7, 50])

    found, pages = _pages(
        "query", client, TableName=name, ScanIndexForward=forward, Limit=limit,
        KeyConditionExpression="pk = :p AND sk BETWEEN :lo AND :hi",
        FilterExpression="n >= :floor",
        ExpressionAttributeValues={":p": {"S": partition}, ":lo": {"S": low},
                                   ":hi": {"S": high}, ":floor": {"N": str(floor)}})

    expected = sorted((i for i in items if i["pk"] == partition and low <= i["sk"] <= high
                       and i["n"] >= floor), key=lambda i: i["sk"], reverse=not forward)
    assert found == expected
    assert pages >= len(expected) // limit  # the answer came in pages of at most ``limit``


@pytest.mark.parametrize("seed", range(8))
def test_index_queries_answer_what_the_items_say(world, seed):
    client, name, items = world
    rng = random.Random(100 + seed)
    owner = rng.choice([*OWNERS, "nobody"])
    after = f"{rng.randrange(10 ** 6):07d}"
    forward = rng.random() < 0.5

    found, _ = _pages(
        "query", client, TableName=name, IndexName="by_owner", ScanIndexForward=forward,
        Limit=rng.choice([2, 5, 100]),
        KeyConditionExpression="#o = :o AND #a > :after",
        ExpressionAttributeNames={"#o": "owner", "#a": "at"},
        ExpressionAttributeValues={":o": {"S": owner}, ":after": {"S": after}})

    expected = sorted((i for i in items if i.get("owner") == owner and i["at"] > after),
                      key=lambda i: (i["at"], i["pk"], i["sk"]), reverse=not forward)
    assert [(i["at"], i["pk"], i["sk"]) for i in found] == \
        [(i["at"], i["pk"], i["sk"]) for i in expected]


def test_a_query_after_writes_sees_them(world):
    client, name, items = world
    client.put_item(TableName=name, Item={"pk": {"S": "fresh"}, "sk": {"S": "1"},
                                          "n": {"N": "1"}, "owner": {"S": "fresh-owner"},
                                          "at": {"S": "0000001"}})
    by_key = client.query(TableName=name, KeyConditionExpression="pk = :p",
                          ExpressionAttributeValues={":p": {"S": "fresh"}})["Items"]
    by_index = client.query(TableName=name, IndexName="by_owner",
                            KeyConditionExpression="#o = :o",
                            ExpressionAttributeNames={"#o": "owner"},
                            ExpressionAttributeValues={":o": {"S": "fresh-owner"}})["Items"]
    client.delete_item(TableName=name, Key={"pk": {"S": "fresh"}, "sk": {"S": "1"}})
    gone = client.query(TableName=name, KeyConditionExpression="pk = :p",
                        ExpressionAttributeValues={":p": {"S": "fresh"}})["Items"]

    assert [_plain(i)["sk"] for i in by_key] == ["1"]
    assert [_plain(i)["sk"] for i in by_index] == ["1"]
    assert gone == []



@pytest.mark.parametrize("limit", [1, 7, 64, 1000])
def test_a_paged_scan_returns_every_item_once(world, limit):
    client, name, items = world
    found, pages = _pages("scan", client, TableName=name, Limit=limit)
    keys = [(i["pk"], i["sk"]) for i in found]
    assert len(keys) == len(set(keys))
    assert sorted(keys) == sorted((i["pk"], i["sk"]) for i in items)
    assert pages >= len(items) // limit


def test_a_filtered_scan_returns_what_matches(world):
    client, name, items = world
    found, _ = _pages("scan", client, TableName=name, Limit=50,
                         FilterExpression="NOT begins_with(pk, :a) AND n < :ten",
                         ExpressionAttributeValues={":a": {"S": "A"}, ":ten": {"N": "10"}})
    assert sorted((i["pk"], i["sk"]) for i in found) == sorted(
        (i["pk"], i["sk"]) for i in items if i["pk"] != "A" and i["n"] < 10)


def test_a_scan_survives_writes_between_its_pages(world):
    """Items written or deleted between pages may or may not be seen (as in DynamoDB); every item
    left untouched is returned exactly once, also when the page's last item was deleted."""
    client, name, items = world
    request = {"TableName": name, "Limit": 37}
    first = client.scan(**request)
    seen = [_plain(i) for i in first["Items"]]
    last = first["LastEvaluatedKey"]
    client.delete_item(TableName=name, Key=last)  # the next page's start key is gone
    client.put_item(TableName=name, Item={"pk": {"S": "late"}, "sk": {"S": "1"},
                                          "n": {"N": "1"}})
    rest, _ = _pages("scan", client, ExclusiveStartKey=last, **request)
    client.delete_item(TableName=name, Key={"pk": {"S": "late"}, "sk": {"S": "1"}})
    restored = next(i for i in items if (i["pk"], i["sk"]) == (last["pk"]["S"], last["sk"]["S"]))
    client.put_item(TableName=name, Item={k: ({"N": str(v)} if k == "n" else {"S": v})
                                          for k, v in restored.items()})

    keys = [(i["pk"], i["sk"]) for i in seen + rest if i["pk"] != "late"]
    assert len(keys) == len(set(keys))
    untouched = {(i["pk"], i["sk"]) for i in items} - {(last["pk"]["S"], last["sk"]["S"])}
    assert untouched <= set(keys)
