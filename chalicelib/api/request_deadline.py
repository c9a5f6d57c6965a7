"""The request deadline: middleware around every route of the app.

SPEC §8: each HTTP request gets a budget for outbound work (AWS attempts, upstream HTTP) so it
ends well before API Gateway's 29 s even when every dependency is slow and every retry fires (see
chalicelib/aws.py). A blueprint's middleware applies to every route of the app, whichever
blueprint declares the route.
"""
from __future__ import annotations

from chalice import Blueprint

bp = Blueprint(__name__)


@bp.middleware("http")
def request_deadline(event, get_response):
    from chalicelib import aws

    with aws.request_deadline(aws.REQUEST_BUDGET):
        return get_response(event)
