"""The sandbox platform served on its own (what the benchmarks run in separate processes)."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

from portal.app import create_platform_app
from tests.conftest import PORTAL_BASE, SANDBOX_SECRET, base_settings

REDIRECT = PORTAL_BASE + "/oauth/callback/sandbox"


def _app(tmp_path):
    settings = base_settings(tmp_path, f"sqlite:///{tmp_path / 'unused.db'}", sandbox_url="http://unused/sandbox")
    return create_platform_app(settings)


def test_the_platform_alone_authorizes_exchanges_and_rotates(tmp_path):
    client = _app(tmp_path).test_client()
    verifier = "v" * 64
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = {"response_type": "code", "client_id": "easyconnect-demo", "redirect_uri": REDIRECT,
             "scope": "profile publish", "state": "s" * 43, "code_challenge": challenge,
             "code_challenge_method": "S256"}
    consent = client.get("/sandbox/oauth/authorize", query_string=query)
    assert consent.status_code == 200 and b"sbx-1001" in consent.data
    approved = client.post("/sandbox/oauth/authorize", data={
        **query, "account": "sbx-1001", "decision": "approve", "requested_scope": "profile publish",
        "scope": ["profile", "publish"]})
    assert approved.status_code == 302
    code = parse_qs(urlsplit(approved.headers["Location"]).query)["code"][0]
    auth = {"Authorization": "Basic " + base64.b64encode(f"easyconnect-demo:{SANDBOX_SECRET}".encode()).decode()}
    tokens = client.post("/sandbox/oauth/token", headers=auth, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier})
    assert tokens.status_code == 200
    first = tokens.get_json()["refresh_token"]
    rotated = client.post("/sandbox/oauth/token", headers=auth, data={"grant_type": "refresh_token",
                                                                       "refresh_token": first})
    assert rotated.status_code == 200 and rotated.get_json()["refresh_token"] != first
    replayed = client.post("/sandbox/oauth/token", headers=auth, data={"grant_type": "refresh_token",
                                                                        "refresh_token": first})
    assert replayed.status_code == 400 and replayed.get_json() == {"error": "invalid_grant"}
    assert client.get("/admin/login").status_code == 404  # nothing of the portal itself is served here
