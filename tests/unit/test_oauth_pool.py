"""Platform calls reuse kept-alive connections (a worker makes hundreds a second) and never share cookies."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import pytest

from portal.errors import PlatformError
from portal.oauth import MAX_RESPONSE_BYTES, AppCredentials, OAuthClient
from portal.providers import load_catalog


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    connections: set[int] = set()
    cookies_seen: list[str] = []
    authorizations: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        type(self).connections.add(self.client_address[1])  # the client port: one per connection
        type(self).cookies_seen.append(self.headers.get("Cookie", ""))
        body = b"x" * (MAX_RESPONSE_BYTES + 10) if self.path == "/huge" else b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Set-Cookie", "tracker=from-a-platform; Path=/")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - a token endpoint
        type(self).connections.add(self.client_address[1])
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).authorizations.append(self.headers.get("Authorization", ""))
        body = (b"x" * (MAX_RESPONSE_BYTES + 10) if self.path == "/huge-token" else
                b'{"access_token": "at-new", "refresh_token": "rt-new", "expires_in": 3600}')
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    _Handler.connections, _Handler.cookies_seen, _Handler.authorizations = set(), [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def test_calls_reuse_one_connection_and_carry_no_cookies(server):
    client = OAuthClient()
    try:
        for _ in range(5):
            assert client.get_json(f"{server}/me", "token", "identity call") == {"ok": True}
    finally:
        client.close()
    assert len(_Handler.connections) == 1
    assert _Handler.cookies_seen == [""] * 5  # a cookie one answer set is never sent with the next call


def test_an_oversized_answer_is_refused_and_its_connection_not_reused(server):
    client = OAuthClient()
    try:
        with pytest.raises(PlatformError, match="too large"):
            client.get_json(f"{server}/huge", "token", "identity call")
        assert client.get_json(f"{server}/me", "token", "identity call") == {"ok": True}
    finally:
        client.close()
    assert len(_Handler.connections) == 2


def _spec(token_url: str):
    return replace(load_catalog()["sandbox"], token_url=token_url)


def test_token_refreshes_reuse_one_connection_and_authenticate_the_client(server):
    client, now = OAuthClient(), datetime.now(UTC)
    try:
        grants = [client.refresh(_spec(f"{server}/token"), AppCredentials("client-id", "s3cret"), "rt-old", now)
                  for _ in range(4)]
    finally:
        client.close()
    assert {grant.access_token for grant in grants} == {"at-new"} and grants[0].refresh_token == "rt-new"
    assert len(_Handler.connections) == 1
    expected = "Basic " + base64.b64encode(b"client-id:s3cret").decode()
    assert _Handler.authorizations == [expected] * 4


def test_an_oversized_token_answer_is_a_temporary_error(server):
    client = OAuthClient()
    try:
        with pytest.raises(PlatformError) as caught:
            client.refresh(_spec(f"{server}/huge-token"), AppCredentials("client-id", "s3cret"), "rt-old",
                           datetime.now(UTC))
    finally:
        client.close()
    assert caught.value.kind == PlatformError.TEMPORARY and "too large" in str(caught.value)
