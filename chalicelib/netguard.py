"""Safe outbound HTTP for URLs that administrators configure.

Upstream identity providers (discovery documents, JWKS, token endpoints) live at
URLs typed in by an administrator, so every request to them is a server-side
request forgery risk. This module is the only door out:

- :func:`check_url` refuses anything but ``https`` (``http`` only for loopback
  hosts when loopback is explicitly allowed, i.e. local development) and URLs
  that carry a user name or password.
- :func:`check_address` refuses private, link-local (cloud metadata), CGNAT,
  unspecified, multicast, reserved and (unless allowed) loopback addresses,
  including their IPv4-mapped / NAT64 / 6to4 IPv6 spellings.
- :func:`safe_get` / :func:`safe_post_form` resolve the host once through an
  injectable resolver, check *every* resolved address, then connect to the
  checked IP itself, so DNS rebinding between check and connect is impossible.
  TLS SNI and certificate verification still use the host name. Redirects are
  followed by hand and only to the same scheme, host and port; bodies are
  streamed and capped; the whole exchange is bounded by a total deadline.
- Connections are kept alive and reused within a container, pooled per
  (scheme, host, port, checked addresses): every request still resolves and
  checks the host first, and a new DNS answer is a new pool, so a kept
  connection only ever serves the host and the addresses just checked.
- :func:`guard_session` puts a ``requests.Session`` built by a library (authlib's
  ``OAuth2Session``, the client toward upstream IdPs) behind the same two doors:
  its only transport is :class:`SessionAdapter`, which sends each request through
  :func:`safe_get` or :func:`safe_post_form`.

Messages of :class:`OutboundRefused` and :class:`OutboundError` are meant for
administrators: they name the host and the reason, never bodies or secrets.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict
from urllib.parse import parse_qsl, urljoin, urlsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import PoolManager

from chalicelib import clock
from chalicelib.settings import is_loopback_host

__all__ = [
    "DEFAULT_MAX_BYTES",
    "OutboundError",
    "OutboundRefused",
    "Resolver",
    "ResponseTooLarge",
    "SafeResponse",
    "SessionAdapter",
    "check_address",
    "check_url",
    "close_pooled_connections",
    "default_resolver",
    "guard_session",
    "safe_get",
    "safe_post_form",
]

Resolver = Callable[[str, int], list[str]]
"""``(host, port) -> [ip, ...]``; the default uses :func:`socket.getaddrinfo`."""

DEFAULT_MAX_BYTES = 128 * 1024
# SPEC §8: upstream HTTP connects within 3 s and the whole exchange (redirects and body included)
# ends within 10 s. Callers may ask for less, never for more; a request's remaining budget
# (chalicelib.aws.request_deadline) shortens the whole-exchange bound further.
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 5.0
TOTAL_TIMEOUT = 10.0
_CHUNK = 16 * 1024
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_USER_AGENT = "oidc-broker-netguard/1"


class OutboundRefused(Exception):
    """A request was refused by policy (scheme, address, redirect, size...)."""


class ResponseTooLarge(OutboundRefused):
    """The response body exceeded the byte cap."""


class OutboundError(Exception):
    """The request was allowed but failed (resolution, connect, timeout, TLS...)."""


# --------------------------------------------------------------------------- addresses

_METADATA = (
    ipaddress.ip_address("169.254.169.254"),  # AWS/GCP/Azure/OpenStack instance metadata
    ipaddress.ip_address("fd00:ec2::254"),  # AWS instance metadata over IPv6
    ipaddress.ip_address("169.254.170.2"),  # ECS task metadata / credentials
    ipaddress.ip_address("169.254.170.23"),  # EKS pod identity agent
    ipaddress.ip_address("fd00:ec2::23"),
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_NAT64_WKP = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix
_PRIVATE = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
# IANA special-purpose ranges that are not globally reachable, spelled out here rather than left to
# the interpreter's is_global (whose tables change between Python releases). RFC 6890 and updates.
_NOT_PUBLIC = tuple((ipaddress.ip_network(n), why) for n, why in (
    ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
    ("192.0.2.0/24", "documentation (RFC 5737)"),
    ("192.88.99.0/24", "6to4 relay anycast (RFC 7526)"),
    ("198.18.0.0/15", "benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "documentation (RFC 5737)"),
    ("203.0.113.0/24", "documentation (RFC 5737)"),
    ("240.0.0.0/4", "reserved (RFC 1112)"),
    ("64:ff9b:1::/48", "local-use NAT64 (RFC 8215)"),
    ("100::/64", "discard-only (RFC 6666)"),
    ("2001::/23", "IETF protocol assignments (RFC 2928)"),
    ("2001:db8::/32", "documentation (RFC 3849)"),
    ("3fff::/20", "documentation (RFC 9637)"),
    ("5f00::/16", "SRv6 SIDs (RFC 9602)"),
    ("fec0::/10", "site-local (deprecated, RFC 3879)"),
))


def _parse_ip(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    text = ip.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise OutboundRefused(f"{ip[:100]!r} is not an IP address: refused") from None


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address | None, bool]:
    """The IPv4 address an IPv6 address stands for, and whether that decides alone.

    IPv4-mapped (::ffff:a.b.c.d) and NAT64 well-known-prefix (64:ff9b::a.b.c.d)
    addresses *are* their IPv4 address; a 6to4 address (2002:AABB:CCDD::) embeds
    one but is routed through a relay, so the outer address is checked as well.
    """
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped, True
    if addr in _NAT64_WKP:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF), True
    if addr.sixtofour is not None:
        return addr.sixtofour, False
    return None, False


def _classify(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_loopback: bool) -> str | None:
    """Why ``addr`` is forbidden, or None when it is a public unicast address."""
    if addr.version == 6:
        if addr.scope_id:
            addr = ipaddress.IPv6Address(addr.compressed.split("%", 1)[0])
        inner, decisive = _embedded_ipv4(addr)
        if inner is not None:
            why = _classify(inner, allow_loopback)
            if why is not None or decisive:
                return why
    if addr in _METADATA:
        return "a cloud metadata address"
    if addr.is_unspecified or (addr.version == 4 and addr in _THIS_NETWORK):
        return "unspecified"
    if addr.is_loopback:
        return None if allow_loopback else "loopback"
    if addr.is_link_local:
        return "link-local"
    if addr.is_multicast:
        return "multicast"
    if addr.version == 4 and addr in _CGNAT:
        return "shared address space (100.64.0.0/10)"
    if any(addr in net for net in _PRIVATE if net.version == addr.version):
        return "private"
    for net, why in _NOT_PUBLIC:
        if net.version == addr.version and addr in net:
            return f"not a public address: {why}"
    if addr.is_reserved:  # 240.0.0.0/4 incl. broadcast, IPv4-compatible ::a.b.c.d, ...
        return "reserved"
    if addr.is_private or not addr.is_global:  # documentation, benchmarking, Teredo, ...
        return "not a public address"
    return None


def check_address(ip: str, allow_loopback: bool, *, host: str | None = None) -> None:
    """Raise :class:`OutboundRefused` unless ``ip`` is a public unicast address.

    Loopback (127.0.0.0/8, ::1) passes only when ``allow_loopback``. ``host``
    only enriches the message ("address 10.0.0.5 of idp.example is private").
    """
    addr = _parse_ip(ip)
    why = _classify(addr, allow_loopback)
    if why is not None:
        of = f" of {host}" if host and host != ip else ""
        raise OutboundRefused(f"address {ip}{of} is {why}: refused")


# --------------------------------------------------------------------------- URLs


def _ip_literal(host: str) -> str | None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return host


def check_url(url: str, allow_loopback: bool) -> None:
    """Raise :class:`OutboundRefused` unless ``url`` may be fetched.

    ``https`` always (subject to the address checks made at connect time);
    ``http`` only for a loopback host (127.0.0.0/8, ::1, localhost) and only
    when ``allow_loopback``. No user name or password in the URL. A host that
    is an IP literal is checked with :func:`check_address` right away.
    """
    if not isinstance(url, str) or not url:
        raise OutboundRefused("URL is empty: refused")
    if any(ord(c) <= 0x20 or c in "\\\x7f" for c in url):
        raise OutboundRefused("URL contains whitespace, control characters or backslashes: refused")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise OutboundRefused("URL is malformed: refused") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise OutboundRefused(f"URL scheme must be https, not {scheme[:20]!r}: refused")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise OutboundRefused("URL must not contain a user name or password: refused")
    host = parts.hostname
    if not host:
        raise OutboundRefused("URL has no host: refused")
    if port == 0:
        raise OutboundRefused("URL port 0 is invalid: refused")
    if scheme == "http" and not (allow_loopback and is_loopback_host(host)):
        raise OutboundRefused(
            f"URL must use https (http is only allowed for loopback hosts in local development): {host}"
        )
    literal = _ip_literal(host)
    if literal is not None:
        check_address(literal, allow_loopback)


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").rstrip(".").lower(), port


def _origin_text(url: str) -> str:
    scheme, host, port = _origin(url)
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def _host_of(url: str) -> str:
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


# --------------------------------------------------------------------------- connections


def default_resolver(host: str, port: int) -> list[str]:
    """All IPv4/IPv6 addresses of ``host`` via :func:`socket.getaddrinfo`."""
    ips: list[str] = []
    for family, _type, _proto, _canon, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = str(sockaddr[0])  # an IPv4 or IPv6 address: always a str for these families
        if family in (socket.AF_INET, socket.AF_INET6) and address not in ips:
            ips.append(address)
    return ips


def _reason(exc: BaseException) -> str:
    for e in _causes(exc):
        if isinstance(e, (socket.timeout, TimeoutError, urllib3.exceptions.TimeoutError)):
            return "timed out"
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, ConnectionResetError):
            return "connection reset"
        if isinstance(e, http.client.RemoteDisconnected):
            return "connection closed by the server"
        if isinstance(e, urllib3.exceptions.LocationParseError):
            return "invalid host"
    for e in _causes(exc):
        if isinstance(e, OSError) and e.strerror:
            return e.strerror[:100]
    return "connection failed"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps (cause/context/urllib3 reason/args), bounded."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 20:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        for nxt in (e.__cause__, e.__context__, getattr(e, "reason", None), *getattr(e, "args", ())):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


@dataclass
class _Guard:
    """Per-exchange policy shared by the connections an adapter creates."""

    resolver: Resolver
    allow_loopback: bool
    deadline: float
    connect_timeout: float
    expired: bool = False
    reused: bool = False  # the current request went out on a kept connection
    _stopped: bool = False
    _sockets: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _timer: threading.Timer | None = None

    def remaining(self) -> float:
        return self.deadline - clock.monotonic()

    # The watchdog: per-operation socket timeouts cannot bound a server that
    # trickles bytes (headers or body) just fast enough, so at the deadline every
    # socket of the exchange is shut down, which unblocks any pending read.
    def start_watchdog(self) -> None:
        self._timer = threading.Timer(max(0.0, self.remaining()), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def stop_watchdog(self) -> None:
        # After this returns the watchdog shuts nothing down: the sockets of this exchange may
        # already serve another one from the pool.
        with self._lock:
            self._stopped = True
        if self._timer is not None:
            self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self.expired = True
            for sock in self._sockets:
                _shutdown(sock)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shutdown(sock)

    def _untrack(self, sock: socket.socket) -> None:
        """A connection goes back to the pool: it is no longer this exchange's to cut."""
        with self._lock:
            self._sockets = [s for s in self._sockets if s is not sock]

    def resolve(self, host: str, port: int) -> tuple[str, ...]:
        """The addresses of ``host``, every one checked before any connection is attempted."""
        host = host.strip("[]").rstrip(".")
        literal = _ip_literal(host.split("%", 1)[0])
        if literal is not None:
            ips = [host]
        else:
            try:
                ips = list(self.resolver(host, port))
            except (OSError, UnicodeError) as e:
                raise OutboundError(f"could not resolve {host}") from e
            if not ips:
                raise OutboundError(f"could not resolve {host}: no addresses")
        for ip in ips:
            check_address(ip, self.allow_loopback, host=host)
        return tuple(ips)

    def connect(
        self, host: str, port: int, ips: tuple[str, ...], timeout: Any, source_address: Any,
        socket_options: Any,
    ) -> socket.socket:
        """Connect to the first of ``ips`` (checked by :meth:`resolve` for this very request)
        that answers; each is checked again under this exchange's policy all the same."""
        host = host.strip("[]").rstrip(".")
        for ip in ips:
            check_address(ip, self.allow_loopback, host=host)
        per_try = timeout if isinstance(timeout, (int, float)) else self.connect_timeout
        last: BaseException | None = None
        for ip in ips:
            remaining = self.remaining()
            if remaining <= 0:
                raise OutboundError(f"could not connect to {host}: timed out")
            addr = _parse_ip(ip)
            family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                for opt in socket_options or ():
                    sock.setsockopt(*opt)
                sock.settimeout(max(0.001, min(per_try, remaining)))
                if source_address:
                    sock.bind(source_address)
                sockaddr: tuple[Any, ...] = (
                    (str(addr), port) if addr.version == 4 else (str(addr), port, 0, 0)
                )
                sock.connect(sockaddr)
            except OSError as e:
                sock.close()
                last = e
                continue
            self._track(sock)
            return sock
        assert last is not None
        raise OutboundError(f"could not connect to {host}: {_reason(last)}") from last


def _shutdown(sock: socket.socket) -> None:
    try:
        # The plain-socket method on purpose: SSLSocket.shutdown would also drop the
        # TLS object under the feet of the thread that is reading.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed (or detached by the TLS wrap)


# The exchange (its _Guard) the current thread runs: connections are pooled across exchanges,
# so a connection finds the deadline and watchdog of whichever exchange is using it here.
_current = threading.local()


def _current_guard() -> _Guard:
    guard = getattr(_current, "guard", None)
    if guard is None:
        raise OutboundError("outbound connection outside a netguard exchange: refused")
    return guard


class _GuardedConnectionMixin:
    _ips: tuple[str, ...]  # the pool's checked addresses
    sock: Any
    host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any

    def _new_conn(self) -> socket.socket:  # replaces urllib3's resolve-and-connect
        sock = _current_guard().connect(
            self.host, self.port, self._ips, self.timeout, self.source_address,
            self.socket_options
        )
        sys.audit("http.client.connect", self, self.host, self.port)
        return sock

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        # For https the TLS socket replaces (and detaches) the one _new_conn made.
        sock = getattr(self, "sock", None)
        if sock is not None:
            _current_guard()._track(sock)


class _GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass  # TLS wrap (SNI + hostname verification) still uses self.host, the name


class _GuardedPoolMixin:
    """A pool of kept connections to one (scheme, host, port, checked addresses).

    A connection taken from it joins the current exchange (its watchdog may cut it); one given
    back leaves it. One that sat idle longer than ``POOL_IDLE_SECONDS`` is closed rather than
    reused, so a request rarely meets a connection the server is closing right then; one the
    server already closed (or that holds unread bytes) urllib3 drops at checkout."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        guard = _current_guard()
        if conn.sock is not None:
            idle_since = getattr(conn, "_netguard_idle_since", None)
            if idle_since is not None and clock.monotonic() - idle_since > POOL_IDLE_SECONDS:
                conn.close()
            else:
                guard.reused = True
                guard._track(conn.sock)
        return conn

    def _put_conn(self, conn: Any) -> None:
        guard = getattr(_current, "guard", None)
        if conn is not None and conn.sock is not None:
            if guard is not None:
                guard._untrack(conn.sock)
                if guard.expired:  # the watchdog may have shut it down: never keep it
                    conn.close()
            conn._netguard_idle_since = clock.monotonic()
        super()._put_conn(conn)  # type: ignore[misc]


class _GuardedAdapter(HTTPAdapter):
    """The transport to one host at the addresses checked for it: its connections connect
    to those addresses only, and are kept for the next request with the same answer."""

    def __init__(self, ips: tuple[str, ...]):
        self._ips = ips
        super().__init__(pool_connections=1, pool_maxsize=POOL_MAXSIZE, max_retries=0)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        ips = self._ips
        http_conn = type("GuardedHTTPConnection", (_GuardedHTTPConnection,), {"_ips": ips})
        https_conn = type("GuardedHTTPSConnection", (_GuardedHTTPSConnection,), {"_ips": ips})
        http_pool = type("GuardedHTTPConnectionPool", (_GuardedPoolMixin, HTTPConnectionPool),
                         {"ConnectionCls": http_conn})
        https_pool = type("GuardedHTTPSConnectionPool", (_GuardedPoolMixin, HTTPSConnectionPool),
                          {"ConnectionCls": https_conn})
        self._pool_connections = connections
        self._pool_maxsize = maxsize
        self._pool_block = block
        self.poolmanager = PoolManager(num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        raise OutboundRefused("proxies are not supported for outbound requests")


# Kept connections, per container: at most POOL_HOSTS origins (least recently used dropped) of
# at most POOL_MAXSIZE idle connections each. The key holds the addresses checked for this very
# request, so a new DNS answer never reuses a connection made for the old one.
POOL_HOSTS = 32
POOL_MAXSIZE = 4
# A connection idle this long is closed, not reused: below the 5 s keep-alive timeout of Node's
# http server (oidc-provider) and Apache, so a request is never written on a connection the
# server is closing at that moment (a code POST cannot be retried safely). Under load, calls to
# one IdP come far more often than that, so reuse still pays where it matters.
POOL_IDLE_SECONDS = 4.0
_pools: OrderedDict[tuple[str, str, int, tuple[str, ...]], _GuardedAdapter] = OrderedDict()
_pools_lock = threading.Lock()


def _adapter_for(scheme: str, host: str, port: int, ips: tuple[str, ...]) -> _GuardedAdapter:
    key = (scheme, host, port, tuple(sorted(ips)))
    evicted: list[_GuardedAdapter] = []
    with _pools_lock:
        adapter = _pools.get(key)
        if adapter is None:
            adapter = _pools[key] = _GuardedAdapter(ips)
            while len(_pools) > POOL_HOSTS:
                evicted.append(_pools.popitem(last=False)[1])
        else:
            _pools.move_to_end(key)
    for old in evicted:
        old.close()  # idle connections now; one in use is closed when it is given back
    return adapter


def close_pooled_connections() -> None:
    """Forget every kept connection (tests that want a cold container)."""
    with _pools_lock:
        adapters = list(_pools.values())
        _pools.clear()
    for adapter in adapters:
        adapter.close()


# --------------------------------------------------------------------------- exchange


@dataclass(frozen=True)
class SafeResponse:
    status_code: int
    headers: Mapping[str, str]
    content: bytes
    url: str  # final URL, after same-origin redirects
    history: tuple[str, ...] = field(default=())  # URLs that redirected here


def _size_text(max_bytes: int) -> str:
    return f"{max_bytes // 1024} KB" if max_bytes % 1024 == 0 else f"{max_bytes} bytes"


def _is_tls_error(e: BaseException) -> bool:
    return isinstance(
        e, (ssl.SSLError, ssl.CertificateError, urllib3.exceptions.SSLError, requests.exceptions.SSLError)
    )


def _translate(exc: BaseException, host: str, *, reading: bool = False) -> Exception:
    """One clean, admin-readable exception for whatever requests/urllib3 raised."""
    causes = list(_causes(exc))
    for e in causes:
        if isinstance(e, (OutboundError, OutboundRefused)):
            return e
    if any(_is_tls_error(e) for e in causes):
        if any(isinstance(e, ssl.SSLCertVerificationError) for e in causes) or any(
            "certificate verify failed" in str(e).lower() for e in causes
        ):
            return OutboundError(f"could not connect to {host}: TLS certificate verification failed")
        return OutboundError(f"could not connect to {host}: TLS handshake failed")
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return OutboundError(f"could not read from {host}: timed out")
    if reading:
        if any(
            isinstance(e, (http.client.IncompleteRead, urllib3.exceptions.IncompleteRead)) for e in causes
        ):
            return OutboundError(
                f"could not read from {host}: connection closed before the response was complete"
            )
        if any(isinstance(e, urllib3.exceptions.DecodeError) for e in causes):
            return OutboundError(f"could not read from {host}: response could not be decoded")
        return OutboundError(f"could not read from {host}: {_reason(exc)}")
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return OutboundError(f"could not connect to {host}: timed out")
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidHeader, ValueError)):
        return OutboundError(f"request to {host} failed: invalid request")
    return OutboundError(f"could not connect to {host}: {_reason(exc)}")


def _set_read_timeout(resp: requests.Response, seconds: float) -> None:
    conn = getattr(resp.raw, "connection", None)
    sock = getattr(conn, "sock", None)
    if sock is not None:
        try:
            sock.settimeout(max(0.001, seconds))
        except OSError:
            pass


def _read_body(
    resp: requests.Response, host: str, guard: _Guard, read_timeout: float, max_bytes: int
) -> bytes:
    too_large = ResponseTooLarge(f"response larger than {_size_text(max_bytes)}")
    declared = resp.headers.get("Content-Length", "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    body = bytearray()
    while True:
        remaining = guard.remaining()
        if remaining <= 0:
            raise OutboundError(f"could not read from {host}: timed out")
        _set_read_timeout(resp, min(read_timeout, remaining))
        try:
            chunk = resp.raw.read(_CHUNK, decode_content=True)
        except (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException) as e:
            raise _translate(e, host, reading=True) from e
        if not chunk:
            break
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    return bytes(body)


def _request_budget() -> float | None:
    """Seconds left of the current request's budget, if one is set (see chalicelib.aws)."""
    try:
        from chalicelib.aws import remaining
    except ImportError:  # netguard used on its own
        return None
    return remaining()


def _exchange(
    method: str,
    url: str,
    *,
    data: Mapping[str, str] | None,
    auth: Any,
    headers: Mapping[str, str] | None,
    allow_loopback: bool,
    resolver: Resolver | None,
    connect_timeout: float | None,
    read_timeout: float | None,
    total_timeout: float | None,
    max_bytes: int,
    max_redirects: int,
) -> SafeResponse:
    connect_timeout = min(CONNECT_TIMEOUT if connect_timeout is None else connect_timeout,
                          CONNECT_TIMEOUT)
    read_timeout = min(READ_TIMEOUT if read_timeout is None else read_timeout, TOTAL_TIMEOUT)
    total_timeout = min(TOTAL_TIMEOUT if total_timeout is None else total_timeout, TOTAL_TIMEOUT)
    budget = _request_budget()
    if budget is not None:
        if budget <= 0:
            raise OutboundError(f"could not connect to {_host_of(url)}: timed out "
                                "(the request's deadline passed)")
        total_timeout = min(total_timeout, budget)
    guard = _Guard(
        resolver=resolver or default_resolver,
        allow_loopback=allow_loopback,
        deadline=clock.monotonic() + total_timeout,
        connect_timeout=connect_timeout,
    )
    request_headers = {"User-Agent": _USER_AGENT, "Accept": "application/json", "Accept-Encoding": "identity"}
    request_headers.update(headers or {})
    session = requests.Session()
    session.trust_env = False  # no proxies from the environment, no ~/.netrc credentials
    session.adapters.clear()  # only the pooled adapter of each request's checked origin
    history: list[str] = []
    current = url
    host = _host_of(url)
    body = data
    previous, _current.guard = getattr(_current, "guard", None), guard
    guard.start_watchdog()
    try:
        while True:
            check_url(current, allow_loopback)
            host = _host_of(current)
            scheme, origin_host, port = _origin(current)
            ips = guard.resolve(urlsplit(current).hostname or "", port)
            session.mount(f"{scheme}://", _adapter_for(scheme, origin_host, port, ips))
            guard.reused = False
            remaining = guard.remaining()
            if remaining <= 0:
                raise OutboundError(f"could not connect to {host}: timed out")
            try:
                resp = session.request(
                    method,
                    current,
                    data=body,
                    auth=auth,
                    headers=request_headers,
                    allow_redirects=False,
                    stream=True,
                    timeout=(min(connect_timeout, remaining), min(read_timeout, remaining)),
                )
            except (OutboundRefused, OutboundError):
                raise
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError) as e:
                raise _translate(e, host) from e
            try:
                location = resp.headers.get("Location")
                if resp.status_code in _REDIRECT_STATUSES and location:
                    if len(history) >= max_redirects:
                        raise OutboundRefused(f"too many redirects (more than {max_redirects}): refused")
                    try:
                        target = urljoin(current, location.strip())
                        same_origin = _origin(target) == _origin(current)
                    except ValueError:
                        raise OutboundRefused("redirect refused: malformed Location header") from None
                    if not same_origin:
                        raise OutboundRefused(
                            f"redirect to another host refused: {_origin_text(current)} "
                            f"redirected to {_origin_text(target)}"
                        )
                    try:
                        check_url(target, allow_loopback)
                    except OutboundRefused as e:
                        raise OutboundRefused(f"redirect refused: {e}") from None
                    if resp.status_code in (301, 302, 303) and method != "GET":
                        method, body = "GET", None
                    history.append(current)
                    current = target.split("#", 1)[0]
                    continue
                content = _read_body(resp, host, guard, read_timeout, max_bytes)
                if guard.expired:  # the watchdog cut the body short
                    raise OutboundError(f"could not read from {host}: timed out")
                return SafeResponse(
                    status_code=resp.status_code,
                    headers=CaseInsensitiveDict(resp.headers),
                    content=content,
                    url=current,
                    history=tuple(history),
                )
            finally:
                resp.close()
    except OutboundError as e:
        if guard.expired and "timed out" not in str(e):
            raise OutboundError(f"could not read from {host}: timed out") from e
        raise
    finally:
        guard.stop_watchdog()
        _current.guard = previous
        session.adapters.clear()  # not session.close(): that would close the kept connections


def safe_get(
    url: str,
    *,
    allow_loopback: bool,
    resolver: Resolver | None = None,
    headers: Mapping[str, str] | None = None,
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
    total_timeout: float | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_redirects: int = 3,
) -> SafeResponse:
    """GET ``url`` under the rules of this module.

    Raises :class:`OutboundRefused` (policy: scheme, address, redirect, size) or
    :class:`OutboundError` (resolution, connection, TLS, timeout). Any HTTP
    status is returned as is; redirects are followed to the same origin only.
    """
    return _exchange(
        "GET",
        url,
        data=None,
        auth=None,
        headers=headers,
        allow_loopback=allow_loopback,
        resolver=resolver,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        total_timeout=total_timeout,
        max_bytes=max_bytes,
        max_redirects=max_redirects,
    )


def safe_post_form(
    url: str,
    data: Mapping[str, str],
    *,
    auth: Any = None,
    headers: Mapping[str, str] | None = None,
    allow_loopback: bool,
    resolver: Resolver | None = None,
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
    total_timeout: float | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_redirects: int = 3,
) -> SafeResponse:
    """POST ``data`` as ``application/x-www-form-urlencoded`` with the same guarantees.

    ``auth`` is passed to requests (e.g. ``(client_id, client_secret)`` for HTTP
    Basic). A 307/308 re-posts to the same origin; 301/302/303 continue as GET.
    """
    return _exchange(
        "POST",
        url,
        data=dict(data),
        auth=auth,
        headers=headers,
        allow_loopback=allow_loopback,
        resolver=resolver,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        total_timeout=total_timeout,
        max_bytes=max_bytes,
        max_redirects=max_redirects,
    )


# --------------------------------------------------------------------------- sessions

# Headers that describe the transport or the body, which the guarded exchange sets itself.
_TRANSPORT_HEADERS = frozenset({"content-length", "content-type", "transfer-encoding", "host",
                                "connection", "accept-encoding", "user-agent"})
_FORM = "application/x-www-form-urlencoded"
_MAX_FORM_FIELDS = 100


class _GuardedCall(TypedDict):
    """What :class:`SessionAdapter` passes to :func:`safe_get` and :func:`safe_post_form`."""
    headers: Mapping[str, str]
    allow_loopback: bool
    resolver: Resolver | None
    connect_timeout: float | None
    read_timeout: float | None
    max_bytes: int
    max_redirects: int


class SessionAdapter(HTTPAdapter):
    """The transport of a ``requests.Session`` that a library drives (authlib's OAuth2Session).

    Every request becomes one call of :func:`safe_get` (a GET without a body) or
    :func:`safe_post_form` (a form POST), so it gets their rules: checked addresses,
    connect to the checked IP, same-origin redirects only (``max_redirects``), size cap,
    connect ≤3 s and whole exchange ≤10 s. Any other method or body is refused before a
    socket opens. The answer comes back as a ``requests.Response`` whose body was read
    under those rules; it is never a redirect the session could follow elsewhere.
    """

    def __init__(self, *, allow_loopback: bool, resolver: Resolver | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES, max_redirects: int = 0):
        super().__init__(max_retries=0)
        self.allow_loopback = allow_loopback
        self.resolver = resolver
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        method = (request.method or "").upper()
        url = request.url or ""
        # Values as http.client sends them: a bytes value is its latin-1 text.
        headers = {name: value if isinstance(value, str) else value.decode("latin-1")
                   for name, value in request.headers.items()
                   if name.lower() not in _TRANSPORT_HEADERS}
        connect_timeout, read_timeout = _timeouts(timeout)
        common: _GuardedCall = dict(
            headers=headers, allow_loopback=self.allow_loopback, resolver=self.resolver,
            connect_timeout=connect_timeout, read_timeout=read_timeout,
            max_bytes=self.max_bytes, max_redirects=self.max_redirects)
        if method == "GET" and not request.body:
            answer = safe_get(url, **common)
        elif method == "POST" and _is_form(request):
            answer = safe_post_form(url, _form_fields(request.body), **common)
        else:
            raise OutboundRefused(f"{method[:10]} request to {_host_of(url)} refused: only GET "
                                  "and form POST go out")
        return _as_requests_response(request, answer)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        raise OutboundRefused("proxies are not supported for outbound requests")


def guard_session(session: requests.Session, *, allow_loopback: bool,
                  resolver: Resolver | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
                  max_redirects: int = 0) -> requests.Session:
    """Make :class:`SessionAdapter` the only transport of ``session`` (and return it).

    The session's own adapters are dropped, so no scheme falls back to requests' default
    transport; proxies and ~/.netrc from the environment are ignored.
    """
    session.trust_env = False
    session.max_redirects = 0
    session.adapters.clear()
    adapter = SessionAdapter(allow_loopback=allow_loopback, resolver=resolver,
                             max_bytes=max_bytes, max_redirects=max_redirects)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _timeouts(timeout: Any) -> tuple[float | None, float | None]:
    """A caller's (connect, read) or single timeout; netguard's bounds still cap both."""
    if isinstance(timeout, tuple) and len(timeout) == 2:
        connect, read = timeout
    else:
        connect = read = timeout
    number = (int, float)
    return (connect if isinstance(connect, number) else None,
            read if isinstance(read, number) else None)


def _is_form(request: requests.PreparedRequest) -> bool:
    content_type = request.headers.get("Content-Type", "")
    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    return not request.body or content_type.split(";", 1)[0].strip().lower() == _FORM


def _form_fields(body: Any) -> dict[str, str]:
    """The fields of an already-encoded form body; a repeated field is refused (RFC 6749 §3.1)."""
    if not body:
        return {}
    text = body.decode("utf-8") if isinstance(body, bytes) else str(body)
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True,
                          max_num_fields=_MAX_FORM_FIELDS)
    except ValueError:
        raise OutboundRefused("request body is not a well-formed form: refused") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise OutboundRefused(f"form field {name[:40]!r} repeated: refused")
        fields[name] = value
    return fields


def _as_requests_response(request: requests.PreparedRequest, answer: SafeResponse) -> requests.Response:
    from requests.utils import get_encoding_from_headers

    response = requests.Response()
    response.status_code = answer.status_code
    response.headers = CaseInsensitiveDict(answer.headers)
    response._content = answer.content
    response._content_consumed = True
    response.url = answer.url
    response.request = request
    response.reason = http.client.responses.get(answer.status_code, "")
    response.encoding = get_encoding_from_headers(response.headers)
    return response
