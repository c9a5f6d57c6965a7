"""Management API: ``/api/v2/logs``, ``/api/v2/logs/{id}`` and ``/api/v2/users/{id}/logs``:
reading log events back, as Auth0's log routes do (SPEC §9). Parse, authorize, find
(chalicelib/management/log_query.py), shape.

``GET /api/v2/logs`` pages two ways, as Auth0's does: by search (``page``/``per_page``, newest
first, ``q`` filters, the first 1,000 matches) or by checkpoint (``from``/``take``: every event
after a log id, oldest first, with a ``Link: <...>; rel="next"`` header for the next call; the
search parameters auth0's SDKs send along are ignored there, as Auth0 ignores them, but a ``q``
is refused rather than dropped).
"""
from __future__ import annotations

from typing import get_type_hints
from urllib.parse import unquote, urlencode

from chalice import Blueprint

from chalicelib import clock
from chalicelib.api.http import handles_api_errors, json_response, management_caller, query_params
from chalicelib.errors import InvalidQueryString, NotFound
from chalicelib.management import log_query
# paging's integer and true/false checks, so that these routes word their 400s as the others do
from chalicelib.management.paging import _bool, _int, check_known, one, select_fields
from chalicelib.settings import get_settings
from chalicelib.store import log_events
from chalicelib.store.log_events import LogEvent

bp = Blueprint(__name__)

LOG_FIELDS = tuple(get_type_hints(LogEvent))
SEARCH_PARAMS = {"page", "per_page", "include_totals", "sort", "fields", "include_fields", "q",
                 "search"}
CHECKPOINT_PARAMS = {"from", "take"}
SORTS = {"date:-1": True, "date:1": False}  # value: newest first


def _days() -> list[str]:
    return log_events.days_back(clock.now(), get_settings().log_retention_days)


def _newest_first(params: dict) -> bool:
    sort = one(params, "sort")
    if sort is None:
        return True
    if sort not in SORTS:
        raise InvalidQueryString("Query validation error: 'sort must be date:-1 or date:1' on "
                                 "property sort")
    return SORTS[sort]


def _offset_page(params: dict, query: log_query.LogQuery):
    """Search paging: the page as a bare array, or with include_totals Auth0's
    ``{start, limit, length, total, logs}``."""
    number = _int("page", one(params, "page"), 0, 100000, 0)
    per_page = _int("per_page", one(params, "per_page"), 1, 100, 50)
    totals = _bool("include_totals", one(params, "include_totals"), False)
    newest_first = _newest_first(params)
    start = number * per_page
    if start >= log_query.MAX_RESULTS:
        raise InvalidQueryString(
            f"Query validation error: 'You can only page through the first "
            f"{log_query.MAX_RESULTS} records: narrow the search (q) or use checkpoint paging "
            f"(from/take)' on property page")
    found, total = log_query.search(query, _days(), start=start, count=per_page,
                                    newest_first=newest_first, with_total=totals)
    shown = select_fields(found, params, LOG_FIELDS)  # type: ignore[arg-type]
    if not totals:
        return json_response(shown)
    return json_response({"start": start, "limit": per_page, "length": len(shown),
                          "total": total, "logs": shown})


def _checkpoint_page(params: dict):
    """Checkpoint paging: up to ``take`` events after ``from``, oldest first, and the next
    call in a Link header (the same call again when nothing is newer yet)."""
    if one(params, "q") is not None or one(params, "search") is not None:
        raise InvalidQueryString("Query validation error: 'q cannot be combined with from/take: "
                                 "checkpoint paging returns every event' on property q")
    take = _int("take", one(params, "take"), 1, 100, 50)
    checkpoint = one(params, "from")
    if checkpoint is not None and not log_events.is_log_id(checkpoint):
        raise InvalidQueryString("Query validation error: 'from must be a log_id' on property "
                                 "from")
    found = log_query.after_checkpoint(checkpoint, _days(), take)
    following = found[-1]["log_id"] if found else checkpoint
    next_params = {"from": following, "take": take} if following else {"take": take}
    link = f'<{get_settings().url("api/v2/logs")}?{urlencode(next_params)}>; rel="next"'
    shown = select_fields(found, params, LOG_FIELDS)  # type: ignore[arg-type]
    return json_response(shown, headers={"Link": link})


@bp.route("/api/v2/logs", methods=["GET"])
@handles_api_errors
def search_logs():
    management_caller(bp.current_request, "read:logs")
    params = query_params(bp.current_request)
    check_known(params, SEARCH_PARAMS | CHECKPOINT_PARAMS)
    if CHECKPOINT_PARAMS & set(params):
        return _checkpoint_page(params)
    q, search = one(params, "q"), one(params, "search")
    if q is not None and search is not None:
        raise InvalidQueryString("Query validation error: 'q and search are the same parameter: "
                                 "send one' on property search")
    text = q if q is not None else search
    query = log_query.parse(text) if text is not None and text.strip() else log_query.LogQuery()
    return _offset_page(params, query)


@bp.route("/api/v2/logs/{log_id}", methods=["GET"])
@handles_api_errors
def get_log(log_id):
    management_caller(bp.current_request, "read:logs")
    wanted = unquote(log_id)
    event = log_events.get(wanted) if log_events.is_log_id(wanted) else None
    if event is None:  # a malformed id too
        raise NotFound("The log event does not exist.", error_code="inexistent_log")
    return json_response(event)


@bp.route("/api/v2/users/{user_id}/logs", methods=["GET"])
@handles_api_errors
def list_user_logs(user_id):
    """A user's events, whether or not the user still exists (its deletion is one of them).
    read:logs reads every event, so it is enough here too, as at Auth0."""
    management_caller(bp.current_request, "read:logs_users", "read:logs", any_of=True)
    params = query_params(bp.current_request)
    check_known(params, {"page", "per_page", "include_totals", "sort"})
    wanted = unquote(user_id)
    if not log_query.fits(wanted):  # longer than any user id (and than an index key may be)
        raise NotFound("The user does not exist.", error_code="inexistent_user")
    return _offset_page(params, log_query.LogQuery(equals=(("user_id", wanted),)))
