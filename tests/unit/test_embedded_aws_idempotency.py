"""The embedded AWS endpoint answers a repeated TransactWriteItems (same ClientRequestToken, as
botocore sends on its own retries) the way DynamoDB does: success, nothing changed. Without it a
retry after a client-side timeout fails on the conditions its first attempt already met."""
from __future__ import annotations

import uuid

import boto3
import pytest
from botocore.config import Config


@pytest.fixture()
def dynamodb(aws_endpoint):
    client = boto3.client("dynamodb", endpoint_url=aws_endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test",
                          config=Config(retries={"max_attempts": 1}))
    name = f"idem-{uuid.uuid4().hex[:8]}"
    client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    yield client, name
    client.delete_table(TableName=name)


def _put_if_absent(name: str, value: str) -> list[dict]:
    return [{"Put": {"TableName": name, "Item": {"pk": {"S": "once"}, "v": {"S": value}},
                     "ConditionExpression": "attribute_not_exists(pk)"}}]


def test_the_same_token_again_succeeds_and_changes_nothing(dynamodb):
    client, name = dynamodb
    token = uuid.uuid4().hex
    client.transact_write_items(TransactItems=_put_if_absent(name, "first"),
                                ClientRequestToken=token)
    client.transact_write_items(TransactItems=_put_if_absent(name, "first"),
                                ClientRequestToken=token)
    item = client.get_item(TableName=name, Key={"pk": {"S": "once"}}, ConsistentRead=True)["Item"]
    assert item["v"] == {"S": "first"}


def test_another_token_is_a_new_transaction_and_its_condition_fails(dynamodb):
    client, name = dynamodb
    client.transact_write_items(TransactItems=_put_if_absent(name, "first"),
                                ClientRequestToken=uuid.uuid4().hex)
    with pytest.raises(client.exceptions.TransactionCanceledException):
        client.transact_write_items(TransactItems=_put_if_absent(name, "second"),
                                    ClientRequestToken=uuid.uuid4().hex)


def test_the_same_token_with_other_writes_is_not_replayed(dynamodb):
    client, name = dynamodb
    token = uuid.uuid4().hex
    client.transact_write_items(TransactItems=_put_if_absent(name, "first"),
                                ClientRequestToken=token)
    with pytest.raises(client.exceptions.ClientError):
        client.transact_write_items(TransactItems=_put_if_absent(name, "other"),
                                    ClientRequestToken=token)
