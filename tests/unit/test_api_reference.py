"""docs/MANAGEMENT-API.md is generated from the OpenAPI document and must match it."""
from __future__ import annotations

from scripts.api_reference import PAGE, render


def test_the_reference_page_matches_the_openapi_document():
    from chalicelib.openapi_doc import document

    assert PAGE.read_text() == render(document()), (
        "docs/MANAGEMENT-API.md is out of date: run .venv/bin/python scripts/api_reference.py")


def test_every_operation_appears_with_its_scopes():
    from chalicelib.openapi_doc import document

    doc = document()
    text = render(doc)
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            assert f"### `{method.upper()} {path}`" in text
            for scope in operation.get("x-required-scopes") or []:
                assert f"`{scope}`" in text
