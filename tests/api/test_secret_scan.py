"""SPEC §9: no log event and no log line of the whole test run holds a token, code, secret,
assertion or cookie. Ordered last in the run (``run_last``), so it reads what every other test
left: the log lines were checked as they were written (tests/support/secret_scan.py); here every
stored log event of the shared table is checked too."""
from __future__ import annotations

import json
import os
import secrets

import pytest

from tests.conftest import get_token
from tests.support import secret_scan

pytestmark = pytest.mark.run_last


def _stored_events() -> list[dict]:
    import boto3
    from botocore.config import Config

    from chalicelib.settings import get_settings

    dynamodb = boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                            region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
                            config=Config(read_timeout=120, retries={"max_attempts": 3}))
    kwargs = {"TableName": get_settings().table_name,
              "FilterExpression": "begins_with(pk, :logs)",
              "ExpressionAttributeValues": {":logs": {"S": "LOGS#"}}}
    items: list[dict] = []
    while True:
        page = dynamodb.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_no_credential_in_any_log_event_or_log_line_of_the_run(client, api):
    # Material of its own, so the scan never reads an empty table: a failed client
    # authentication with a secret of the run, and a Management API write carrying a secret.
    presented = secrets.token_urlsafe(32)
    refused = client.http.post(
        "/oauth/token", headers={"Content-Type": "application/x-www-form-urlencoded"},
        body=f"grant_type=client_credentials&client_id=AdminBootstrapClient0000000000001"
             f"&client_secret={presented}&audience=http%3A%2F%2F127.0.0.1%3A8000%2Fapi%2Fv2%2F")
    assert refused.status_code == 401
    created = api.call("POST", "/api/v2/clients",
                       body={"name": "secret-scan", "app_type": "non_interactive",
                             "client_secret": secrets.token_urlsafe(32)})
    assert created.status_code in (201, 400), created.data
    assert get_token(client)

    events = _stored_events()
    for item in events:
        secret_scan.check(f"stored log event {item['sk']['S']}", [json.dumps(item)])
    assert not secret_scan.findings, "credentials found:\n" + "\n".join(secret_scan.findings[:50])
    assert events, "the run stored no log event at all"
    assert secret_scan.counts["lines"] > len(events)
