"""Platform calls reuse kept-alive connections (a worker makes hundreds a second) and never share cookies."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import pytest

from portal.errors import PlatformError
from portal.oauth import MAX_RESPONSE_BYTES, OAuthClient


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    connections: set[int] = set()
    cookies_seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        type(self).connections.add(id(self.connection))
        type(self).cookies_seen.append(self.headers.get("Cookie", ""))
        body = b"x" * (MAX_RESPONSE_BYTES + 10) if self.path == "/huge" else b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Set-Cookie", "tracker=from-a-platform; Path=/")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    _Handler.connections, _Handler.cookies_seen = set(), []
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
