"""Address, URL and resolver rules of chalicelib.netguard.

No test here touches the network: sockets are monkeypatched so that any
connect attempt is recorded and fails the test (or is refused locally).
"""

from __future__ import annotations

import socket

import pytest

from chalicelib import netguard
from chalicelib.netguard import (
    OutboundError,
    OutboundRefused,
    ResponseTooLarge,
    check_address,
    check_url,
    safe_get,
    safe_post_form,
)

# --------------------------------------------------------------------------- check_address

REFUSED = [
    # private
    ("10.0.0.5", "private"),
    ("10.255.255.255", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("fd00::1", "private"),
    ("fc00::1", "private"),
    # link-local and cloud metadata
    ("169.254.0.1", "link-local"),
    ("169.254.169.254", "metadata"),
    ("169.254.170.2", "metadata"),
    ("fd00:ec2::254", "metadata"),
    ("fe80::1", "link-local"),
    ("fe80::1%1", "link-local"),
    # unspecified
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("::", "unspecified"),
    # multicast
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    # reserved / broadcast
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    # CGNAT
    ("100.64.0.1", "shared address space"),
    ("100.127.255.254", "shared address space"),
    # other non-public ranges
    ("192.0.2.10", "not a public address"),
    ("198.18.0.1", "not a public address"),
    ("2001:db8::1", "not a public address"),
    # IPv4-mapped / NAT64 / 6to4 / IPv4-compatible spellings
    ("::ffff:10.0.0.5", "private"),
    ("::ffff:a00:5", "private"),
    ("::ffff:169.254.169.254", "metadata"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:100.64.0.1", "shared address space"),
    ("::ffff:0.0.0.0", "unspecified"),
    ("64:ff9b::a9fe:a9fe", "metadata"),
    ("64:ff9b::10.0.0.5", "private"),
    ("2002:a00:5::1", "private"),
    ("::10.0.0.5", "reserved"),
    # special-purpose ranges named explicitly (not left to the interpreter's is_global tables)
    ("fec0::1", "site-local"),
    ("feff:ffff::1", "site-local"),
    ("192.88.99.1", "6to4 relay anycast"),
    ("192.88.99.255", "6to4 relay anycast"),
    ("198.19.255.254", "benchmarking"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.7", "documentation"),
    ("192.0.0.8", "IETF protocol assignments"),
    ("2001:db8:ffff::1", "documentation"),
    ("3fff::1", "documentation"),
    ("64:ff9b:1::808:808", "local-use NAT64"),
    ("100::1", "discard-only"),
    ("2001:20::1", "IETF protocol assignments"),
    ("5f00::1", "SRv6"),
    # non-public IPv4 inside NAT64 and 6to4 spellings
    ("64:ff9b::c0a8:101", "private"),
    ("64:ff9b::6440:1", "shared address space"),
    ("64:ff9b::c612:1", "benchmarking"),
    ("64:ff9b::c058:6301", "6to4 relay anycast"),
    ("64:ff9b::f000:1", "reserved"),
    ("2002:c0a8:101::1", "private"),
    ("2002:6440:1::1", "shared address space"),
    ("2002:c612:1::1", "benchmarking"),
    ("2002:c058:6301::1", "6to4 relay anycast"),
    ("2002:f000:1::1", "reserved"),
    ("2002:7f00:1::1", "loopback"),
    ("2002:a9fe:a9fe::1", "metadata"),
    # loopback (not allowed here)
    ("127.0.0.1", "loopback"),
    ("127.1.2.3", "loopback"),
    ("::1", "loopback"),
]


@pytest.mark.parametrize(("ip", "why"), REFUSED)
def test_check_address_refuses(ip, why):
    with pytest.raises(OutboundRefused) as info:
        check_address(ip, allow_loopback=False)
    message = str(info.value)
    assert why in message
    assert ip in message
    assert message.endswith("refused")


@pytest.mark.parametrize(("ip", "why"), [(ip, why) for ip, why in REFUSED if why != "loopback"])
def test_allow_loopback_does_not_open_anything_else(ip, why):
    with pytest.raises(OutboundRefused, match=why):
        check_address(ip, allow_loopback=True)


@pytest.mark.parametrize("ip", ["127.0.0.1", "127.0.0.2", "127.255.255.254", "::1", "::ffff:127.0.0.1"])
def test_loopback_only_when_allowed(ip):
    check_address(ip, allow_loopback=True)
    with pytest.raises(OutboundRefused, match="loopback"):
        check_address(ip, allow_loopback=False)


@pytest.mark.parametrize(
    "ip",
    ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808",
     "2002:808:808::1", "2001:4860:4860::8888", "2a00:1450::1", "192.88.100.1", "198.20.0.1",
     "100.128.0.1"],
)
def test_public_addresses_pass(ip):
    check_address(ip, allow_loopback=False)


def test_metadata_message_names_host():
    with pytest.raises(OutboundRefused) as info:
        check_address("169.254.169.254", allow_loopback=True, host="idp.example")
    assert str(info.value) == "address 169.254.169.254 of idp.example is a cloud metadata address: refused"


@pytest.mark.parametrize("ip", ["not-an-ip", "", "10.0.0.256", "idp.example.com"])
def test_non_ip_refused(ip):
    with pytest.raises(OutboundRefused, match="not an IP address"):
        check_address(ip, allow_loopback=True)


# --------------------------------------------------------------------------- check_url


@pytest.mark.parametrize(
    "url",
    [
        "https://idp.example.com",
        "https://idp.example.com/.well-known/openid-configuration",
        "https://tenant.auth0.com/",
        "https://idp.example.com:8443/path?x=1",
        "https://8.8.8.8/",
    ],
)
def test_check_url_accepts_https(url):
    check_url(url, allow_loopback=False)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/", "http://127.0.0.2/x", "http://[::1]:9000/", "http://localhost:1234/"]
)
def test_http_only_for_loopback_hosts_when_allowed(url):
    check_url(url, allow_loopback=True)
    with pytest.raises(OutboundRefused):
        check_url(url, allow_loopback=False)


@pytest.mark.parametrize(
    "url", ["http://idp.example.com/", "http://10.0.0.5/", "http://8.8.8.8/", "http://localhost.evil.com/"]
)
def test_http_refused_for_other_hosts_even_with_loopback(url):
    with pytest.raises(OutboundRefused, match="must use https"):
        check_url(url, allow_loopback=True)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://idp.example.com/",
        "file:///etc/passwd",
        "gopher://idp.example.com/",
        "javascript:alert(1)",
        "//x/",
    ],
)
def test_other_schemes_refused(url):
    with pytest.raises(OutboundRefused, match="scheme"):
        check_url(url, allow_loopback=True)


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pass@idp.example.com/",
        "https://user@idp.example.com/",
        "https://:pass@idp.example.com/",
        "http://user:pass@127.0.0.1:8080/",
    ],
)
def test_userinfo_refused(url):
    with pytest.raises(OutboundRefused) as info:
        check_url(url, allow_loopback=True)
    assert "user name or password" in str(info.value)
    assert "pass" not in str(info.value).replace("password", "")


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.5/",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd00:ec2::254]/",
        "https://[::ffff:192.168.1.1]/",
        "https://127.0.0.1/",
    ],
)
def test_ip_literal_hosts_checked_immediately(url):
    with pytest.raises(OutboundRefused, match="refused"):
        check_url(url, allow_loopback=False)


@pytest.mark.parametrize(
    "url", ["", "https://", "https:///path", "https://idp.example.com:99999/", "https://idp.example.com\\@x/"]
)
def test_malformed_urls_refused(url):
    with pytest.raises(OutboundRefused):
        check_url(url, allow_loopback=True)


# --------------------------------------------------------------------------- resolver injection


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to resolve or connect is recorded and fails."""
    attempts: list = []

    def deny(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", deny)
    monkeypatch.setattr(socket.socket, "connect_ex", deny)
    monkeypatch.setattr(socket, "create_connection", deny)
    monkeypatch.setattr(socket, "getaddrinfo", deny)
    return attempts


def resolver_for(mapping):
    calls = []

    def resolve(host, port):
        calls.append((host, port))
        return list(mapping[host])

    resolve.calls = calls
    return resolve


@pytest.mark.parametrize(
    ("ip", "why"),
    [
        ("10.0.0.5", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("fd00:ec2::254", "cloud metadata"),
        ("::ffff:10.0.0.5", "private"),
        ("127.0.0.1", "loopback"),
        ("fec0::5", "site-local"),
        ("192.88.99.1", "6to4 relay anycast"),
        ("100.64.0.1", "shared address space"),
        ("198.18.0.1", "benchmarking"),
        ("240.0.0.1", "reserved"),
        ("2001:db8::1", "documentation"),
        ("64:ff9b::a00:5", "private"),
        ("2002:a00:5::1", "private"),
    ],
)
@pytest.mark.parametrize("call", ["get", "post"])
def test_resolved_forbidden_address_refused_before_connect(no_network, ip, why, call):
    resolve = resolver_for({"idp.example": [ip]})
    with pytest.raises(OutboundRefused) as info:
        if call == "get":
            safe_get("https://idp.example/x", allow_loopback=False, resolver=resolve)
        else:
            safe_post_form("https://idp.example/token", {"a": "b"}, allow_loopback=False, resolver=resolve)
    message = str(info.value)
    assert message.startswith(f"address {ip} of idp.example is ")
    assert why in message
    assert message.endswith(": refused")
    assert resolve.calls == [("idp.example", 443)]
    assert no_network == []


def test_every_resolved_address_checked_before_any_connect(no_network):
    # A public first answer must not be tried when a later answer is forbidden.
    resolve = resolver_for({"idp.example": ["8.8.8.8", "169.254.169.254"]})
    with pytest.raises(OutboundRefused, match="169.254.169.254 of idp.example"):
        safe_get("https://idp.example/", allow_loopback=False, resolver=resolve)
    assert no_network == []


def test_loopback_http_refused_without_resolving(no_network):
    resolve = resolver_for({})
    with pytest.raises(OutboundRefused, match="must use https"):
        safe_get("http://127.0.0.1:8080/", allow_loopback=False, resolver=resolve)
    with pytest.raises(OutboundRefused, match="loopback"):
        safe_get("https://127.0.0.1:8443/", allow_loopback=False, resolver=resolve)
    assert resolve.calls == []
    assert no_network == []


def test_metadata_ip_literal_refused(no_network):
    with pytest.raises(OutboundRefused, match="cloud metadata"):
        safe_get("https://169.254.169.254/latest/meta-data/", allow_loopback=True)
    with pytest.raises(OutboundRefused, match="cloud metadata"):
        safe_get("https://[fd00:ec2::254]/", allow_loopback=True)
    assert no_network == []


@pytest.fixture
def recorded_connects(monkeypatch):
    """Connects are recorded and refused locally (ECONNREFUSED); nothing is sent."""
    seen: list = []

    def fake_connect(self, address):
        seen.append((self.family, address))
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(socket.socket, "connect", fake_connect)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("create_connection used"))
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: pytest.fail("getaddrinfo used"))
    return seen


def test_connects_to_the_checked_ip_not_the_name(recorded_connects):
    answers = iter([["8.8.8.8"], ["10.0.0.5"]])  # a rebinding resolver: public first, private next

    def rebinding(host, port):
        return next(answers)

    with pytest.raises(OutboundError) as info:
        safe_get("https://idp.example:8443/", allow_loopback=False, resolver=rebinding)
    assert str(info.value) == "could not connect to idp.example: connection refused"
    assert recorded_connects == [(socket.AF_INET, ("8.8.8.8", 8443))]


def test_tries_each_checked_address_ipv6_included(recorded_connects):
    resolve = resolver_for({"idp.example": ["2606:4700:4700::1111", "1.1.1.1"]})
    with pytest.raises(OutboundError, match="connection refused"):
        safe_get("https://idp.example/", allow_loopback=False, resolver=resolve)
    assert recorded_connects == [
        (socket.AF_INET6, ("2606:4700:4700::1111", 443, 0, 0)),
        (socket.AF_INET, ("1.1.1.1", 443)),
    ]


def test_connect_timeout_message(monkeypatch):
    def slow_connect(self, address):
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket.socket, "connect", slow_connect)
    resolve = resolver_for({"idp.example": ["8.8.8.8"]})
    with pytest.raises(OutboundError) as info:
        safe_get("https://idp.example/", allow_loopback=False, resolver=resolve, connect_timeout=0.01)
    assert str(info.value) == "could not connect to idp.example: timed out"
    assert not isinstance(info.value, OutboundRefused)


def test_resolution_failure_is_an_outbound_error(no_network):
    def failing(host, port):
        raise socket.gaierror(-2, "Name or service not known")

    with pytest.raises(OutboundError, match="could not resolve idp.example"):
        safe_get("https://idp.example/", allow_loopback=False, resolver=failing)
    with pytest.raises(OutboundError, match="no addresses"):
        safe_get("https://idp.example/", allow_loopback=False, resolver=lambda h, p: [])


def test_garbage_from_resolver_refused(no_network):
    with pytest.raises(OutboundRefused, match="not an IP address"):
        safe_get("https://idp.example/", allow_loopback=False, resolver=lambda h, p: ["evil.example"])


def test_default_resolver_uses_getaddrinfo(monkeypatch):
    def fake_getaddrinfo(host, port, *args, **kwargs):
        assert (host, port) == ("idp.example", 443)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("203.0.114.1", 443)),
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2001:4860::1", 443, 0, 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("203.0.114.1", 443)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    assert netguard.default_resolver("idp.example", 443) == ["203.0.114.1", "2001:4860::1"]


def test_environment_proxies_ignored(monkeypatch, recorded_connects):
    monkeypatch.setenv("HTTPS_PROXY", "http://10.1.2.3:3128")
    monkeypatch.setenv("ALL_PROXY", "http://10.1.2.3:3128")
    resolve = resolver_for({"idp.example": ["8.8.8.8"]})
    with pytest.raises(OutboundError):
        safe_get("https://idp.example/", allow_loopback=False, resolver=resolve)
    assert recorded_connects == [(socket.AF_INET, ("8.8.8.8", 443))]


def test_error_classes_are_distinct():
    assert not issubclass(OutboundError, OutboundRefused)
    assert not issubclass(OutboundRefused, OutboundError)
    assert issubclass(ResponseTooLarge, OutboundRefused)


# --------------------------------------------------------------------------- the urllib3 seam

# netguard replaces urllib3's private HTTPConnection._new_conn (resolve-and-connect) and relies on
# both connect() methods calling it. A private method may change in any release, so urllib3 is
# pinned and these recorded fingerprints make an upgrade fail here until the seam is re-read.
URLLIB3_SEAM = {
    "HTTPConnection._new_conn": ("(self) -> 'socket.socket'",
                                 "83e6a5dd7db98a0aa4a1e6db300238324b3d5289c12fb53c839953ec5c04a077"),
    "HTTPConnection.connect": ("(self) -> 'None'",
                               "b70c63e7308857b15acd339999f35996b1788e3ca6fdbe754ac50390593febcb"),
    "HTTPSConnection.connect": ("(self) -> 'None'",
                                "2a2e1795406d7f38155fe9eabb52b87fdb12b17ed83d31d80e45e591180334ff"),
}


def _pinned(package: str) -> str:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for line in (root / "requirements.txt").read_text().splitlines():
        name, _, version = line.split("#", 1)[0].strip().partition("==")
        if name.lower() == package:
            return version
    raise AssertionError(f"{package} is not pinned in requirements.txt")


def test_urllib3_is_the_pinned_version():
    import urllib3

    assert urllib3.__version__ == _pinned("urllib3")


@pytest.mark.parametrize("qualname", sorted(URLLIB3_SEAM))
def test_urllib3_seam_unchanged(qualname):
    import hashlib
    import inspect

    from urllib3 import connection

    owner, method = qualname.split(".")
    function = getattr(getattr(connection, owner), method)
    assert function.__qualname__ == qualname, f"{qualname} is now inherited or moved"
    signature, digest = URLLIB3_SEAM[qualname]
    assert str(inspect.signature(function)) == signature
    assert hashlib.sha256(inspect.getsource(function).encode()).hexdigest() == digest, (
        f"urllib3's {qualname} changed: re-check netguard's _GuardedConnectionMixin, then re-record")


def test_guarded_connections_override_the_seam():
    from urllib3.connection import HTTPConnection

    for cls in (netguard._GuardedHTTPConnection, netguard._GuardedHTTPSConnection):
        assert cls._new_conn is netguard._GuardedConnectionMixin._new_conn
        assert cls._new_conn is not HTTPConnection._new_conn
