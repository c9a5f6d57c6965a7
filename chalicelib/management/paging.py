"""Auth0's two paging styles and field selection for list routes."""
from __future__ import annotations

from chalicelib.errors import InvalidQueryString


def _int(name: str, raw: str | None, low: int, high: int, default: int) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 6:
        raise InvalidQueryString(f"Query validation error: '{name} must be an integer' on "
                                 f"property {name}")
    value = int(raw)
    if not low <= value <= high:
        raise InvalidQueryString(f"Query validation error: '{name} must be between {low} and "
                                 f"{high}' on property {name}")
    return value


def _bool(name: str, raw: str | None, default: bool) -> bool:
    if raw is None:
        return default
    if raw in ("true", "false"):
        return raw == "true"
    raise InvalidQueryString(f"Query validation error: '{name} must be true or false' on "
                             f"property {name}")


def flag(params: dict, name: str) -> bool | None:
    """An optional true/false filter (is_global, is_first_party, allow_any_organization)."""
    raw = one(params, name)
    return None if raw is None else _bool(name, raw, False)


def check_known(params: dict, allowed: set[str]) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InvalidQueryString(f"Query validation error: 'Additional properties not allowed: "
                                 f"{unknown[0][:64]}'")


def one(params: dict, name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise InvalidQueryString(f"Query validation error: '{name} must appear once' on "
                                 f"property {name}")
    return values[0]


def select_fields(items: list[dict], params: dict, known: tuple[str, ...]) -> list[dict]:
    fields = one(params, "fields")
    include = _bool("include_fields", one(params, "include_fields"), True)
    if fields is None:
        return items
    wanted = [f.strip() for f in fields.split(",") if f.strip()]
    for field in wanted:
        if field not in known:
            raise InvalidQueryString(f"Query validation error: 'unknown field {field[:64]}' on "
                                     f"property fields")
    if include:
        return [{k: v for k, v in item.items() if k in wanted} for item in items]
    return [{k: v for k, v in item.items() if k not in wanted} for item in items]


def page(items: list[dict], params: dict, key: str, id_field: str) -> dict | list:
    """Offset paging (page/per_page/include_totals) or checkpoint paging (from/take)."""
    checkpoint = "from" in params or "take" in params
    # include_totals is ignored in checkpoint mode, as Auth0 does (its SDKs send it by default).
    offset = any(p in params for p in ("page", "per_page"))
    if checkpoint and offset:
        raise InvalidQueryString("Query validation error: 'use either from/take or "
                                 "page/per_page, not both'")
    if checkpoint:
        take = _int("take", one(params, "take"), 1, 100, 50)
        start = one(params, "from")
        if start is not None:
            if not start or len(start) > 128:
                raise InvalidQueryString("Query validation error: 'invalid from' on property from")
            items = [i for i in items if i[id_field] > start]
        chunk = items[:take]
        body: dict = {key: chunk}
        if len(items) > take:
            body["next"] = chunk[-1][id_field]
        return body
    number = _int("page", one(params, "page"), 0, 100000, 0)
    per_page = _int("per_page", one(params, "per_page"), 1, 100, 50)
    totals = _bool("include_totals", one(params, "include_totals"), False)
    chunk = items[number * per_page:(number + 1) * per_page]
    if totals:
        return {"start": number * per_page, "limit": per_page, "total": len(items), key: chunk}
    return chunk
