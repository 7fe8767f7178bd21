"""SSRF guard: the one hardened HTTP client for every server-side fetch of a user-supplied URL (SECURITY.md 18).

Mastodon instances, Bluesky PDS hosts, custom OIDC endpoints and webhooks are addresses an outsider
chooses, so a fetch could hit this machine, the private network or a cloud metadata service. The client
validates the URL without the network (IP literals in any spelling), resolves the host itself and connects
only to checked public addresses, checks the connected peer again (no DNS-rebinding window), follows no
redirect to another origin, and bounds the body size and the *total* time. ``allow_private=True`` is the
development and test setting that lets loopback and private networks through.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json as jsonlib
import re
import socket
import threading
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit

import idna
import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.connection import create_connection

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL_LENGTH = 2048
TOO_LARGE = "the answer was too large"
TOO_SLOW = "the server took too long to answer"
# Gaps in is_global on Python 3.11 (it calls 192.0.0.0/24 and fec0::/10 global), plus CGNAT.
_BLOCKED = tuple(ipaddress.ip_network(n) for n in ("100.64.0.0/10", "192.0.0.0/24", "fec0::/10"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_NUMBER = re.compile(r"0x[0-9a-f]*|[0-9]+")
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x20\x7f\\]")


class UnsafeURL(ValueError):
    """The URL or the address it leads to is not allowed; str(exc) is a plain-language reason safe to show a user."""


class FetchFailed(Exception):
    """Network failure, timeout, too large or malformed answer. ``reason`` never holds request secrets."""

    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class GuardPolicy:
    """How strict one client is; the defaults are the production setting."""

    allow_private: bool = False
    require_https: bool = True
    timeout: float = 10.0  # total seconds for connecting, redirects and reading, not per read
    max_bytes: int = 1_000_000
    max_redirects: int = 0

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.max_bytes < 0 or self.max_redirects < 0:
            raise ValueError("timeout must be positive; max_bytes and max_redirects must not be negative")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, NAT64, 6to4, Teredo client), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    return address.teredo[1] if address.teredo else None


def is_public_address(address: IPAddress) -> bool:
    """True only for a globally reachable unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None and not is_public_address(inner):
            return False
        # The mapped and NAT64 forms reach the IPv4 address itself, so it alone decides.
        if inner is not None and (address.ipv4_mapped is not None or address in _NAT64):
            return True
    if not address.is_global or any(address in network for network in _BLOCKED):
        return False
    return not (address.is_multicast or address.is_reserved or address.is_link_local or address.is_loopback
                or address.is_unspecified or address.is_private)


def _parse_legacy_ipv4(host: str) -> ipaddress.IPv4Address:
    """Read IPv4 as the resolver will (inet_aton), so 127.1, 0x7f.1 and 2130706433 cannot slip by."""
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        raise UnsafeURL("the address is not a valid IP address") from None


def _canonical_host(raw: str) -> tuple[str, IPAddress | None]:
    """The host as it goes on the wire (IDNA, lower case, canonical IP) and its IP if it is one."""
    if ":" in raw:  # only a bracketed IPv6 literal keeps a colon in urlsplit's hostname
        try:
            ip6 = ipaddress.IPv6Address(raw)
        except ValueError:
            raise UnsafeURL("the address is not a valid IP address") from None
        if ip6.scope_id:
            raise UnsafeURL("addresses with a network zone are not allowed")
        return f"[{ip6.compressed}]", ip6
    try:  # UTS 46 also folds full-width digits and dots, so it runs before the IP checks
        host = raw.lower() if raw.isascii() else idna.encode(raw, uts46=True).decode("ascii")
    except idna.IDNAError:
        raise UnsafeURL("the server name is not valid") from None
    host = host.removesuffix(".")
    labels = host.split(".")
    if _NUMBER.fullmatch(labels[-1]):  # a name ending in a number is an IPv4 address, however spelled
        ip4 = _parse_legacy_ipv4(host)
        return str(ip4), ip4
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise UnsafeURL("the server name is not valid")
    return host, None


def normalize_public_url(url: str, policy: GuardPolicy) -> str:
    """Check ``url`` without touching the network and return it in canonical form. Raises UnsafeURL."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeURL("the address is too long")
    if _FORBIDDEN_CHARS.search(url):
        raise UnsafeURL("the address contains spaces, backslashes or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeURL("the address is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in (("https",) if policy.require_https else ("http", "https")):
        raise UnsafeURL("only https:// addresses are allowed" if policy.require_https
                        else "only http:// and https:// addresses are allowed")
    if "@" in parts.netloc:
        raise UnsafeURL("addresses with a user name or password are not allowed")
    if "#" in url:
        raise UnsafeURL("addresses with a #fragment are not allowed")
    if not parts.hostname or port == 0:
        raise UnsafeURL("the address needs a server name and a valid port")
    host, ip = _canonical_host(parts.hostname)
    if ip is not None and not policy.allow_private and not is_public_address(ip):
        raise UnsafeURL("the address points to a private, local or reserved network")
    netloc = host if port in (None, 443 if scheme == "https" else 80) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def normalize_host(value: str, policy: GuardPolicy) -> str:
    """Turn input such as ``mastodon.social`` or ``https://mastodon.social/`` into ``https://host[:port]``."""
    text = value.strip()
    url = normalize_public_url(text if "://" in text else "https://" + text, policy)
    parts = urlsplit(url)
    if parts.path != "/" or parts.query:
        raise UnsafeURL("enter only the server name, such as mastodon.social")
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class _Fetch:
    """One request's budget: its deadline, its policy, and the sockets the watchdog cuts at the deadline."""

    deadline: float
    allow_private: bool
    expired: bool = False
    _watched: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def out_of_time(self) -> bool:
        return self.expired or self.remaining() <= 0

    def watch(self, sock: socket.socket) -> None:
        """Keep a duplicate descriptor, because TLS wrapping detaches the original socket object."""
        with self._lock:
            self._watched.append(sock.dup())
        if self.expired:
            self.expire()

    def expire(self) -> None:
        """Run by the watchdog timer. A trickling server keeps every single read short, so only this stops it."""
        with self._lock:
            self.expired = True
            for sock in self._watched:
                with contextlib.suppress(OSError):  # already closed: nothing left to cut
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            for sock in self._watched:
                sock.close()
            self._watched.clear()


_CURRENT: ContextVar[_Fetch | None] = ContextVar("easyconnect_safe_fetch", default=None)


def _resolve_allowed(host: str, port: int, allow_private: bool) -> list[str]:
    """Every address ``host`` resolves to; all are refused if any one is not public."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise FetchFailed("the server's name could not be found") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not allow_private and not all(is_public_address(ipaddress.ip_address(a)) for a in addresses):
        raise UnsafeURL(f"{host} leads to a private, local or reserved network address")
    return addresses


def _check_peer(sock: socket.socket, allow_private: bool) -> None:
    """Refuse a socket whose far end is not public, whatever name led there."""
    if not allow_private and not is_public_address(ipaddress.ip_address(sock.getpeername()[0])):
        sock.close()
        raise UnsafeURL("the server's address is on a private, local or reserved network")


def _open_checked_socket(conn: HTTPConnection) -> socket.socket:
    """Connect only to addresses that passed the check (no second lookup to rebind), then check the peer."""
    fetch = _CURRENT.get()
    if fetch is None:  # fail closed: these connections exist only inside SafeHTTPClient.request
        raise UnsafeURL("this connection was not made through the safe client")
    error: OSError | None = None
    for address in _resolve_allowed(conn.host, conn.port, fetch.allow_private):
        try:
            sock = create_connection((address, conn.port), max(fetch.remaining(), 0.001),
                                     source_address=conn.source_address, socket_options=conn.socket_options)
        except TimeoutError:
            raise ConnectTimeoutError(conn, TOO_SLOW) from None
        except OSError as exc:
            error = exc
            continue
        _check_peer(sock, fetch.allow_private)
        fetch.watch(sock)
        return sock
    raise NewConnectionError(conn, f"could not connect: {error}")


class _CheckedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _open_checked_socket(self)


class _CheckedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _open_checked_socket(self)


_POOLS = {"http": type("_CheckedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": _CheckedHTTPConnection}),
          "https": type("_CheckedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": _CheckedHTTPSConnection})}


class _CheckedAdapter(HTTPAdapter):
    """A requests adapter whose every connection is opened by ``_open_checked_socket``."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS


def _new_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxy, .netrc credentials or CA bundle taken from the environment
    session.headers["Accept-Encoding"] = "identity"  # so the size limit counts what really arrives
    session.mount("http://", _CheckedAdapter(max_retries=0))
    session.mount("https://", _CheckedAdapter(max_retries=0))
    return session


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta seconds or HTTP date), or None."""
    value = (value or "").strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when.replace(tzinfo=when.tzinfo or UTC) - datetime.now(UTC)).total_seconds())


@dataclass(frozen=True)
class SafeResponse:
    """A complete, size-checked answer; ``headers`` is case-insensitive. Token answers land here: no repr."""

    status: int
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    url: str

    def json(self) -> Any:
        """The body as JSON; FetchFailed if it is not valid JSON."""
        try:
            return jsonlib.loads(self.body)
        except (ValueError, RecursionError):
            raise FetchFailed("the answer was not valid JSON", self.status) from None

    def raise_for_status(self) -> None:
        """FetchFailed (with ``retry_after``) for anything but 2xx, an unfollowed redirect included."""
        if not 200 <= self.status < 300:
            raise FetchFailed(f"the server answered with status {self.status}", self.status,
                              _retry_after(self.headers.get("Retry-After")))


def _read_capped(resp: requests.Response, fetch: _Fetch, max_bytes: int) -> bytes:
    """The body, stopped once it passes ``max_bytes`` or the deadline."""
    declared = resp.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchFailed(TOO_LARGE, resp.status_code)
    body = bytearray()
    for chunk in resp.iter_content(min(16_384, max_bytes + 1)):
        body += chunk
        if len(body) > max_bytes:
            raise FetchFailed(TOO_LARGE, resp.status_code)
        if fetch.out_of_time():
            raise FetchFailed(TOO_SLOW)
    return bytes(body)


def _failure_reason(exc: Exception, fetch: _Fetch) -> str:
    if fetch.out_of_time() or isinstance(exc, requests.Timeout):
        return TOO_SLOW
    if isinstance(exc, requests.exceptions.SSLError):
        return "the server's secure connection (TLS certificate) could not be verified"
    if isinstance(exc, requests.ConnectionError):
        return "could not connect to the server"
    if isinstance(exc, requests.exceptions.InvalidHeader | requests.exceptions.InvalidURL):
        return "the request had an invalid header or address"
    return "the answer was cut off or malformed"


def _send_once(session: requests.Session, fetch: _Fetch, method: str, url: str, kwargs: dict[str, Any],
               max_bytes: int) -> SafeResponse:
    """One HTTP exchange, read to the end under the size and time limits."""
    if fetch.out_of_time():
        raise FetchFailed(TOO_SLOW)
    try:
        with session.request(method, url, timeout=(fetch.remaining(),) * 2, allow_redirects=False, stream=True,
                             verify=True, **kwargs) as resp:
            result = SafeResponse(resp.status_code, CaseInsensitiveDict(resp.headers),
                                  _read_capped(resp, fetch, max_bytes), resp.url)
    except requests.RequestException as exc:
        # ``from None``: requests' own messages can quote header values and the full URL.
        raise FetchFailed(_failure_reason(exc, fetch)) from None
    if fetch.out_of_time():  # the watchdog may have cut a read-until-close body short
        raise FetchFailed(TOO_SLOW)
    return result


def _same_origin_redirect(response: SafeResponse, policy: GuardPolicy) -> str | None:
    """Where a redirect leads if it stays on the same scheme, host and port; None otherwise."""
    location = response.headers.get("Location")
    if response.status not in (301, 302, 303, 307, 308) or not location:
        return None
    try:
        target = normalize_public_url(urldefrag(urljoin(response.url, location)).url, policy)
    except UnsafeURL:
        return None
    # Same origin only, so Authorization and the body never travel to another server.
    return target if urlsplit(target)[:2] == urlsplit(response.url)[:2] else None


class SafeHTTPClient:
    """The only way to fetch a URL an outsider chose. Thread-safe; every call opens fresh connections."""

    def __init__(self, policy: GuardPolicy) -> None:
        self.policy = policy

    def get(self, url: str, *, params: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None,
            auth: Any = None) -> SafeResponse:
        """GET ``url``; see ``request``."""
        return self.request("GET", url, params=params, headers=headers, auth=auth)

    def post(self, url: str, *, params: Mapping[str, Any] | None = None, data: Any = None, json: Any = None,
             headers: Mapping[str, str] | None = None, auth: Any = None) -> SafeResponse:
        """POST ``url``; see ``request``."""
        return self.request("POST", url, params=params, data=data, json=json, headers=headers, auth=auth)

    def request(self, method: str, url: str, *, params: Mapping[str, Any] | None = None, data: Any = None,
                json: Any = None, headers: Mapping[str, str] | None = None, auth: Any = None) -> SafeResponse:
        """Send one request under the policy: any status comes back; UnsafeURL or FetchFailed otherwise."""
        target = normalize_public_url(url, self.policy)
        fetch = _Fetch(time.monotonic() + self.policy.timeout, self.policy.allow_private)
        watchdog = threading.Timer(self.policy.timeout, fetch.expire)
        watchdog.daemon = True
        token = _CURRENT.set(fetch)
        watchdog.start()
        try:
            with _new_session() as session:
                kwargs = {"params": params, "data": data, "json": json, "headers": headers, "auth": auth}
                return self._follow(session, fetch, method.upper(), target, kwargs)
        finally:
            watchdog.cancel()
            _CURRENT.reset(token)
            fetch.close()

    def _follow(self, session: requests.Session, fetch: _Fetch, method: str, url: str,
                kwargs: dict[str, Any]) -> SafeResponse:
        """Send, then follow same-origin redirects up to the limit; any other answer comes back as it is."""
        for hop in range(self.policy.max_redirects + 1):
            response = _send_once(session, fetch, method, url, kwargs, self.policy.max_bytes)
            next_url = _same_origin_redirect(response, self.policy) if hop < self.policy.max_redirects else None
            if next_url is None:
                return response
            if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                method = "HEAD" if method == "HEAD" else "GET"  # what browsers and requests do
                kwargs = {**kwargs, "data": None, "json": None}
            url, kwargs = next_url, {**kwargs, "params": None}  # the query now comes from Location
        raise AssertionError("unreachable: the last hop always returns")
