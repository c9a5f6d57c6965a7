"""The admin console's static files (chalicelib/static/, served by chalicelib/api/console.py): every
script admin.html loads is served under the strict CSP and none of them writes markup from text
or evaluates code; every word the console shows exists in English and in French."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chalicelib.api.console import ASSETS, CONSOLE_CSP, STATIC

SCRIPTS = sorted(name for name in ASSETS if name.endswith(".js"))
# Ways to turn text into markup or code: none may appear in a console script.
FORBIDDEN = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
             "new Function", "setAttribute(\"style\"", ".style.", "localStorage", "sessionStorage")


def test_the_page_loads_every_script_and_only_those():
    page = (STATIC / "admin.html").read_text(encoding="utf-8")
    loaded = re.findall(r'<script src="admin/([^"]+)" defer></script>', page)
    assert loaded[0] == "i18n.js"  # the words first: the others call ConsoleI18n.t
    assert sorted(loaded) == SCRIPTS
    assert "<script>" not in page and " style=" not in page and re.search(r"\son\w+=", page) is None


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_script_is_served_under_the_csp_and_writes_text_only(client, name):
    response = client.http.get(f"/admin/{name}")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/javascript")
    assert response.headers["Content-Security-Policy"] == CONSOLE_CSP
    body = response.body.decode()
    assert body.startswith("//") and '"use strict";' in body
    for bad in FORBIDDEN:
        assert bad not in body, f"{name} uses {bad}"


def test_the_csp_stays_strict():
    directives = dict(part.strip().split(" ", 1) for part in CONSOLE_CSP.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert "unsafe" not in CONSOLE_CSP and "data:" not in CONSOLE_CSP


def test_an_unknown_asset_is_404(client):
    for bad in ("/admin/admin.html", "/admin/chart", "/admin/..%2Fi18n.js", "/admin/test-axe.js"):
        assert client.http.get(bad).status_code == 404


# --- the words ---------------------------------------------------------------------------------

def _catalogue() -> dict[str, set[str]]:
    text = (STATIC / "i18n.js").read_text(encoding="utf-8")
    english = text[text.index("    en: {"):text.index("    fr: {")]
    french = text[text.index("    fr: {"):text.index("  };")]
    key = re.compile(r'^\s+"([a-z_.]+)":', re.MULTILINE)
    return {"en": set(key.findall(english)), "fr": set(key.findall(french))}


def test_english_and_french_have_the_same_words():
    words = _catalogue()
    assert words["en"] and words["en"] == words["fr"]


def _used_keys() -> set[str]:
    page = (STATIC / "admin.html").read_text(encoding="utf-8")
    used = set(re.findall(r'data-i18n(?:-label)?="([^"]+)"', page))
    for name in SCRIPTS:
        code = (STATIC / name).read_text(encoding="utf-8")
        # Whole keys; a key built at run time ("type." + code) is checked where it is built.
        used.update(k for k in re.findall(r'\bt\(\s*"([a-z_.]+)"', code) if not k.endswith("."))
        used.update(f"{k}_{form}" for k in re.findall(r'\bcount\(\s*"([a-z_.]+)"', code)
                    for form in ("one", "other"))
    return used


def test_every_word_the_console_shows_is_in_the_catalogue():
    used = _used_keys()
    assert len(used) > 100
    assert used - _catalogue()["en"] == set()


def test_every_event_type_has_a_name_in_both_languages():
    from chalicelib import audit

    for language in ("en", "fr"):
        assert {f"type.{code}" for code in audit.TYPES} <= _catalogue()[language]
    activity = (STATIC / "activity.js").read_text(encoding="utf-8")
    listed = re.search(r"const TYPES = \[([^\]]+)\]", activity).group(1)
    assert set(re.findall(r'"(\w+)"', listed)) == set(audit.TYPES)


def test_the_static_folder_holds_only_served_files():
    served = set(ASSETS) | {"admin.html"}
    assert {p.name for p in Path(STATIC).iterdir() if p.is_file()} == served
