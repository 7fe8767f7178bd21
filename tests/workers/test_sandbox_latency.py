"""The sandbox's added-latency switch: a far-away platform for the refresh benchmark."""

from __future__ import annotations

import time

import requests

from tests.conftest import SANDBOX_SECRET

LATENCY_MS = 400


def _token_call(url: str) -> float:
    """Seconds for one refresh at the token endpoint (a spent token: the answer is invalid_grant)."""
    started = time.monotonic()
    response = requests.post(url + "/sandbox/oauth/token", auth=("easyconnect-demo", SANDBOX_SECRET),
                             data={"grant_type": "refresh_token", "refresh_token": "sbx_rt_spent"}, timeout=10)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    return time.monotonic() - started


def _set_latency(url: str, endpoint: str, latency_ms: object) -> requests.Response:
    return requests.post(url + "/sandbox/_control", json={"endpoint": endpoint, "latency_ms": latency_ms},
                         timeout=5)


def test_token_endpoint_waits_the_added_latency_until_it_is_turned_off(live_sandbox):
    live_sandbox.fail("token", "server_error", times=1)  # a failure switch set before stays as it was
    try:
        assert _set_latency(live_sandbox.url, "token", LATENCY_MS).status_code == 200
        failed = requests.post(live_sandbox.url + "/sandbox/oauth/token", auth=("easyconnect-demo", SANDBOX_SECRET),
                               data={"grant_type": "refresh_token", "refresh_token": "x"}, timeout=10)
        assert failed.status_code == 500
        assert _token_call(live_sandbox.url) >= LATENCY_MS / 1000
    finally:
        assert _set_latency(live_sandbox.url, "token", 0).status_code == 200
        live_sandbox.reset()
    assert _token_call(live_sandbox.url) < LATENCY_MS / 1000


def test_latency_is_bounded_and_named(live_sandbox):
    assert _set_latency(live_sandbox.url, "token", -1).status_code == 400
    assert _set_latency(live_sandbox.url, "token", 60_000).status_code == 400
    assert _set_latency(live_sandbox.url, "authorize", 50).status_code == 400
    assert _set_latency(live_sandbox.url, "token", "soon").status_code == 400
