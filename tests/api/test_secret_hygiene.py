"""SPEC §0/§2.2: an upstream client secret lives in Secrets Manager and nowhere else."""
from __future__ import annotations

import json
import logging
import uuid

from chalicelib import aws


def _scan_everything() -> str:
    import os

    import boto3
    from botocore.config import Config

    from chalicelib.settings import get_settings

    # A client of the test's own: the app's has second-scale deadlines (right for a request), and
    # scanning the whole table the suite has filled takes longer than that on a busy machine.
    dynamodb = boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                            region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
                            config=Config(read_timeout=60, retries={"max_attempts": 3}))
    items, kwargs = [], {"TableName": get_settings().table_name}
    while True:
        page = dynamodb.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return json.dumps(items)
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_client_secret_never_in_dynamodb_logs_or_responses(api, caplog, capfd):
    first = "first-SECRET-" + uuid.uuid4().hex
    second = "second-SECRET-" + uuid.uuid4().hex
    name = f"hygiene-{uuid.uuid4().hex[:8]}"
    options = {"type": "back_channel", "client_id": "broker", "client_secret": first,
               "token_endpoint_auth_method": "client_secret_basic",
               "issuer": "http://127.0.0.1:9/", "authorization_endpoint": "http://127.0.0.1:9/a",
               "token_endpoint": "http://127.0.0.1:9/t", "jwks_uri": "http://127.0.0.1:9/j"}
    responses = []
    with caplog.at_level(logging.INFO):
        created = api.call("POST", "/api/v2/connections",
                           body={"name": name, "strategy": "oidc", "options": options})
        assert created.status_code == 201, created.data
        cid = created.data["id"]
        responses += [created.body]
        responses.append(api.call("GET", f"/api/v2/connections/{cid}").body)
        responses.append(api.call("GET", "/api/v2/connections").body)
        responses.append(api.call("PATCH", f"/api/v2/connections/{cid}",
                                  body={"options": {**options, "client_secret": second}}).body)
        # a rejected PATCH must not echo the secret in its error either
        bad = api.call("PATCH", f"/api/v2/connections/{cid}",
                       body={"options": {**options, "client_secret": second, "scope": "profile"}})
        assert bad.status_code == 400
        responses.append(bad.body)
        oversize = api.call("PATCH", f"/api/v2/connections/{cid}",
                            body={"options": {**options, "client_secret": second * 50}})
        assert oversize.status_code == 400
        responses.append(oversize.body)
        stored = _scan_everything()
    captured = capfd.readouterr()
    haystacks = {"dynamodb": stored, "logs": caplog.text, "stdout": captured.out,
                 "stderr": captured.err, "responses": "\n".join(str(r) for r in responses)}
    for where, text in haystacks.items():
        assert first not in text, f"first secret leaked into {where}"
        assert second not in text, f"second secret leaked into {where}"
    # and it *is* in Secrets Manager
    from chalicelib.secrets import connection_secret_name
    from chalicelib.settings import get_settings

    value = aws.client("secretsmanager").get_secret_value(
        SecretId=connection_secret_name(get_settings().secret_prefix, cid))["SecretString"]
    assert value == second
    api.call("DELETE", f"/api/v2/connections/{cid}")


def test_secret_repr_is_masked():
    from chalicelib.secrets import _Cached

    assert "hunter2" not in repr(_Cached("hunter2", 0))
