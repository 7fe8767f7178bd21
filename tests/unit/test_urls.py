"""The SSRF guard (SECURITY.md 18): validation without network, and the client against real local servers.

Only loopback is ever contacted (the conftest guard enforces it); the public/private split is
tested on parsed addresses and through names that resolve to loopback.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
import time
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from portal.security.urls import (
    FetchFailed,
    GuardPolicy,
    SafeHTTPClient,
    UnsafeURL,
    _check_peer,
    _CheckedHTTPConnection,
    is_public_address,
    normalize_host,
    normalize_public_url,
)

STRICT = GuardPolicy()
LOCAL = GuardPolicy(allow_private=True, require_https=False, timeout=1.0)
SECRET = "s3cret-do-not-leak"


# Local servers ----------------------------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    """One route per behaviour under test; every request is counted, so 'never reached' is checkable."""

    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output quiet

    def do_GET(self) -> None:
        self.server.hits.append((self.command, self.path, self.headers.get("Authorization")))
        route = getattr(self, "_" + self.path.strip("/").split("?")[0].replace("-", "_"), self._not_found)
        try:
            route()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up on purpose (size and time limits)

    do_POST = do_GET

    def _send(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        echo = {"ok": True, "method": self.command, "body": self.rfile.read(length).decode()}
        body = json.dumps(echo).encode()
        self._send(200, body, Content_Type="application/json", Content_Length=str(len(body)))

    def _bad_json(self) -> None:
        self._send(200, b"{not json", Content_Type="application/json")

    def _busy(self) -> None:
        self._send(429, b"", Retry_After="7", Content_Length="0")

    def _huge(self) -> None:
        self._send(200, b"x" * 5000, Content_Length="5000")

    def _huge_undeclared(self) -> None:
        self._send(200, b"x" * 5000)  # HTTP/1.0 without length: the body runs until the connection closes

    def _redirect_same(self) -> None:
        self._send(302, b"", Location="/json", Content_Length="0")

    def _see_other(self) -> None:
        self._send(303, b"", Location="/json", Content_Length="0")

    def _redirect_loop(self) -> None:
        self._send(302, b"", Location="/redirect-loop", Content_Length="0")

    def _redirect_other(self) -> None:
        self._send(302, b"", Location=self.server.other_url + "/json", Content_Length="0")

    def _trickle(self) -> None:
        self._send(200, b"", Content_Length="100")
        for _ in range(30):
            time.sleep(0.1)
            self.wfile.write(b"x")
            self.wfile.flush()

    def _trickle_undeclared(self) -> None:
        self._send(200, b"")
        for _ in range(30):
            time.sleep(0.1)
            self.wfile.write(b"x")
            self.wfile.flush()

    def _trickle_headers(self) -> None:
        self.wfile.write(b"HTTP/1.0 200 OK\r\n")
        for i in range(30):
            time.sleep(0.1)
            self.wfile.write(b"X-Slow-%d: y\r\n" % i)
            self.wfile.flush()

    def _not_found(self) -> None:
        self._send(404, b"", Content_Length="0")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hits: list[tuple[str, str, str | None]]
    other_url: str


@pytest.fixture
def servers() -> Iterator[tuple[_Server, _Server]]:
    """A main server and a second one on another port (another origin) for redirects."""
    pair = []
    for _ in range(2):
        server = _Server(("127.0.0.1", 0), _Handler)
        server.hits = []
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        pair.append(server)
    main, other = pair
    main.other_url = _url(other)
    yield main, other
    for server in pair:
        server.shutdown()
        server.server_close()


def _url(server: _Server, path: str = "", host: str = "127.0.0.1") -> str:
    return f"http://{host}:{server.server_address[1]}{path}"


# Validation without network -----------------------------------------------------------------------------------

REFUSED_ADDRESSES = [
    "127.0.0.1", "127.255.0.9", "10.0.0.1", "172.16.5.4", "172.31.255.255", "192.168.1.1", "169.254.169.254",
    "169.254.0.1", "100.64.0.1", "100.127.255.254", "224.0.0.1", "239.255.255.250", "240.0.0.1",
    "0.0.0.0",  # noqa: S104 - an address under test, never bound
    "255.255.255.255", "192.0.0.8", "192.0.2.1", "198.18.0.1", "::1", "::", "fe80::1", "febf::1", "fc00::1",
    "fd12:3456::1", "ff02::1", "fec0::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
    "::127.0.0.1", "::ffff:0:0", "2002:a00:1::", "2002:7f00:1::", "64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1",
    "2001:0:4136:e378:8000:63bf:f5ff:fffe", "2001:db8::1",
]
PUBLIC_ADDRESSES = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8",
                    "64:ff9b::808:808"]


@pytest.mark.parametrize("text", REFUSED_ADDRESSES)
def test_private_loopback_link_local_and_reserved_addresses_are_not_public(text: str) -> None:
    assert not is_public_address(ipaddress.ip_address(text))
    host = f"[{text}]" if ":" in text else text
    with pytest.raises(UnsafeURL, match="private, local or reserved"):
        normalize_public_url(f"https://{host}/x", STRICT)
    assert normalize_public_url(f"https://{host}/x", GuardPolicy(allow_private=True))


@pytest.mark.parametrize("text", PUBLIC_ADDRESSES)
def test_public_addresses_pass(text: str) -> None:
    assert is_public_address(ipaddress.ip_address(text))


@pytest.mark.parametrize("url", [
    "https://2130706433/", "https://0x7f.1/", "https://127.1/", "https://0177.0.0.1/", "https://0x7f000001/",
    "https://017700000001/", "https://0/", "https://127.0.0.1./", "https://0x7F.0.0.1/", "https://10.1/",
    "https://０x７f.1/", "https://１２７．０．０．１/", "https://[::ffff:7f00:1]/", "https://[0:0:0:0:0:ffff:127.0.0.1]/",
    "https://169.254.43518/", "https://0xa9.0xfe.0xa9.0xfe/",
])
def test_odd_spellings_of_private_addresses_are_recognised(url: str) -> None:
    with pytest.raises(UnsafeURL, match="private, local or reserved"):
        normalize_public_url(url, STRICT)


@pytest.mark.parametrize(("url", "expected"), [
    ("https://127.1:8080/a", "https://127.0.0.1:8080/a"),
    ("https://2130706433/", "https://127.0.0.1/"),
    ("https://[0:0:0:0:0:0:0:1]/", "https://[::1]/"),
])
def test_odd_spellings_are_canonical_when_private_is_allowed(url: str, expected: str) -> None:
    assert normalize_public_url(url, GuardPolicy(allow_private=True)) == expected


@pytest.mark.parametrize(("url", "expected"), [
    ("HTTPS://Example.COM:443/a?b=1", "https://example.com/a?b=1"),
    ("https://example.com", "https://example.com/"),
    ("https://example.com.:8443/x/y", "https://example.com:8443/x/y"),
    ("https://Bücher.example/", "https://xn--bcher-kva.example/"),
    ("https://8.8.8.8/.well-known/openid-configuration", "https://8.8.8.8/.well-known/openid-configuration"),
    ("https://[2606:4700:4700:0:0:0:0:1111]:444/", "https://[2606:4700:4700::1111]:444/"),
    ("https://1.2.3.example/", "https://1.2.3.example/"),
])
def test_accepted_urls_are_normalized(url: str, expected: str) -> None:
    assert normalize_public_url(url, STRICT) == expected


@pytest.mark.parametrize(("url", "reason"), [
    ("ftp://example.com/", "only https"),
    ("javascript:alert(1)", "only https"),
    ("file:///etc/passwd", "only https"),
    ("http://example.com/", "only https"),
    ("//example.com/", "only https"),
    ("example.com", "only https"),
    ("https://user@example.com/", "user name"),
    ("https://user:pw@example.com/", "user name"),
    ("https://example.com@127.0.0.1/", "user name"),
    ("https://example.com/#frag", "fragment"),
    ("https://example.com/#", "fragment"),
    ("https://example.com:0/", "port"),
    ("https://example.com:99999/", "not a valid URL"),
    ("https://example.com:abc/", "not a valid URL"),
    ("https:///path", "server name"),
    ("https://", "server name"),
    ("https://exa mple.com/", "spaces"),
    ("https://example.com\\@evil.example/", "backslash"),
    ("https://example.com/\r\nX-Injected: 1", "control"),
    ("https://example.com/" + "a" * 2048, "too long"),
    ("https://1.2.3.4.5/", "not a valid IP"),
    ("https://256.1.1.1/", "not a valid IP"),
    ("https://1.2.3.256/", "not a valid IP"),
    ("https://08.1.1.1/", "not a valid IP"),
    ("https://[fe80::1%25eth0]/", "zone"),
    ("https://-bad.example/", "server name is not valid"),
    ("https://example..com/", "server name is not valid"),
    ("https://%31%32%37.0.0.1/", "not a valid IP"),
    ("https://" + "a" * 64 + ".example/", "server name is not valid"),
])
def test_malformed_or_disallowed_urls_are_refused(url: str, reason: str) -> None:
    with pytest.raises(UnsafeURL, match=reason):
        normalize_public_url(url, STRICT)


def test_http_is_allowed_only_when_https_is_not_required() -> None:
    assert normalize_public_url("http://example.com/x", GuardPolicy(require_https=False)) == "http://example.com/x"
    with pytest.raises(UnsafeURL, match="only http:// and https://"):
        normalize_public_url("ftp://example.com/", GuardPolicy(require_https=False))


@pytest.mark.parametrize(("value", "expected"), [
    ("mastodon.social", "https://mastodon.social"),
    ("  Mastodon.Social  ", "https://mastodon.social"),
    ("https://mastodon.social/", "https://mastodon.social"),
    ("https://mastodon.social:443", "https://mastodon.social"),
    ("pds.example.com:8443", "https://pds.example.com:8443"),
])
def test_normalize_host_accepts_what_users_type(value: str, expected: str) -> None:
    assert normalize_host(value, STRICT) == expected


@pytest.mark.parametrize("value", ["mastodon.social/@me", "https://mastodon.social/?x=1", "@me@mastodon.social",
                                   "http://mastodon.social", "127.0.0.1", "[::1]", "", "https://localhost#x"])
def test_normalize_host_refuses_anything_but_a_public_server_name(value: str) -> None:
    with pytest.raises(UnsafeURL):
        normalize_host(value, STRICT)


def test_normalize_host_allows_local_http_in_development() -> None:
    assert normalize_host("http://localhost:3000/", LOCAL) == "http://localhost:3000"
    assert normalize_host("127.0.0.1:3000", LOCAL) == "https://127.0.0.1:3000"


# The client against real local servers ----------------------------------------------------------------------

def test_json_answer_is_fetched_when_private_addresses_are_allowed(servers: tuple[_Server, _Server]) -> None:
    main, _ = servers
    response = SafeHTTPClient(LOCAL).get(_url(main, "/json"), params={"q": "1"})
    assert (response.status, response.json()["ok"]) == (200, True)
    assert response.headers["content-type"] == "application/json"
    assert response.url == _url(main, "/json?q=1")
    posted = SafeHTTPClient(LOCAL).post(_url(main, "/json"), data={"a": "b"})
    assert posted.json()["body"] == "a=b"
    assert SafeHTTPClient(LOCAL).get(_url(main, "/json", host="localhost")).status == 200  # via the resolver


def test_loopback_is_refused_before_any_request_reaches_the_server(servers: tuple[_Server, _Server]) -> None:
    main, _ = servers
    strict_http = GuardPolicy(require_https=False, timeout=1.0)
    with pytest.raises(UnsafeURL):
        SafeHTTPClient(strict_http).get(_url(main, "/json"))
    with pytest.raises(UnsafeURL):
        SafeHTTPClient(strict_http).get(_url(main, "/json", host="[::ffff:127.0.0.1]"))
    assert main.hits == []


def test_a_name_resolving_to_loopback_is_refused_without_connecting() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        with pytest.raises(UnsafeURL, match="localhost leads to a private"):
            SafeHTTPClient(GuardPolicy(require_https=False)).get(f"http://localhost:{port}/")
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()  # not even a TCP handshake happened


def test_guarded_connections_fail_closed_outside_the_client() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        with pytest.raises(UnsafeURL, match="safe client"):
            _CheckedHTTPConnection("127.0.0.1", listener.getsockname()[1]).connect()


def test_the_connected_peer_is_checked_too() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        sock = socket.create_connection(listener.getsockname())
        _check_peer(sock, allow_private=True)
        with pytest.raises(UnsafeURL, match="private"):
            _check_peer(sock, allow_private=False)
        assert sock.fileno() == -1  # closed before anything was sent


def test_redirect_is_returned_as_is_by_default(servers: tuple[_Server, _Server]) -> None:
    main, _ = servers
    response = SafeHTTPClient(LOCAL).get(_url(main, "/redirect-same"))
    assert (response.status, response.headers["Location"]) == (302, "/json")
    assert [path for _, path, _ in main.hits] == ["/redirect-same"]


def test_same_origin_redirect_is_followed_when_allowed(servers: tuple[_Server, _Server]) -> None:
    main, _ = servers
    policy = GuardPolicy(allow_private=True, require_https=False, max_redirects=1)
    response = SafeHTTPClient(policy).get(_url(main, "/redirect-same"), headers={"Authorization": "Bearer t"})
    assert (response.status, response.json()["ok"], response.url) == (200, True, _url(main, "/json"))
    assert [(path, auth) for _, path, auth in main.hits] == [("/redirect-same", "Bearer t"), ("/json", "Bearer t")]


def test_see_other_after_post_is_followed_as_a_get_without_the_body(servers: tuple[_Server, _Server]) -> None:
    main, _ = servers
    policy = GuardPolicy(allow_private=True, require_https=False, max_redirects=1)
    response = SafeHTTPClient(policy).post(_url(main, "/see-other"), data={"client_secret": SECRET})
    assert response.json() == {"ok": True, "method": "GET", "body": ""}


def test_redirect_limit_is_kept(servers: tuple[_Server, _Server]) -> None:
    main, _ = servers
    policy = GuardPolicy(allow_private=True, require_https=False, max_redirects=2)
    assert SafeHTTPClient(policy).get(_url(main, "/redirect-loop")).status == 302
    assert len(main.hits) == 3


def test_redirect_to_another_origin_is_never_followed(servers: tuple[_Server, _Server]) -> None:
    main, other = servers
    policy = GuardPolicy(allow_private=True, require_https=False, max_redirects=5)
    response = SafeHTTPClient(policy).get(_url(main, "/redirect-other"), headers={"Authorization": "Bearer t"})
    assert response.status == 302
    assert other.hits == []  # neither the request nor its Authorization header went elsewhere


def test_a_large_declared_body_is_refused(servers: tuple[_Server, _Server]) -> None:
    main, _ = servers
    with pytest.raises(FetchFailed, match="too large") as caught:
        SafeHTTPClient(GuardPolicy(allow_private=True, require_https=False, max_bytes=1000)).get(_url(main, "/huge"))
    assert caught.value.status == 200


def test_a_large_undeclared_body_is_cut_while_streaming(servers: tuple[_Server, _Server]) -> None:
    main, _ = servers
    policy = GuardPolicy(allow_private=True, require_https=False, max_bytes=1000)
    with pytest.raises(FetchFailed, match="too large"):
        SafeHTTPClient(policy).get(_url(main, "/huge-undeclared"))
    assert len(SafeHTTPClient(LOCAL).get(_url(main, "/huge-undeclared")).body) == 5000


@pytest.mark.parametrize("path", ["/trickle", "/trickle-undeclared", "/trickle-headers"])
def test_a_trickling_server_is_cut_off_at_the_total_timeout(servers: tuple[_Server, _Server], path: str) -> None:
    main, _ = servers
    started = time.monotonic()
    with pytest.raises(FetchFailed, match="too long"):
        SafeHTTPClient(LOCAL).get(_url(main, path))
    assert time.monotonic() - started < 1.8  # each byte came well within any per-read timeout


def test_invalid_json_is_a_fetch_failure(servers: tuple[_Server, _Server]) -> None:
    main, _ = servers
    response = SafeHTTPClient(LOCAL).get(_url(main, "/bad-json"))
    with pytest.raises(FetchFailed, match="not valid JSON") as caught:
        response.json()
    assert caught.value.status == 200


def test_a_response_never_shows_its_body_or_headers_in_repr(servers: tuple[_Server, _Server]) -> None:
    main, _ = servers
    response = SafeHTTPClient(LOCAL).post(_url(main, "/json"), data={"access_token": SECRET})
    assert SECRET in response.body.decode()
    assert SECRET not in repr(response)


@pytest.mark.parametrize("fields", [{"timeout": 0}, {"max_bytes": -1}, {"max_redirects": -1}])
def test_nonsense_policies_are_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        GuardPolicy(**fields)  # type: ignore[arg-type]


def test_an_error_status_carries_retry_after(servers: tuple[_Server, _Server]) -> None:
    main, _ = servers
    response = SafeHTTPClient(LOCAL).get(_url(main, "/busy"))
    with pytest.raises(FetchFailed) as caught:
        response.raise_for_status()
    assert (caught.value.status, caught.value.retry_after) == (429, 7.0)


def test_secrets_never_reach_error_messages(servers: tuple[_Server, _Server]) -> None:
    main, _ = servers
    with socket.create_server(("127.0.0.1", 0)) as closed:
        dead_url = f"http://127.0.0.1:{closed.getsockname()[1]}/token?code={SECRET}"
    attempts = [
        (dead_url, {"Authorization": f"Bearer {SECRET}"}),
        (_url(main, "/trickle"), {"Authorization": f"Bearer {SECRET}"}),
        (_url(main, "/json"), {"Authorization": f"Bearer {SECRET}\r\nX-Evil: 1"}),
    ]
    for url, headers in attempts:
        with pytest.raises(FetchFailed) as caught:
            SafeHTTPClient(LOCAL).post(url, headers=headers, data={"client_secret": SECRET})
        shown = str(caught.value) + repr(caught.value) + "".join(traceback.format_exception(caught.value))
        assert SECRET not in shown


def test_tls_certificates_are_always_verified(tmp_path: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*_self_signed_certificate(tmp_path))
    server = _Server(("127.0.0.1", 0), _Handler)
    server.hits = []
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}/json"
        with pytest.raises(FetchFailed, match="certificate"):
            SafeHTTPClient(GuardPolicy(allow_private=True, timeout=2.0)).get(url)
        assert server.hits == []
    finally:
        server.shutdown()
        server.server_close()


def _self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_policy_refuses_plain_http_before_connecting(servers: tuple[_Server, _Server]) -> None:
    main, _ = servers
    with pytest.raises(UnsafeURL, match="only https"):
        SafeHTTPClient(GuardPolicy(allow_private=True)).get(_url(main, "/json"))
    assert main.hits == []
