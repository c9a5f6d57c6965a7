"""PKCE (RFC 7636): one implementation, chalicelib.tokens.s256, the same value as authlib's."""
from __future__ import annotations

import ast
import secrets
from pathlib import Path

import pytest

from chalicelib.tokens import s256

ROOT = Path(__file__).resolve().parents[2]


def test_rfc7636_appendix_b():
    assert s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == (
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")


@pytest.mark.parametrize("verifier", [secrets.token_urlsafe(n) for n in (32, 48, 64, 96)]
                         + ["~." * 22, "-_" * 64])
def test_same_value_as_authlibs_helper(verifier):
    from authlib.oauth2.rfc7636 import create_s256_code_challenge

    assert s256(verifier) == create_s256_code_challenge(verifier)


def test_no_second_pkce_implementation_in_what_ships():
    """authlib's rfc7636 helpers stay out of chalicelib: its comparison is not constant-time and
    importing it on /authorize would load authlib at cold start."""
    offenders = []
    for path in [ROOT / "app.py", *sorted((ROOT / "chalicelib").rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and "rfc7636" in node.module:
                offenders.append(path.relative_to(ROOT).as_posix())
            if isinstance(node, ast.Attribute) and node.attr in (
                    "create_s256_code_challenge", "compare_s256_code_challenge"):
                offenders.append(path.relative_to(ROOT).as_posix())
    assert offenders == []
