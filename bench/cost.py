"""Cost per login and per monthly active user, from the figures a bench run measured.

Inputs, all from the same run (``bench/warm_login.py``'s ``routes``): per route the broker's CPU,
the DynamoDB calls by operation with the request units they bill (item sizes measured on the
requests and on the items they touch), the items of every TransactWriteItems, Secrets Manager and
SQS calls, and the bytes of log lines. Lambda duration per route is modelled as in
``bench/latency.py`` (CPU measured + DynamoDB round trips x a stated latency, + the upstream token
call on the callback). Prices: ``bench/prices.json`` (us-east-1, each with its source URL).

Billing rules applied (DynamoDB developer guide, "Read/write capacity mode"; Lambda price page):

- write request unit: 1 per 1 KB of item (rounded up), the larger of the item before and after;
  inside TransactWriteItems 2 per 1 KB for every item (Put, Update, Delete, ConditionCheck);
- read request unit: 1 per 4 KB for a strongly consistent read (the broker's ``store/dynamo.py``
  reads with ``ConsistentRead=True``), 0.5 for an eventually consistent one, 2 in a transaction;
- keys-only global secondary indexes: +1 write unit per index a new item enters, +2 when an
  index key changes (delete + put), 0 when untouched;
- Lambda: one request per invocation, duration rounded up to 1 ms, GB-seconds at the configured
  memory (MB / 1024);
- API Gateway REST: one request per HTTP request (3 per login, 1 per refresh grant).

    .venv/bin/python bench/cost.py [bench/out/warm_login.json]   # print the tables again
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PRICES = BENCH / "prices.json"
SVG_PATH = BENCH / "cost_vs_mau.svg"  # bench/out/ is git-ignored; RESULTS.md links this one

LOGIN_ROUTES = ("authorize", "callback", "token_code")
REFRESH_ROUTES = ("token_refresh",)
# Per user per month (the assumption behind the per-MAU figures; change here).
LOGINS_PER_USER = 20
REFRESHES_PER_USER = 100
# Fixed monthly assumptions: warm Lambda containers refilling the secrets cache all month, and
# the number of upstream connections (each keeps its client secret in Secrets Manager).
WARM_CONTAINERS = 2
CONNECTIONS = 1
BASE_SECRETS = 2  # admin client secret + signing keys (chalicelib/secrets.py names)
GB = 1024 ** 3  # CloudWatch and Lambda bill binary GB
MAU_POINTS = [1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000]
KB = 1024


def load_prices(path: Path = PRICES) -> dict:
    data = json.loads(path.read_text())
    prices = {k: v["value"] for k, v in data["prices"].items()}
    prices.update({f"{k}_free_mau": v["free_mau"] for k, v in data["prices"].items()
                   if "free_mau" in v})
    return {"prices": prices,
            "latency": {k: v["value"] for k, v in data["latency"].items()},
            "sources": data}


# --------------------------------------------------------------------------- DynamoDB units

def attribute_size(value: dict) -> int:
    """Bytes of one attribute value in DynamoDB JSON (developer guide, "Item sizes and formats"):
    strings and binaries their length, numbers ~1 byte per 2 digits + 1, booleans and nulls 1,
    lists and maps 3 bytes + their elements (+1 byte each)."""
    (kind, inner), = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "B":
        return len(inner) if isinstance(inner, (bytes, bytearray)) else len(str(inner).encode())
    if kind == "N":
        digits = len(str(inner).lstrip("-").replace(".", "").lstrip("0")) or 1
        return (digits + 1) // 2 + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "BS"):
        return sum(len(v if isinstance(v, (bytes, bytearray)) else str(v).encode()) for v in inner)
    if kind == "NS":
        return sum(attribute_size({"N": v}) for v in inner)
    if kind == "L":
        return 3 + sum(attribute_size(v) + 1 for v in inner)
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_size(v) + 1 for k, v in inner.items())
    raise ValueError(f"unknown DynamoDB type {kind}")


def item_size(item: dict | None) -> int:
    """Bytes of an item in DynamoDB JSON: attribute names + values."""
    if not item:
        return 0
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def write_units(size: int, *, transactional: bool = False) -> int:
    """Write request units for one item of ``size`` bytes: 1 per KB rounded up (at least 1), twice
    inside a transaction."""
    units = max(1, math.ceil(size / KB))
    return 2 * units if transactional else units


def read_units(size: int, *, consistent: bool = True, transactional: bool = False) -> float:
    """Read request units for one item: 1 per 4 KB rounded up (at least 1) when strongly
    consistent, half when eventually consistent, twice in a transaction."""
    units = max(1, math.ceil(size / (4 * KB)))
    if transactional:
        return 2.0 * units
    return float(units) if consistent else units / 2


def index_write_units(before: dict | None, after: dict | None, indexes: dict[str, tuple]) -> int:
    """Extra write units for keys-only GSIs: +1 per index the item enters or leaves, +2 per index
    whose key changes, 0 when the index keys are the same before and after."""
    units = 0
    for keys in indexes.values():
        old = _index_key(before, keys)
        new = _index_key(after, keys)
        if old == new:
            continue
        units += 2 if (old is not None and new is not None) else 1
    return units


def _index_key(item: dict | None, keys: tuple) -> tuple | None:
    if not item or not all(k in item for k in keys):
        return None
    return tuple(json.dumps(item[k], sort_keys=True) for k in keys)


# --------------------------------------------------------------------------- Lambda

def billed_ms(duration_ms: float) -> int:
    """Lambda duration as billed: rounded up to the next whole millisecond."""
    return max(1, math.ceil(duration_ms - 1e-9))


def gb_seconds(duration_ms: float, memory_mb: int) -> float:
    return billed_ms(duration_ms) / 1000 * memory_mb / 1024


def configured_memory_mb(stage: str = "prod") -> int:
    """``lambda_memory_size`` of the stage in .chalice/config.json (Chalice's default is 128)."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    stage_config = config.get("stages", {}).get(stage, {})
    return int(stage_config.get("lambda_memory_size", config.get("lambda_memory_size", 128)))


# --------------------------------------------------------------------------- cost per event

def event_cost(route_names: tuple, routes: dict, durations_ms: dict, memory_mb: int,
               prices: dict) -> dict:
    """Itemised USD for one event (a login = 3 HTTP requests / Lambda invocations; a refresh = 1)."""
    p = prices
    wru = sum(routes[r]["wru"] for r in route_names)
    rru = sum(routes[r]["rru"] for r in route_names)
    secrets_calls = sum(routes[r].get("secretsmanager", 0) for r in route_names)
    sqs_calls = sum(routes[r].get("sqs", 0) for r in route_names)
    log_bytes = sum(routes[r].get("log_bytes", 0) for r in route_names)
    gbs = sum(gb_seconds(durations_ms[r], memory_mb) for r in route_names)
    requests = len(route_names)
    return {
        "API Gateway REST requests": requests * p["apigw_rest_per_million"] / 1e6,
        "Lambda requests": requests * p["lambda_per_million_requests"] / 1e6,
        "Lambda GB-seconds": gbs * p["lambda_per_gb_second"],
        "DynamoDB write request units": wru * p["dynamodb_per_million_wru"] / 1e6,
        "DynamoDB read request units": rru * p["dynamodb_per_million_rru"] / 1e6,
        "Secrets Manager API calls": secrets_calls * p["secrets_per_10k_calls"] / 1e4,
        "SQS requests": sqs_calls * p["sqs_per_million_requests"] / 1e6,
        "CloudWatch Logs ingestion": log_bytes / GB * p["cloudwatch_logs_per_gb_ingested"],
        "_units": {"requests": requests, "wru": wru, "rru": rru, "gb_seconds": gbs,
                   "secrets_calls": secrets_calls, "sqs_calls": sqs_calls,
                   "log_bytes": log_bytes},
    }


def total(items: dict) -> float:
    return sum(v for k, v in items.items() if not k.startswith("_"))


def fixed_monthly(prices: dict, *, secrets_per_fill: float, cache_seconds: int,
                  containers: int = WARM_CONTAINERS, connections: int = CONNECTIONS) -> dict:
    """Per-month costs that do not scale with logins: the secrets themselves, and the cache refills
    of ``containers`` warm Lambda containers (one read of each secret per ``cache_seconds``)."""
    secrets = BASE_SECRETS + connections
    fills = containers * 30 * 24 * 3600 / cache_seconds
    return {
        f"Secrets Manager: {secrets} secrets": secrets * prices["secrets_per_secret_month"],
        f"Secrets Manager: cache refills ({containers} warm containers, every "
        f"{cache_seconds // 60} min, {secrets_per_fill:g} reads each)":
            fills * secrets_per_fill * prices["secrets_per_10k_calls"] / 1e4,
    }


def broker_monthly(mau: float, per_login: float, per_refresh: float, fixed: float,
                   logins_per_user: float = LOGINS_PER_USER,
                   refreshes_per_user: float = REFRESHES_PER_USER) -> float:
    """MAU x (logins x $/login + refreshes x $/refresh) + fixed monthly costs."""
    return mau * (logins_per_user * per_login + refreshes_per_user * per_refresh) + fixed


def cognito_monthly(mau: float, prices: dict) -> float:
    """Amazon Cognito user pool, users federated through OIDC/SAML: per MAU above the free ones."""
    free = prices.get("cognito_federated_per_mau_free_mau", 0)
    return max(0.0, mau - free) * prices["cognito_federated_per_mau"]


def auth0_monthly(mau: float, plan: dict) -> float | None:
    """A published Auth0 plan's monthly price at ``mau``, drawn linearly per MAU above the included
    ones; None above the plan's self-service cap (contact sales)."""
    if mau > plan["max_mau"]:
        return None
    if plan["per_month"] == 0:
        return 0.0
    per_mau = plan["per_month"] / plan["included_mau"]
    return plan["per_month"] if mau <= plan["included_mau"] else per_mau * mau


# --------------------------------------------------------------------------- report

def compute(warm: dict, prices_data: dict | None = None) -> dict:
    """Everything the report prints, from warm_login's result."""
    from bench import latency

    prices_data = prices_data or load_prices()
    prices = prices_data["prices"]
    routes = warm["routes"]
    memory = configured_memory_mb()
    model = latency.model(routes, prices_data["latency"])
    durations = {name: row["total_ms"] for name, row in model.items()}
    login = event_cost(LOGIN_ROUTES, routes, durations, memory, prices)
    refresh = event_cost(REFRESH_ROUTES, routes, durations, memory, prices)
    fixed = fixed_monthly(prices, secrets_per_fill=warm.get("secrets_per_cache_fill", 0),
                          cache_seconds=warm.get("secrets_cache_seconds", 600))
    per_login, per_refresh, fixed_total = total(login), total(refresh), total(fixed)
    curve = []
    for mau in MAU_POINTS:
        curve.append({
            "mau": mau,
            "broker": broker_monthly(mau, per_login, per_refresh, fixed_total),
            "cognito": cognito_monthly(mau, prices),
            "auth0": {plan["plan"]: auth0_monthly(mau, plan) for plan in prices["auth0_plans"]},
        })
    return {"memory_mb": memory, "durations": durations, "login": login, "refresh": refresh,
            "fixed": fixed, "per_login": per_login, "per_refresh": per_refresh,
            "fixed_total": fixed_total, "curve": curve, "model": model}


def money(value: float | None) -> str:
    if value is None:
        return "contact sales"
    if value == 0:
        return "$0"
    if value < 0.01:
        return f"${value:.2g}"
    return f"${value:,.2f}" if value < 1000 else f"${value:,.0f}"


def report(warm: dict, prices_data: dict | None = None, svg_path: Path = SVG_PATH) -> list[str]:
    """Markdown lines for RESULTS.md (and writes the SVG)."""
    prices_data = prices_data or load_prices()
    found = compute(warm, prices_data)
    prices = prices_data["prices"]
    sources = prices_data["sources"]["prices"]
    login, refresh = found["login"], found["refresh"]
    lu, ru = login["_units"], refresh["_units"]
    per_user = LOGINS_PER_USER * found["per_login"] + REFRESHES_PER_USER * found["per_refresh"]
    lines = [
        f"Region us-east-1, list prices from `bench/prices.json` (sources below); Lambda memory "
        f"{found['memory_mb']} MB (`.chalice/config.json`, stage prod), x86_64; no free tiers for "
        f"the broker (Lambda's and SQS's perpetual free requests would lower small bills). "
        f"Counts are this run's: a warm login makes {lu['requests']} requests with "
        f"{lu['wru']:g} DynamoDB write units and {lu['rru']:g} read units, a refresh grant "
        f"{ru['wru']:g} write and {ru['rru']:g} read units (per call below).",
        "",
        "| item | per 1M logins | per 1M refresh grants | per month, 10,000 MAU |",
        "|---|---|---|---|",
    ]
    for key in login:
        if key.startswith("_"):
            continue
        month = 10_000 * (LOGINS_PER_USER * login[key] + REFRESHES_PER_USER * refresh[key])
        lines.append(f"| {key} | {money(login[key] * 1e6)} | {money(refresh[key] * 1e6)} | "
                     f"{money(month)} |")
    for key, value in found["fixed"].items():
        lines.append(f"| {key} (fixed) | | | {money(value)} |")
    lines.append(f"| **total** | **{money(found['per_login'] * 1e6)}** | "
                 f"**{money(found['per_refresh'] * 1e6)}** | "
                 f"**{money(10_000 * per_user + found['fixed_total'])}** |")
    lines += [
        "",
        f"Per monthly active user: {LOGINS_PER_USER} logins + {REFRESHES_PER_USER} refresh grants "
        f"= {money(per_user)} per MAU per month (plus the fixed lines). Lambda GB-seconds use the "
        f"modelled duration per invocation (latency table below: "
        + ", ".join(f"{r} {found['durations'][r]:.0f} ms" for r in LOGIN_ROUTES + REFRESH_ROUTES)
        + f"), {lu['gb_seconds'] * 1e3:.1f} GB-ms per login. CloudWatch Logs: "
        f"{lu['log_bytes']:.0f} bytes per login and {ru['log_bytes']:.0f} per refresh, measured "
        f"from the log records the handler wrote in this run plus Lambda's START/END/REPORT lines; "
        f"API Gateway access/execution logging is off in `infra/resources.yaml`. Secrets Manager "
        f"per warm login: {lu['secrets_calls']:g} calls (cache); SQS per login: "
        f"{lu['sqs_calls']:g} (back-channel logout is queued only on logout). Not included: "
        f"DynamoDB storage and point-in-time recovery (a few KB per user), data transfer out.",
        "",
        "Monthly cost against MAU (broker: measured per-login and per-refresh cost x the "
        "assumption above + fixed; Cognito: OIDC-federated MAU; Auth0: published self-service "
        "plans, which stop at their MAU cap):",
        "",
        "| MAU | broker | Amazon Cognito (federated) | "
        + " | ".join(f"Auth0 {p['plan']}" for p in prices["auth0_plans"]) + " |",
        "|---|---|---|" + "---|" * len(prices["auth0_plans"]),
    ]
    for point in found["curve"]:
        lines.append(f"| {point['mau']:,} | {money(point['broker'])} | {money(point['cognito'])} | "
                     + " | ".join(money(point["auth0"][p["plan"]]) for p in prices["auth0_plans"])
                     + " |")
    lines += [
        "",
        "Auth0 Free covers one enterprise (OIDC/SAML) connection up to 25,000 MAU; B2B plans are "
        "drawn at their published starting price per MAU (the steps between are not in the stored "
        "copy of the page); past the cap the page says contact sales (Enterprise).",
        "",
    ]
    write_svg(found["curve"], prices["auth0_plans"], svg_path)
    lines += [f"![monthly cost against MAU]({svg_path.name}) (`bench/{svg_path.name}`, written by "
              "this run)", "", "Price sources (read dates as stored):", ""]
    for key, entry in sources.items():
        lines.append(f"- `{key}`: {_short(entry['value'])} {entry['unit']}; {entry['source']}"
                     + (f" (also {entry['also']})" if entry.get("also") else "")
                     + f"; read: {entry['read']}")
    return lines


def _short(value) -> str:
    if isinstance(value, list):
        return "; ".join(f"{v['plan']} ${v['per_month']}/month ({v['included_mau']:,} MAU, "
                         f"cap {v['max_mau']:,})" for v in value)
    return f"{value:g}"


# --------------------------------------------------------------------------- plot

def write_svg(curve: list[dict], plans: list[dict], path: Path) -> Path:
    """Monthly cost against MAU, both axes log scale, hand-written SVG."""
    width, height, left, right, top, bottom = 760, 460, 80, 190, 30, 60
    x0, x1 = math.log10(MAU_POINTS[0]), math.log10(MAU_POINTS[-1])
    y0, y1 = -1, 5  # $0.10 .. $100,000

    def sx(mau):
        return left + (math.log10(mau) - x0) / (x1 - x0) * (width - left - right)

    def sy(cost):
        cost = max(cost, 10 ** y0)
        return top + (y1 - math.log10(cost)) / (y1 - y0) * (height - top - bottom)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="18" font-size="14">Monthly cost (USD) against monthly active '
           f'users, us-east-1 list prices</text>']
    for decade in range(y0, y1 + 1):
        y = sy(10 ** decade)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
                   f'stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                   f'${10 ** decade:,.{1 if decade < 0 else 0}f}</text>')
    for mau in (1_000, 10_000, 100_000, 1_000_000):
        x = sx(mau)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" '
                   f'stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{height - bottom + 16}" text-anchor="middle">'
                   f'{mau:,}</text>')
    out.append(f'<text x="{(left + width - right) / 2:.0f}" y="{height - 18}" '
               f'text-anchor="middle">MAU (log scale)</text>')

    def polyline(points, color, dash=""):
        if len(points) < 2:
            return
        coords = " ".join(f"{sx(m):.1f},{sy(c):.1f}" for m, c in points)
        style = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<polyline points="{coords}" fill="none" stroke="{color}" '
                   f'stroke-width="2"{style}/>')

    series = [("broker (this run)", "#1f77b4", "", [(p["mau"], p["broker"]) for p in curve]),
              ("Cognito, OIDC-federated", "#ff7f0e", "",
               [(p["mau"], p["cognito"]) for p in curve])]
    colors = ["#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    for plan, color in zip(plans, colors, strict=False):
        points = [(p["mau"], p["auth0"][plan["plan"]]) for p in curve
                  if p["auth0"][plan["plan"]] is not None]
        if points and points[-1][0] < plan["max_mau"]:  # the plan's last step
            points.append((plan["max_mau"], auth0_monthly(plan["max_mau"], plan)))
        series.append((f"Auth0 {plan['plan']}", color, "6,3", points))
        if plan["max_mau"] < MAU_POINTS[-1] and points:
            x, y = sx(plan["max_mau"]), sy(points[-1][1])
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{color}"/>')
            out.append(f'<text x="{x + 6:.1f}" y="{y - 6:.1f}" fill="{color}">contact sales '
                       f'&#8594;</text>')
    for index, (label, color, dash, points) in enumerate(series):
        polyline(points, color, dash)
        y = top + 20 + 20 * index
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<line x1="{width - right + 10}" y1="{y}" x2="{width - right + 34}" y2="{y}" '
                   f'stroke="{color}" stroke-width="2"{dash_attr}/>')
        out.append(f'<text x="{width - right + 40}" y="{y + 4}">{label}</text>')
    out.append(f'<text x="{width - right + 10}" y="{top + 30 + 20 * len(series)}" '
               f'font-size="10">$0 is drawn at $0.10</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")
    return path


def main(argv: list[str]) -> None:
    source = Path(argv[0]) if argv else BENCH / "out" / "warm_login.json"
    warm = json.loads(source.read_text())
    print("\n".join(report(warm)))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main(sys.argv[1:])
