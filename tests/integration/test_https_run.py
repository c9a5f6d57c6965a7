"""`make run HTTPS=1`: the broker over https on loopback, with a certificate from a local CA.

What a client of the https run depends on: the certificate verifies against the printed CA (and
against nothing else), the issuer and every URL the broker builds are https, the broker's cookies
get their deployed ``__Host-`` names through the TLS proxy (several Set-Cookie lines kept apart),
request bodies reach the app whole, and the Management API answers over https."""

from __future__ import annotations

import ssl
import subprocess
import sys
from urllib.parse import urlencode

import pytest
import requests
from cryptography import x509

from tests.support.https_stack import ROOT, LocalStack

TIMEOUT = 30


def _session(stack: LocalStack) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxies or CA bundles from the environment
    session.verify = str(stack.ca_path)
    return session


def test_https_verifies_against_the_local_ca_only(https_stack: LocalStack):
    assert https_stack.issuer == f"https://127.0.0.1:{https_stack.port}/"
    assert https_stack.base_url == f"https://127.0.0.1:{https_stack.port}"
    assert https_stack.ca_path is not None and https_stack.ca_path.is_file()

    response = _session(https_stack).get(https_stack.url(".well-known/openid-configuration"), timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["issuer"] == https_stack.issuer
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"):
        assert document[key].startswith(https_stack.issuer), (key, document[key])

    # Without the local CA (the system's roots only) the same request fails verification.
    plain = requests.Session()
    plain.trust_env = False
    with pytest.raises(requests.exceptions.SSLError):
        plain.get(https_stack.url(".well-known/openid-configuration"), timeout=TIMEOUT)

    # The certificate is the CA's, for 127.0.0.1 and localhost, and the CA is a CA.
    pem = ssl.get_server_certificate(("127.0.0.1", https_stack.port), timeout=TIMEOUT)
    served = x509.load_pem_x509_certificate(pem.encode())
    ca = x509.load_pem_x509_certificate(https_stack.ca_path.read_bytes())
    assert served.issuer == ca.subject
    served.verify_directly_issued_by(ca)
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1"}
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_plain_http_on_the_https_port_gets_no_answer(https_stack: LocalStack):
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{https_stack.port}/.well-known/jwks.json", timeout=TIMEOUT)


def _management(stack: LocalStack) -> tuple[requests.Session, dict[str, str]]:
    http = _session(stack)
    token = http.post(stack.url("oauth/token"), json={
        "grant_type": "client_credentials",
        "client_id": stack.admin_client_id,
        "client_secret": stack.admin_client_secret,
        "audience": stack.management_audience,
    }, timeout=TIMEOUT)
    assert token.status_code == 200, token.text
    return http, {"Authorization": f"Bearer {token.json()['access_token']}"}


def test_management_api_over_https(https_stack: LocalStack):
    http, bearer = _management(https_stack)
    # A body bigger than one proxy chunk arrives whole: the API reads and validates all of it.
    metadata = {f"k{i}": "v" * 200 for i in range(10)}
    created = http.post(https_stack.url("api/v2/clients"), headers=bearer, timeout=TIMEOUT, json={
        "name": "https-run", "app_type": "regular_web", "callbacks": ["https://app.test/callback"],
        "client_metadata": metadata})
    assert created.status_code == 201, created.text
    assert created.json()["client_metadata"] == metadata
    listed = http.get(https_stack.url("api/v2/clients"), headers=bearer, timeout=TIMEOUT)
    assert listed.status_code == 200
    assert created.json()["client_id"] in {c["client_id"] for c in listed.json()}
    # A chunked request body is de-chunked by the proxy and arrives whole too.
    parts = [b"grant_type=client_credentials&client_id=", https_stack.admin_client_id.encode(),
             b"&client_secret=", https_stack.admin_client_secret.encode(),
             b"&audience=", https_stack.management_audience.encode()]
    chunked = http.post(https_stack.url("oauth/token"), data=iter(parts), timeout=TIMEOUT,
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert chunked.status_code == 200, chunked.text


def test_login_cookie_gets_its_deployed_name_over_https(https_stack: LocalStack):
    """/authorize binds the login transaction to the browser with a cookie; behind the TLS proxy
    the issuer is https, so the cookie is ``__Host-``, Secure, Path=/, no Domain, SameSite=None
    (it must survive the IdP's cross-site form POST: SPEC §3.2, §4)."""
    http, bearer = _management(https_stack)
    client = http.post(https_stack.url("api/v2/clients"), headers=bearer, timeout=TIMEOUT, json={
        "name": "https-cookie", "app_type": "regular_web",
        "callbacks": ["https://app.test/callback"]}).json()
    connection = http.post(https_stack.url("api/v2/connections"), headers=bearer, timeout=TIMEOUT, json={
        "name": "https-cookie-idp", "strategy": "oidc", "options": {
            "type": "front_channel", "client_id": "broker-client", "issuer": "https://idp.test/",
            "authorization_endpoint": "https://idp.test/auth",
            "jwks_uri": "https://idp.test/jwks"}})
    assert connection.status_code == 201, connection.text
    enabled = http.patch(https_stack.url(f"api/v2/connections/{connection.json()['id']}/clients"),
                         headers=bearer, timeout=TIMEOUT,
                         json=[{"client_id": client["client_id"], "status": True}])
    assert enabled.status_code == 204, enabled.text
    query = urlencode({"client_id": client["client_id"], "redirect_uri": "https://app.test/callback",
                       "response_type": "code", "scope": "openid", "state": "s" * 22,
                       "nonce": "n" * 22, "connection": "https-cookie-idp"})
    response = http.get(https_stack.url("authorize?" + query), allow_redirects=False, timeout=TIMEOUT)
    assert response.status_code == 302, response.text
    assert response.headers["Location"].startswith("https://idp.test/auth?")
    assert f"redirect_uri=https%3A%2F%2F127.0.0.1%3A{https_stack.port}%2Flogin%2Fcallback%2F" \
        in response.headers["Location"]
    set_cookies = response.raw.headers.getlist("Set-Cookie")
    assert set_cookies, dict(response.headers)
    for line in set_cookies:
        attributes = [part.strip() for part in line.split(";")]
        assert attributes[0].startswith("__Host-"), line
        assert {"Secure", "Path=/", "HttpOnly", "SameSite=None"} <= set(attributes), line
        assert not any(a.lower().startswith("domain=") for a in attributes), line


def test_run_local_refuses_a_hostname_without_https():
    """An http issuer is accepted on loopback only: BROKER_HOSTNAME without https is a clear error."""
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_local.py")], capture_output=True,
                          text=True, timeout=60, cwd=str(ROOT),
                          env={"PATH": "/usr/bin:/bin", "PORT": "0", "BROKER_HOSTNAME": "broker.test"})
    assert done.returncode != 0
    assert "BROKER_HOSTNAME needs https" in done.stderr


# ---- the pieces: local CA and TLS proxy, in this process ----------------------------------------


def _scripts():
    scripts = str(ROOT / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    import local_tls
    import tls_proxy

    return local_tls, tls_proxy


def test_local_ca_is_made_once_and_server_certificate_follows_the_names(tmp_path):
    local_tls, _ = _scripts()
    first = local_tls.ensure_tls_files(tmp_path, [])
    ca_pem, spki = first.ca_cert.read_bytes(), first.server_spki_hash()
    for key in (tmp_path / "ca-key.pem", tmp_path / "server-key.pem"):
        assert key.stat().st_mode & 0o077 == 0, key
    again = local_tls.ensure_tls_files(tmp_path, [])
    assert again.ca_cert.read_bytes() == ca_pem
    assert again.server_cert.read_bytes() == first.server_cert.read_bytes()  # nothing re-issued

    named = local_tls.ensure_tls_files(tmp_path, ["broker.test"])
    assert named.ca_cert.read_bytes() == ca_pem  # same CA: nothing to trust again
    assert named.server_spki_hash() == spki  # same key: the Chromium flag stays valid
    served = x509.load_pem_x509_certificate(named.server_cert.read_bytes())
    assert "broker.test" in served.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    # The CA may sign for loopback names only: a public name is outside its constraints.
    ca = x509.load_pem_x509_certificate(ca_pem)
    constraints = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    permitted = {str(n.value) for n in constraints.value.permitted_subtrees}
    assert "example.com" not in permitted and "test" in permitted and "127.0.0.0/8" in permitted


def test_tls_proxy_keeps_headers_and_sets_the_forwarded_ones(tmp_path):
    """Repeated Set-Cookie lines stay apart, Host is kept, X-Forwarded-* come from the proxy only
    (a client's are dropped), bodies pass whole both ways, chunked answers included."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    local_tls, tls_proxy = _scripts()
    files = local_tls.ensure_tls_files(tmp_path, [])

    class Backend(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen = {"host": self.headers.get_all("Host"), "body": len(body),
                    "proto": self.headers.get_all("X-Forwarded-Proto"),
                    "for": self.headers.get_all("X-Forwarded-For"),
                    "forwarded": self.headers.get_all("Forwarded"),
                    "custom": self.headers.get_all("X-Custom")}
            payload = json.dumps(seen).encode() * 1000  # a chunked answer of many proxy chunks
            self.send_response(200)
            self.send_header("Set-Cookie", "a=1; Path=/; Secure")
            self.send_header("Set-Cookie", "b=2; Path=/; Secure, c=3")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(payload), 7000):
                part = payload[start:start + 7000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")

        def log_message(self, format, *args):  # noqa: A002
            pass

    backend = ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    proxy = tls_proxy.TlsProxy(host="127.0.0.1", port=0, backend_host="127.0.0.1",
                               backend_port=backend.server_address[1],
                               cert_file=files.server_cert, key_file=files.server_key)
    proxy.start()
    try:
        http = requests.Session()
        http.trust_env = False
        response = http.post(f"https://localhost:{proxy.port}/x", data=b"z" * 200_000,
                             verify=str(files.ca_cert), timeout=TIMEOUT,
                             headers={"X-Forwarded-Proto": "http", "X-Forwarded-For": "10.0.0.1",
                                      "Forwarded": "for=10.0.0.1", "X-Custom": "kept"})
        assert response.status_code == 200
        cookies = response.raw.headers.getlist("Set-Cookie")
        assert cookies == ["a=1; Path=/; Secure", "b=2; Path=/; Secure, c=3"]
        seen = json.loads(response.content[: len(response.content) // 1000])
        assert seen == {"host": [f"localhost:{proxy.port}"], "body": 200_000, "proto": ["https"],
                        "for": ["127.0.0.1"], "forwarded": None, "custom": ["kept"]}
    finally:
        proxy.stop()
        backend.shutdown()
        backend.server_close()
