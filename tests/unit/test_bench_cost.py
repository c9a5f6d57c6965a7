"""The arithmetic of bench/cost.py and bench/latency.py (figures, not budgets: these only check the
billing rules and formulas the benchmark applies)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench import cost, latency

PRICES = Path(__file__).resolve().parents[2] / "bench" / "prices.json"


def test_transaction_items_bill_twice_the_write_units():
    assert cost.write_units(300) == 1
    assert cost.write_units(300, transactional=True) == 2
    assert cost.write_units(1025, transactional=True) == 4  # 2 KB x 2


def test_write_units_round_up_per_kb_and_bill_at_least_one():
    assert cost.write_units(0) == 1
    assert cost.write_units(1024) == 1
    assert cost.write_units(1025) == 2


def test_read_units_strong_eventual_and_transactional():
    assert cost.read_units(100) == 1.0
    assert cost.read_units(100, consistent=False) == 0.5
    assert cost.read_units(4097) == 2.0
    assert cost.read_units(100, transactional=True) == 2.0


def test_item_size_counts_names_and_values():
    item = {"pk": {"S": "CODE#abc"}, "ttl": {"N": "1700000000"}, "ok": {"BOOL": True},
            "m": {"M": {"a": {"S": "xy"}}}}
    # pk 2+8, ttl 3+(10 digits -> 6), ok 2+1, m 1 + (3 + 1 + 2 + 1)
    assert cost.item_size(item) == 10 + 9 + 3 + 8


def test_index_writes_for_keys_only_gsis():
    indexes = {"users": ("list_pk", "list_sk"), "user_email": ("email_key",)}
    new = {"pk": {"S": "USER#1"}, "list_pk": {"S": "USERS#c#0"}, "list_sk": {"S": "1"}}
    assert cost.index_write_units(None, new, indexes) == 1  # enters one index
    assert cost.index_write_units(new, new, indexes) == 0  # keys unchanged
    moved = dict(new, list_sk={"S": "2"})
    assert cost.index_write_units(new, moved, indexes) == 2  # delete + put
    assert cost.index_write_units(new, None, indexes) == 1  # leaves it


def test_lambda_duration_is_billed_per_started_millisecond():
    assert cost.billed_ms(12.01) == 13
    assert cost.billed_ms(12.0) == 12
    assert cost.billed_ms(0.2) == 1
    assert cost.gb_seconds(12.01, 512) == pytest.approx(0.013 * 0.5)


def test_mau_formula():
    assert cost.broker_monthly(10_000, 2e-5, 1e-5, 3.0, logins_per_user=20,
                               refreshes_per_user=100) == pytest.approx(10_000 * (4e-4 + 1e-3) + 3)


def test_cognito_federated_free_mau_then_per_mau():
    prices = {"cognito_federated_per_mau": 0.015, "cognito_federated_per_mau_free_mau": 50}
    assert cost.cognito_monthly(40, prices) == 0
    assert cost.cognito_monthly(1050, prices) == pytest.approx(15.0)


def test_auth0_plans_stop_at_their_cap():
    plan = {"plan": "B2B Essentials", "per_month": 150, "included_mau": 500, "max_mau": 20_000}
    assert cost.auth0_monthly(100, plan) == 150
    assert cost.auth0_monthly(1000, plan) == pytest.approx(300)
    assert cost.auth0_monthly(20_001, plan) is None  # contact sales
    free = {"plan": "Free", "per_month": 0, "included_mau": 25_000, "max_mau": 25_000}
    assert cost.auth0_monthly(25_000, free) == 0


def test_every_price_has_a_source_url_and_a_read_date():
    data = json.loads(PRICES.read_text())
    for section in ("prices", "latency"):
        for key, entry in data[section].items():
            assert "value" in entry, key
            assert entry.get("read"), key
            if section == "prices":
                assert entry["source"].startswith("https://"), key
    assert data["region"] == "us-east-1"


def _routes():
    def route(cpu, calls, wru=0.0, rru=0.0, upstream=0.0):
        return {"cpu_ms": cpu, "calls": calls, "wru": wru, "rru": rru, "upstream_calls": upstream,
                "secretsmanager": 0.0, "sqs": 0.0, "log_bytes": 264.0}
    return {
        "authorize": route(3.0, {"dynamodb.PutItem": 1}, wru=1),
        "callback": route(9.0, {"dynamodb.DeleteItem": 1, "dynamodb.TransactWriteItems": 1},
                          wru=15, upstream=1),
        "token_code": route(7.0, {"dynamodb.GetItem": 1, "dynamodb.TransactWriteItems": 1},
                            wru=6, rru=1),
        "token_refresh": route(6.0, {"dynamodb.GetItem": 1, "dynamodb.TransactWriteItems": 1},
                               wru=6, rru=1),
    }


def test_latency_model_adds_cpu_round_trips_and_upstream():
    found = latency.model(_routes(), {"dynamodb_get_put_ms": 4, "dynamodb_transact_ms": 10,
                                      "upstream_token_call_ms": 80})
    assert found["authorize"]["total_ms"] == pytest.approx(3 + 4)
    assert found["callback"]["total_ms"] == pytest.approx(9 + 4 + 10 + 80)
    assert (found["token_code"]["single"], found["token_code"]["transact"]) == (1, 1)


def test_cost_per_login_is_itemised_from_the_measured_units():
    prices = cost.load_prices(PRICES)["prices"]
    routes = _routes()
    durations = {"authorize": 7.0, "callback": 103.0, "token_code": 21.0}
    items = cost.event_cost(cost.LOGIN_ROUTES, routes, durations, 512, prices)
    assert items["API Gateway REST requests"] == pytest.approx(3 * prices["apigw_rest_per_million"]
                                                               / 1e6)
    assert items["DynamoDB write request units"] == pytest.approx(
        22 * prices["dynamodb_per_million_wru"] / 1e6)
    assert items["Lambda GB-seconds"] == pytest.approx(
        (7 + 103 + 21) / 1000 * 0.5 * prices["lambda_per_gb_second"])
    assert cost.total(items) == pytest.approx(sum(v for k, v in items.items()
                                                  if not k.startswith("_")))
    assert math.isclose(items["_units"]["log_bytes"], 3 * 264)
