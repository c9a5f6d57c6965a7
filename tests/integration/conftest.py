"""Integration fixtures: the stack `make run` starts (scripts/run_local.py), over http and over https
(`make run HTTPS=1`), and a real upstream IdP. The start/stop code lives in tests/support/https_stack.py."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.support.https_stack import LocalStack, StackError, start_local_stack
from tests.support.idp_fixtures import oidc_idp  # noqa: F401

__all__ = ["LocalStack", "https_stack", "local_stack"]


def _run(**options) -> Iterator[LocalStack]:
    try:
        with start_local_stack(**options) as stack:
            yield stack
    except StackError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """The broker as `make run` serves it, over real HTTP on 127.0.0.1."""
    yield from _run(admin_client_id="SdkTestAdmin" + secrets.token_hex(10), max_seconds=600)


@pytest.fixture(scope="session")
def https_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The broker as `make run HTTPS=1` serves it: https://127.0.0.1:<port>/ through run_local.py's
    TLS proxy, with a certificate from a local CA made for this session (``https_stack.ca_path``:
    pass it as ``verify=`` to requests, ``NODE_EXTRA_CA_CERTS`` to Node). ``base_url``, ``domain``,
    ``issuer`` (``https://127.0.0.1:<port>/``), ``admin_client_id`` and ``admin_client_secret`` as
    for ``local_stack``; the cookies get ``__Host-`` names as deployed. No demo IdP."""
    yield from _run(https=True, tls_dir=tmp_path_factory.mktemp("tls"),
                    admin_client_id="HttpsTestAdmin" + secrets.token_hex(10), max_seconds=900,
                    extra_env={"BROKER_DEMO": "0"})
