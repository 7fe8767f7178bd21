"""The connect widget over HTTP: framing headers, origin checks, widget sessions and their status,
the phone hand-off, in-app browsers and the admin's embed origins. Real sandbox, both databases."""

from __future__ import annotations

import base64
import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from sqlalchemy import select

from portal.models import Agency, ConnectAttempt
from portal.security.signing import HandoffSigner, LinkSigner
from portal.services import connections as connection_service
from portal.services import widget
from tests.helpers import (
    all_platforms_link,
    consent,
    csrf_from,
    fresh,
    local_path,
    login,
    make_link,
    make_workspace,
    setup_link,
)

HOST = "https://www.agency.example"
OTHER = "https://shop.agency.example"
INSTAGRAM_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                "Mobile/15E148 Instagram 309.0.0.0 (iPhone14,5; iOS 17_0; en_US)")


def _handle() -> str:
    return secrets.token_urlsafe(24)


def _allow(db, agency_id: str, *origins: str) -> None:
    db.get(Agency, agency_id).embed_origins = list(origins)
    db.commit()


def _embedded(path: str, mode: str, origin: str = HOST, handle: str | None = None, **extra: str) -> str:
    return f"{path}?{urlencode({'embed': mode, 'origin': origin, 'session': handle or _handle(), **extra})}"


@pytest.fixture
def embeddable(db, runtime):
    member, workspace, link, path = setup_link(db, runtime.deps)
    _allow(db, member.agency_id, HOST, OTHER)
    return member, workspace, link, path


def _widget_form(handle: str, mode: str = "popup", origin: str = HOST, return_url: str = "") -> dict[str, str]:
    """What a link page's Connect form posts inside the widget (page.js adds all but the session)."""
    return {"widget_session": handle, "widget_mode": mode, "widget_origin": origin, "widget_return_url": return_url}


def _start(client, path: str, handle: str, platform: str = "sandbox", **widget_fields: str) -> str:
    response = client.post(f"{path}/connect/{platform}", data=_widget_form(handle, **widget_fields))
    assert response.status_code == 303
    return str(response.headers["Location"])


def _sessions(db, link_id: str) -> list[ConnectAttempt]:
    return list(fresh(db).scalars(select(ConnectAttempt).where(ConnectAttempt.link_id == link_id,
                                                               ConnectAttempt.stage == widget.SESSION_STAGE)))


def _status(client, handle: str):
    return client.get(f"/widget/v1/status/{handle}")


# Framing ----------------------------------------------------------------------------------------------

def test_iframe_mode_is_framed_only_by_the_agency_origins(client, embeddable):
    *_, path = embeddable
    response = client.get(_embedded(path, "iframe"))
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert f"frame-ancestors {HOST} {OTHER}" in csp
    assert "X-Frame-Options" not in response.headers  # DENY would contradict frame-ancestors
    html = response.get_data(as_text=True)
    assert 'id="easyconnect-embed"' in html and f'data-origin="{HOST}"' in html


@pytest.mark.parametrize("origin", ["null", "https://evil.example", "https://evil.example.agency.example",
                                    "https://www.agency.example.evil.example", "HTTPS://WWW.AGENCY.EXAMPLE",
                                    "https://www.agency.example:443", "https://www.agency.example/",
                                    "https://user@www.agency.example", "http://www.agency.example",
                                    "javascript:alert(1)", "", "x" * 5000])
def test_a_foreign_or_inexact_origin_gets_no_frame_and_a_clear_400(client, embeddable, origin):
    *_, path = embeddable
    response = client.get(_embedded(path, "iframe", origin=origin))
    assert response.status_code == 400
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "not allowed to embed" in response.get_data(as_text=True)


def test_plain_link_pages_popup_pages_and_admin_refuse_every_frame(client, db, embeddable):
    member, _, _, path = embeddable
    for url in (path, _embedded(path, "popup"), _embedded(path, "redirect")):
        response = client.get(url)
        assert response.status_code == 200
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Frame-Options"] == "DENY"
    login(client, member.email)
    for admin_page in ("/admin/", "/admin/embed"):
        response = client.get(admin_page)
        assert response.status_code == 200
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Frame-Options"] == "DENY"


def test_only_popup_pages_keep_their_opener(client, embeddable):
    *_, path = embeddable
    assert client.get(_embedded(path, "popup")).headers["Cross-Origin-Opener-Policy"] == "unsafe-none"
    for url in (path, _embedded(path, "iframe")):
        assert client.get(url).headers["Cross-Origin-Opener-Policy"] == "same-origin-allow-popups"


def test_an_agency_without_embed_origins_cannot_be_embedded_at_all(client, db, runtime):
    *_, path = setup_link(db, runtime.deps)
    response = client.get(_embedded(path, "iframe"))
    assert response.status_code == 400
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize("handle", ["short", "a" * 65, "../../etc/passwd-aaaaaaaaaaaaaaaa", "é" * 30, None])
def test_a_malformed_session_handle_is_refused(client, embeddable, handle):
    *_, path = embeddable
    query = {"embed": "popup", "origin": HOST, **({"session": handle} if handle is not None else {})}
    assert client.get(f"{path}?{urlencode(query)}").status_code == 400


def test_an_unknown_mode_is_refused(client, embeddable):
    *_, path = embeddable
    assert client.get(_embedded(path, "window")).status_code == 400


# Return URLs --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("return_url", ["https://evil.example/back", "javascript:alert(1)", "data:text/html,hi",
                                        f"{HOST}.evil.example/", "https://user:pw@www.agency.example/",
                                        f"{HOST}:8443/back", "//evil.example/", f"{HOST}\\@evil.example/",
                                        f"{HOST}/" + "a" * 3000])
def test_a_hostile_return_url_is_refused_and_nothing_is_recorded(client, db, embeddable, return_url):
    *_, link, path = embeddable
    response = client.get(_embedded(path, "redirect", return_url=return_url))
    assert response.status_code == 400
    assert fresh(db).scalars(select(ConnectAttempt).where(ConnectAttempt.link_id == link.id)).all() == []


def test_redirect_mode_returns_to_the_host_page_after_connecting(client, db, embeddable):
    *_, link, path = embeddable
    handle, back = _handle(), f"{HOST}/onboarding?step=3"
    page = client.get(_embedded(path, "redirect", handle=handle, return_url=back))
    assert page.status_code == 200
    callback = consent(_start(client, path, handle, mode="redirect", return_url=back))
    done = client.get(client.get(local_path(callback)).headers["Location"])
    html = done.get_data(as_text=True)
    assert done.status_code == 200 and 'data-return-url="https://www.agency.example/onboarding?step=3"' in html
    attempt = fresh(db).scalars(select(ConnectAttempt).where(ConnectAttempt.link_id == link.id,
                                                             ConnectAttempt.stage == "connected")).one()
    assert (attempt.widget_origin, attempt.return_url) == (HOST, back)


# Widget sessions and their status ---------------------------------------------------------------------------

def test_status_follows_the_attempt_and_reports_one_success_without_secrets(client, db, runtime, embeddable):
    *_, workspace, link, path = embeddable
    handle = _handle()
    assert client.get(_embedded(path, "popup", handle=handle)).status_code == 200
    assert _status(client, handle).status_code == 404  # a page view records nothing (M2)

    authorize = _start(client, path, handle)
    status = _status(client, handle)
    assert status.status_code == 200 and status.json["state"] == "in_progress"
    assert status.headers["Access-Control-Allow-Origin"] == HOST
    assert status.headers["Cache-Control"] == "no-store"
    client.get(local_path(consent(authorize, account="sbx-1002")))

    body = _status(client, handle)
    assert body.json["state"] == "done"
    [event] = body.json["events"]
    [connection] = connection_service.list_connections(fresh(db), link.agency_id, workspace.id)
    assert event == {"source": "easyconnect", "version": 1, "type": "success", "session": handle,
                     "attempt": event["attempt"], "platform": "sandbox", "account": "@northwind",
                     "connections": [{"id": connection.id, "platform": "sandbox", "account": "@northwind"}]}
    access, refresh = connection_service.read_tokens(runtime.deps, connection)
    text = body.get_data(as_text=True)
    assert access not in text and refresh not in text and "token" not in text


def test_a_failed_attempt_is_reported_as_a_typed_error(client, embeddable):
    *_, path = embeddable
    handle = _handle()
    client.get(_embedded(path, "popup", handle=handle))
    client.get(local_path(consent(_start(client, path, handle), decision="deny")))
    [event] = _status(client, handle).json["events"]
    assert (event["type"], event["code"]) == ("error", "consent_denied")
    assert event["message"] and "<" not in event["message"]


def test_unknown_handles_are_a_plain_404_without_cors(client, embeddable):
    for handle in (_handle(), "x", "a" * 300):
        response = _status(client, handle)
        assert response.status_code == 404
        assert "Access-Control-Allow-Origin" not in response.headers


def test_a_session_of_one_link_never_learns_another_links_attempts(client, db, runtime, embeddable):
    member, *_, path = embeddable
    handle = _handle()
    client.get(_embedded(path, "popup", handle=handle))
    client.get(local_path(consent(_start(client, path, handle), decision="deny")))  # records the session
    # Another agency's link, and another link of the same agency: their attempts cannot join the session.
    stranger, _, _, stranger_path = setup_link(db, runtime.deps)
    _allow(db, stranger.agency_id, HOST)
    sibling, sibling_path = make_link(db, runtime.deps, make_workspace(db, member.agency_id, "Sibling"))
    for other_path in (stranger_path, sibling_path):
        client.get(local_path(consent(_start(client, other_path, handle))))
    body = _status(client, handle).json
    assert body["state"] == "done" and [e["type"] for e in body["events"]] == ["error"]
    attempts = fresh(db).scalars(select(ConnectAttempt).where(ConnectAttempt.stage == "connected")).all()
    assert len(attempts) == 2 and all(a.widget_origin is None for a in attempts)
    # Nor can the same handle be reused to open the other link's page.
    assert client.get(_embedded(stranger_path, "popup", handle=handle)).status_code == 400


def test_a_handle_cannot_be_moved_to_another_origin(client, db, embeddable):
    *_, link, path = embeddable
    handle = _handle()
    assert client.get(_embedded(path, "popup", handle=handle)).status_code == 200
    _start(client, path, handle)
    assert client.get(_embedded(path, "popup", handle=handle)).status_code == 200  # a reload is fine
    assert client.get(_embedded(path, "popup", origin=OTHER, handle=handle)).status_code == 400
    assert client.post(f"{path}/connect/sandbox", data=_widget_form(handle, origin=OTHER)).status_code == 303
    [row] = _sessions(db, link.id)
    assert row.widget_origin == HOST and len(row.candidates) == 1  # the other origin's attempt was not listed


def test_a_session_row_is_no_oauth_state(client, db, embeddable):
    """The session's hash lives in the state column; the same value as `state` must find nothing."""
    *_, path = embeddable
    handle = _handle()
    _start(client, path, handle)
    assert connection_service.attempt_by_state(fresh(db), handle) is None
    assert client.get(f"/oauth/callback/sandbox?state={handle}&code=x").status_code == 400


# The phone hand-off -------------------------------------------------------------------------------------

def _handoff_code(client, path: str, handle: str, mode: str = "popup", origin: str = HOST):
    return client.post("/widget/v1/handoff-code", data={"link": path.removeprefix("/c/"), "mode": mode,
                                                         "origin": origin, "session": handle})


def _issue_handoff(db, runtime, link, handle: str) -> str:
    """A hand-off URL as the QR code carries it (the endpoint only answers with the picture)."""
    session = fresh(db)
    agency = session.get(Agency, link.agency_id)
    url = widget.issue_handoff(session, runtime.deps, session.merge(link), agency, "popup", HOST, handle)
    session.commit()
    return urlsplit(url).path


def test_the_qr_code_is_issued_on_demand_and_records_the_session(client, db, embeddable):
    *_, link, path = embeddable
    handle = _handle()
    page = client.get(_embedded(path, "popup", handle=handle)).get_data(as_text=True)
    assert 'data-handoff-code-url="/widget/v1/handoff-code"' in page and "data:image/svg" not in page
    assert _sessions(db, link.id) == []
    answer = _handoff_code(client, path, handle)
    assert answer.status_code == 200 and answer.json["qr"].startswith("data:image/svg+xml")
    [row] = _sessions(db, link.id)
    assert row.connect_code_hash and row.pending_enc and handle not in row.pending_enc
    refused = _handoff_code(client, path, _handle(), origin="https://evil.example")
    assert refused.status_code == 400 and refused.json["error"] == "invalid_input"


def test_continue_on_your_phone_joins_the_same_session(client, db, runtime, embeddable):
    *_, workspace, link, path = embeddable
    handle = _handle()
    client.get(_embedded(path, "popup", handle=handle))
    phone = client.application.test_client()
    entry = phone.get(_issue_handoff(db, runtime, link, handle))
    assert entry.status_code == 303
    landing = entry.headers["Location"]
    query = parse_qs(urlsplit(landing).query)
    assert (query["embed"], query["session"]) == (["handoff"], [handle]) and len(query["join"][0]) >= 22
    phone_page = phone.get(landing)
    html = phone_page.get_data(as_text=True)
    assert phone_page.status_code == 200 and "handoff-code-url" not in html
    phone.get(local_path(consent(_start(phone, path, handle, mode="handoff"))))
    assert _status(client, handle).json["events"][0]["type"] == "success"


def test_a_handoff_url_works_once_and_never_carries_the_handle(client, db, runtime, embeddable):
    """L1: the URL on screen is a single-use nonce; photographing it after the phone used it gets nothing."""
    *_, link, path = embeddable
    handle = _handle()
    url = _issue_handoff(db, runtime, link, handle)
    payload = url.rsplit("/", 1)[1].split(".")[0]
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    assert handle not in decoded and '"n"' in decoded
    assert client.get(url).status_code == 303
    assert client.get(url).status_code == 404  # used up
    # A newer code replaces the older one.
    older, newer = _issue_handoff(db, runtime, link, handle), _issue_handoff(db, runtime, link, handle)
    assert client.get(older).status_code == 404 and client.get(newer).status_code == 303


def test_handoff_mode_needs_a_consumed_code_not_just_the_handle(client, db, runtime, embeddable):
    """L1: whoever knows a session handle cannot open the hand-off page without the phone's join ticket."""
    *_, link, path = embeddable
    handle = _handle()
    _start(client, path, handle)
    bare = f"{path}?{urlencode({'embed': 'handoff', 'session': handle})}"
    assert client.get(bare).status_code == 400
    guessed = f"{path}?{urlencode({'embed': 'handoff', 'session': handle, 'join': _handle()})}"
    assert client.get(guessed).status_code == 400
    landing = client.get(_issue_handoff(db, runtime, link, handle)).headers["Location"]
    assert client.get(landing).status_code == 200


def test_a_handoff_from_a_server_whose_clock_runs_ahead_still_opens(client, db, runtime, embeddable):
    """M3: another portal server, two minutes ahead, drew the QR code; this one must still accept it."""
    *_, link, path = embeddable
    ahead = replace(runtime.deps, clock=lambda: datetime.now(UTC) + timedelta(minutes=2))
    session = fresh(db)
    url = widget.issue_handoff(session, ahead, session.merge(link), session.get(Agency, link.agency_id), "popup",
                               HOST, _handle())
    session.commit()
    assert client.get(urlsplit(url).path).status_code == 303


def test_a_stale_or_foreign_handoff_url_is_a_404(client, db, runtime, embeddable):
    *_, link, path = embeddable
    handle = _handle()
    url = _issue_handoff(db, runtime, link, handle)
    keys = runtime.deps.settings.link_keys
    now = int(runtime.deps.now().timestamp())
    forged = [LinkSigner(keys).sign(link.token_id),  # a link token: another salt
              HandoffSigner(["another key"]).sign({"l": link.token_id, "n": _handle()}, now),
              HandoffSigner(keys).sign({"l": link.token_id, "n": _handle()}, now),  # signed, no such code
              HandoffSigner(keys).sign({"l": link.token_id, "s": handle}, now),  # the old shape: a bare handle
              "garbage", "a" * 500]
    for token in forged:
        assert client.get(f"/widget/v1/handoff/{token}").status_code == 404
    assert client.get(url).status_code == 303


# Abuse: rows, rate limits, removed origins (review findings M2, L2) -----------------------------------------

def test_viewing_embedded_pages_records_no_rows(client, db, embeddable):
    """M2: a link holder looping over ?embed=popup&session=<random> used to insert a row per request."""
    *_, link, path = embeddable
    for mode in ("popup", "iframe", "redirect") * 10:
        assert client.get(_embedded(path, mode, return_url=f"{HOST}/back")).status_code == 200
    assert fresh(db).scalars(select(ConnectAttempt).where(ConnectAttempt.link_id == link.id)).all() == []


def test_live_sessions_of_a_link_are_capped_and_the_oldest_go_first(client, db, embeddable):
    """M2: even started sessions cannot grow without bound: a new one evicts the link's oldest."""
    *_, link, path = embeddable
    handles = [_handle() for _ in range(widget.MAX_LIVE_SESSIONS_PER_LINK + 3)]
    for handle in handles:
        _start(client, path, handle)
    assert len(_sessions(db, link.id)) == widget.MAX_LIVE_SESSIONS_PER_LINK
    assert [_status(client, h).status_code for h in handles[:3]] == [404] * 3
    assert all(_status(client, h).status_code == 200 for h in handles[3:])


@pytest.mark.parametrize(("setting", "url"), [("WIDGET_EMBED_RATE_LIMIT", "embed"),
                                              ("WIDGET_STATUS_RATE_LIMIT", "status")])
def test_embedded_pages_and_status_polls_are_rate_limited_per_address(client, embeddable, setting, url):
    *_, path = embeddable
    handle = _handle()
    _start(client, path, handle)
    target = _embedded(path, "popup", handle=handle) if url == "embed" else f"/widget/v1/status/{handle}"
    address = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"
    app, saved = client.application, client.application.config[setting]
    app.config[setting] = "3 per minute"
    try:
        answers = [client.get(target, environ_base={"REMOTE_ADDR": address}).status_code for _ in range(4)]
        other = client.get(target, environ_base={"REMOTE_ADDR": "10.255.255.254"}).status_code
        plain = [client.get(path, environ_base={"REMOTE_ADDR": address}).status_code for _ in range(4)]
    finally:
        app.config[setting] = saved
    assert answers == [200, 200, 200, 429] and other == 200
    assert plain == [200] * 4  # plain link visits are not the widget's to count


def test_removing_an_origin_ends_the_sessions_bound_to_it(client, db, embeddable):
    """L2: a host origin the agency removed can neither read its sessions nor list new attempts on them."""
    member, _, link, path = embeddable
    handle = _handle()
    _start(client, path, handle)
    assert _status(client, handle).status_code == 200
    _allow(db, member.agency_id, OTHER)
    assert _status(client, handle).status_code == 404
    client.get(local_path(consent(_start(client, path, handle))))
    [row] = _sessions(db, link.id)
    assert len(row.candidates) == 1  # the attempt started after the removal was not listed
    assert _handoff_code(client, path, handle).status_code == 400
    _allow(db, member.agency_id, HOST, OTHER)
    assert _status(client, handle).status_code == 200


# Platforms with a first page of their own (finding L3) ---------------------------------------------------------

def test_a_bluesky_connection_made_in_the_widget_is_reported_once(client, db, runtime):
    from portal.views.sandbox_platforms.bluesky import DEMO_APP_PASSWORD

    member, _, link, path = all_platforms_link(db, runtime.deps, ["sandbox", "bluesky"])
    _allow(db, member.agency_id, HOST)
    handle = _handle()
    assert client.get(_embedded(path, "popup", handle=handle)).status_code == 200
    form_page = _start(client, path, handle, platform="bluesky")
    assert form_page.endswith("/app-password/bluesky")
    wrong = client.post(form_page, data={"identifier": "bluebottlebakery.bsky.social", "app_password": "nope"})
    assert wrong.status_code == 400  # a typo does not use up the widget's note
    done = client.post(form_page, data={"identifier": "bluebottlebakery.bsky.social",
                                        "app_password": DEMO_APP_PASSWORD})
    assert done.status_code == 303 and "/done/" in done.headers["Location"]
    page = client.get(done.headers["Location"]).get_data(as_text=True)
    assert 'id="easyconnect-relay"' in page and f'data-origin="{HOST}"' in page
    body = _status(client, handle).json
    assert body["state"] == "done" and [(e["type"], e["platform"]) for e in body["events"]] == [("success", "bluesky")]
    # The same browser connecting again outside the widget is not reported a second time.
    again = client.post(form_page, data={"identifier": "bluebottlebakery.bsky.social",
                                         "app_password": DEMO_APP_PASSWORD})
    assert again.status_code == 303 and len(_status(client, handle).json["events"]) == 1


def test_another_browser_cannot_ride_on_a_widget_flow(client, db, runtime):
    """The note is bound to the flow cookie of the browser that chose the platform in the widget."""
    from portal.views.sandbox_platforms.bluesky import DEMO_APP_PASSWORD

    member, _, link, path = all_platforms_link(db, runtime.deps, ["sandbox", "bluesky"])
    _allow(db, member.agency_id, HOST)
    handle = _handle()
    form_page = _start(client, path, handle, platform="bluesky")
    stranger = client.application.test_client()
    done = stranger.post(form_page, data={"identifier": "bluebottlebakery.bsky.social",
                                          "app_password": DEMO_APP_PASSWORD})
    assert done.status_code == 303
    assert _status(client, handle).json["events"] == []


def test_a_telegram_attempt_started_in_the_widget_is_listed(client, db, runtime):
    member, _, link, path = all_platforms_link(db, runtime.deps, ["sandbox", "telegram"])
    _allow(db, member.agency_id, HOST)
    handle = _handle()
    page_url = _start(client, path, handle, platform="telegram")
    assert page_url.endswith("/bot-code/telegram") and client.get(page_url).status_code == 200
    [row] = _sessions(db, link.id)
    [listed] = [c["attempt"] for c in row.candidates]
    attempt = fresh(db).get(ConnectAttempt, listed)
    assert (attempt.platform, attempt.widget_origin) == ("telegram", HOST)
    assert _status(client, handle).json["state"] == "in_progress"


def test_bluesky_on_the_phone_after_a_handoff_is_reported_to_the_desktop(client, db, runtime):
    from portal.views.sandbox_platforms.bluesky import DEMO_APP_PASSWORD

    member, _, link, path = all_platforms_link(db, runtime.deps, ["sandbox", "bluesky"])
    _allow(db, member.agency_id, HOST)
    handle = _handle()
    phone = client.application.test_client()
    assert phone.get(phone.get(_issue_handoff(db, runtime, link, handle)).headers["Location"]).status_code == 200
    form_page = _start(phone, path, handle, platform="bluesky", mode="handoff")
    done = phone.post(form_page, data={"identifier": "bluebottlebakery.bsky.social",
                                       "app_password": DEMO_APP_PASSWORD})
    assert done.status_code == 303
    assert [e["platform"] for e in _status(client, handle).json["events"]] == ["bluesky"]


# The script, in-app browsers ----------------------------------------------------------------------------------

def test_connect_js_is_versioned_and_cached_long(client):
    response = client.get("/widget/v1/connect.js")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/javascript")
    assert "immutable" in response.headers["Cache-Control"] and "max-age=31536000" in response.headers["Cache-Control"]
    script = response.get_data(as_text=True)
    assert "EasyConnect" in script and '"*"' not in script and "'*'" not in script
    assert client.get("/widget/v2/connect.js").status_code == 404


@pytest.mark.parametrize(("lang", "words"), [("en", "Open this page in your browser"),
                                             ("es", "Abre esta página en tu navegador"),
                                             ("de", "Öffnen Sie diese Seite in Ihrem Browser")])
def test_in_app_browsers_are_told_to_open_a_real_browser(client, db, runtime, lang, words):
    *_, path = setup_link(db, runtime.deps)
    html = client.get(f"{path}?lang={lang}", headers={"User-Agent": INSTAGRAM_UA}).get_data(as_text=True)
    assert words in html and "Instagram" in html
    plain = client.get(path, headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0"})
    assert "in-app-notice" not in plain.get_data(as_text=True)


# The admin's embed origins -------------------------------------------------------------------------------------

def test_admin_adds_normalised_origins_refuses_bad_ones_and_shows_the_snippet(client, db, runtime):
    member, *_ = setup_link(db, runtime.deps)
    login(client, member.email)
    token = csrf_from(client, "/admin/embed")
    ok = client.post("/admin/embed/origins", data={"origin": " HTTPS://Shop.Agency.Example:443/ ", "csrf_token": token})
    assert ok.status_code == 302
    for bad in ("https://user@x.example", "ftp://x.example", "https://x.example/path", "null", "https://*.example"):
        client.post("/admin/embed/origins", data={"origin": bad, "csrf_token": token})
    assert fresh(db).get(Agency, member.agency_id).embed_origins == ["https://shop.agency.example"]
    page = client.get("/admin/embed").get_data(as_text=True)
    assert "https://shop.agency.example" in page and "/widget/v1/connect.js" in page
    client.post("/admin/embed/origins/remove", data={"origin": "https://shop.agency.example", "csrf_token": token})
    assert fresh(db).get(Agency, member.agency_id).embed_origins == []


def test_admin_embed_changes_need_csrf_and_stay_in_the_agency(client, db, runtime):
    member, *_ = setup_link(db, runtime.deps)
    other, *_ = setup_link(db, runtime.deps)
    _allow(db, other.agency_id, HOST)
    login(client, member.email)
    assert client.post("/admin/embed/origins", data={"origin": OTHER}).status_code == 400  # no CSRF token
    token = csrf_from(client, "/admin/embed")
    client.post("/admin/embed/origins/remove", data={"origin": HOST, "csrf_token": token})
    assert fresh(db).get(Agency, other.agency_id).embed_origins == [HOST]
    assert HOST not in client.get("/admin/embed").get_data(as_text=True)


def test_admin_origins_are_limited_in_number(client, db, runtime):
    member, *_ = setup_link(db, runtime.deps)
    _allow(db, member.agency_id, *[f"https://site{i}.example" for i in range(widget.MAX_EMBED_ORIGINS)])
    login(client, member.email)
    token = csrf_from(client, "/admin/embed")
    response = client.post("/admin/embed/origins", data={"origin": "https://one-more.example", "csrf_token": token},
                           follow_redirects=True)
    assert f"At most {widget.MAX_EMBED_ORIGINS}" in response.get_data(as_text=True)
    assert len(fresh(db).get(Agency, member.agency_id).embed_origins) == widget.MAX_EMBED_ORIGINS


def test_a_failing_embedded_link_page_tells_only_an_allowed_host_why(client, db, embeddable):
    *_, link, path = embeddable
    db.get(type(link), link.id).revoked_at = db.get(type(link), link.id).created_at
    db.commit()
    handle = _handle()
    framed = client.get(_embedded(path, "iframe", handle=handle, lang="fr"))
    assert framed.status_code == 410
    assert f"frame-ancestors {HOST} {OTHER}" in framed.headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in framed.headers
    html = framed.get_data(as_text=True)
    assert 'id="easyconnect-error"' in html and 'data-code="link_revoked"' in html
    assert f'data-session="{handle}"' in html and f'data-origin="{HOST}"' in html
    assert 'data-message="Ce lien' in html  # plain text, in the page's language
    foreign = client.get(_embedded(path, "iframe", origin="https://evil.example"))
    assert foreign.status_code == 410 and "easyconnect-error" not in foreign.get_data(as_text=True)
    assert "frame-ancestors 'none'" in foreign.headers["Content-Security-Policy"]
    assert foreign.headers["X-Frame-Options"] == "DENY"


def test_the_demo_allows_its_local_host_page_once(client, db, runtime):
    from portal.cli import ensure_demo, ensure_widget_demo

    _, _, link_url = ensure_demo(runtime)
    assert ensure_widget_demo(runtime, 5001) == "http://localhost:5001/"
    ensure_widget_demo(runtime, 5001)
    agency = fresh(db).scalars(select(Agency).where(Agency.name == "Brightside Social")).one()
    assert agency.embed_origins == ["http://localhost:5001"]
    framed = client.get(_embedded(urlsplit(link_url).path, "iframe", origin="http://localhost:5001"))
    assert framed.status_code == 200
    assert "frame-ancestors http://localhost:5001" in framed.headers["Content-Security-Policy"]
