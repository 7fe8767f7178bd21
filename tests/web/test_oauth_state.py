"""OAuth callback attacks: missing, altered, reused and foreign state; replayed codes; denied consent."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

from sqlalchemy import select

from portal.models import AttemptStage, ConnectAttempt
from tests.helpers import connections_in, consent, fresh, local_path, setup_link, start_flow


def _callback_parts(callback_url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(callback_url)
    return parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}


def test_missing_state_is_refused_before_any_token_request(client, db, runtime, live_sandbox):
    _, workspace, _, path = setup_link(db, runtime.deps)
    callback_path, params = _callback_parts(consent(start_flow(client, path)))
    exchanges = live_sandbox.counters().get("code_exchanges", 0)
    response = client.get(callback_path + "?" + urlencode({"code": params["code"]}))
    assert response.status_code == 400
    assert "could not be verified" in response.get_data(as_text=True)
    assert live_sandbox.counters().get("code_exchanges", 0) == exchanges
    assert connections_in(db, workspace.id) == []


def test_altered_state_is_refused(client, db, runtime, live_sandbox):
    _, workspace, _, path = setup_link(db, runtime.deps)
    callback_path, params = _callback_parts(consent(start_flow(client, path)))
    exchanges = live_sandbox.counters().get("code_exchanges", 0)
    altered = params["state"][:-1] + ("A" if params["state"][-1] != "A" else "B")
    response = client.get(callback_path + "?" + urlencode({"code": params["code"], "state": altered}))
    assert response.status_code == 400
    assert live_sandbox.counters().get("code_exchanges", 0) == exchanges
    assert connections_in(db, workspace.id) == []
    # The genuine state still works afterwards: an attacker's guess does not burn the attempt.
    ok = client.get(callback_path + "?" + urlencode(params))
    assert ok.status_code == 303


def test_reused_state_is_refused(client, db, runtime):
    _, workspace, _, path = setup_link(db, runtime.deps)
    callback = local_path(consent(start_flow(client, path)))
    assert client.get(callback).status_code == 303
    again = client.get(callback)
    assert again.status_code == 400
    assert len(connections_in(db, workspace.id)) == 1


def test_state_for_another_platform_is_refused(client, db, runtime):
    _, workspace, _, path = setup_link(db, runtime.deps)
    _, params = _callback_parts(consent(start_flow(client, path)))
    response = client.get("/oauth/callback/facebook?" + urlencode(params))
    assert response.status_code == 400
    assert connections_in(db, workspace.id) == []


def test_state_from_another_attempt_does_not_pair_with_a_foreign_code(client, db, runtime, live_sandbox):
    """An attacker's code injected with the victim's state: the PKCE verifier belongs to the
    victim's attempt, so the sandbox refuses the exchange and nothing is stored."""
    _, workspace, _, path = setup_link(db, runtime.deps)
    _, victim = _callback_parts(consent(start_flow(client, path), account="sbx-1001"))
    _, attacker = _callback_parts(consent(start_flow(client, path), account="sbx-1003"))
    response = client.get("/oauth/callback/sandbox?" + urlencode({"state": victim["state"],
                                                                   "code": attacker["code"]}))
    assert response.status_code == 502
    assert connections_in(db, workspace.id) == []


def test_expired_attempt_is_refused(client, db, runtime):
    _, workspace, _, path = setup_link(db, runtime.deps)
    callback = local_path(consent(start_flow(client, path)))
    fresh(db)
    attempt = db.scalar(select(ConnectAttempt))
    attempt.expires_at = runtime.deps.now() - timedelta(seconds=1)
    db.commit()
    response = client.get(callback)
    assert response.status_code == 400 and "expired" in response.get_data(as_text=True)
    assert connections_in(db, workspace.id) == []


def test_replayed_code_with_a_new_state_is_refused_by_the_platform(client, db, runtime):
    _, workspace, _, path = setup_link(db, runtime.deps)
    _, first = _callback_parts(consent(start_flow(client, path)))
    assert client.get("/oauth/callback/sandbox?" + urlencode(first)).status_code == 303
    _, second = _callback_parts(consent(start_flow(client, path), account="sbx-1003"))
    replay = client.get("/oauth/callback/sandbox?" + urlencode({"state": second["state"], "code": first["code"]}))
    assert replay.status_code == 502
    assert "Try again" in replay.get_data(as_text=True)
    assert [c.external_id for c in connections_in(db, workspace.id)] == ["sbx-1001"]


def test_denied_consent_gives_a_branded_page_with_a_way_back(client, db, runtime):
    _, workspace, _, path = setup_link(db, runtime.deps)
    callback = local_path(consent(start_flow(client, path), decision="deny"))
    assert "error=access_denied" in callback
    response = client.get(callback)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Nothing was connected" in html and "Acme Agency" in html
    assert f'href="{path}"' in html  # try again
    assert connections_in(db, workspace.id) == []
    fresh(db)
    assert db.scalar(select(ConnectAttempt.stage)) == AttemptStage.FAILED


def test_platform_error_text_is_never_reflected(client, db, runtime):
    _, _, _, path = setup_link(db, runtime.deps)
    _, params = _callback_parts(consent(start_flow(client, path)))
    hostile = {"state": params["state"], "error": "server_error",
               "error_description": "<script>alert(1)</script>"}
    response = client.get("/oauth/callback/sandbox?" + urlencode(hostile))
    html = response.get_data(as_text=True)
    assert response.status_code == 502
    assert "<script>alert(1)</script>" not in html and "alert(1)" not in html


def test_token_endpoint_outage_gives_a_retryable_page_not_a_500(client, db, runtime, live_sandbox):
    _, workspace, _, path = setup_link(db, runtime.deps)
    callback = local_path(consent(start_flow(client, path)))
    live_sandbox.fail("token", "server_error")
    try:
        response = client.get(callback)
    finally:
        live_sandbox.reset()
    assert response.status_code == 502
    assert "Try again" in response.get_data(as_text=True)
    assert connections_in(db, workspace.id) == []


def test_callback_in_another_browser_must_be_confirmed_before_anything_is_stored(app, client, db, runtime):
    """An attacker starts an attempt on their own link and gets a victim's browser to finish it: the
    victim is asked, on the portal, whether to connect the account to that agency; nothing is stored before."""
    _, workspace, _, path = setup_link(db, runtime.deps)
    callback = local_path(consent(start_flow(client, path), account="sbx-1003"))
    victim = app.test_client()  # no flow cookie: not the browser that pressed Connect
    response = victim.get(callback)
    assert response.status_code == 303 and "/select/" in response.headers["Location"]
    assert connections_in(db, workspace.id) == []
    page = victim.get(response.headers["Location"]).get_data(as_text=True)
    assert "Confirm the connection" in page and "Casa Aurora Studio" in page and "Acme Agency" in page
    done = victim.post(response.headers["Location"], data={"account": ["sbx-1003"]})
    assert done.status_code == 303
    [connection] = connections_in(db, workspace.id)
    assert (connection.external_id, connection.parent_external_id) == ("sbx-1003", None)


def test_a_failed_callback_cannot_be_replayed_and_never_loses_pkce(client, db, runtime, live_sandbox):
    _, workspace, _, path = setup_link(db, runtime.deps)
    callback_path, params = _callback_parts(consent(start_flow(client, path)))
    denied = client.get("/oauth/callback/sandbox?" + urlencode({"state": params["state"], "error": "access_denied"}))
    assert denied.status_code == 400
    exchanges = live_sandbox.counters().get("code_exchanges", 0)
    replay = client.get(callback_path + "?" + urlencode(params))
    assert replay.status_code == 400
    assert live_sandbox.counters().get("code_exchanges", 0) == exchanges
    assert connections_in(db, workspace.id) == []


def test_a_used_state_does_not_reveal_the_link_to_another_browser(app, client, db, runtime):
    _, _, _, path = setup_link(db, runtime.deps)
    _, params = _callback_parts(consent(start_flow(client, path)))
    client.get("/oauth/callback/sandbox?" + urlencode(params))
    stranger = app.test_client()
    page = stranger.get("/oauth/callback/sandbox?" + urlencode({"state": params["state"], "error": "x"}))
    assert path not in page.get_data(as_text=True)
    own = client.get("/oauth/callback/sandbox?" + urlencode({"state": params["state"], "error": "x"}))
    assert own.status_code == 400
