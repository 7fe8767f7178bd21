"""The connect widget in Debian's Chromium: an agency page on ANOTHER origin (http://localhost:<port>,
while the portal is http://127.0.0.1:<port>: another origin and another site, so the iframe is a
third-party context) embeds the documented snippet and connects a Sandbox account in popup mode, in
iframe mode, and by redirect when the popup is blocked; a page on a non-allowed origin cannot frame
the portal; messages from foreign origins are ignored. Screenshots: tests/artifacts/widget-*.png.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from portal.demo_assets import widget_host_page
from portal.models import Agency, Connection, Member
from portal.services import widget
from portal.services.audit import SYSTEM
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.browser

CONSENT = re.compile(r"/sandbox/oauth/authorize\?")
EVIL_PAGE = """<!doctype html><html><body><h1>Not the agency</h1>
<iframe id="portal" src="{src}" width="600" height="400"></iframe>
<script>
  var session = new URLSearchParams(location.search).get("session") || "";
  var forged = {{source: "easyconnect", version: 1, session: session, platform: "evil", account: "@evil",
                attempt: "forged", connections: [{{id: "forged", platform: "evil", account: "@evil"}}]}};
  function send() {{
    ["success", "platform_selected", "error"].forEach(function (type) {{
      var message = Object.assign({{}}, forged, {{type: type, code: "forged", message: "forged"}});
      if (window.parent !== window) {{ window.parent.postMessage(message, "*"); }}
    }});
  }}
  send(); setTimeout(send, 500); setTimeout(send, 2000);
</script></body></html>"""


@dataclass
class Sites:
    host: str  # the agency's page: an allowed embed origin
    evil: str  # a page on an origin the agency never allowed
    portal: str
    link_url: str


def _serve(app: Any) -> tuple[Any, threading.Thread]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture(scope="module")
def sites(demo_portal: Any) -> Iterator[Sites]:

    @Request.application
    def host_app(request: Request) -> Response:
        return Response(widget_host_page(demo_portal.base_url, demo_portal.link_url), mimetype="text/html")

    @Request.application
    def evil_app(request: Request) -> Response:
        return Response(EVIL_PAGE.format(src=request.args.get("src", "about:blank").replace('"', "")),
                        mimetype="text/html")

    host_server, host_thread = _serve(host_app)
    evil_server, evil_thread = _serve(evil_app)
    host = f"http://localhost:{host_server.server_port}"
    rt = demo_portal.app.extensions["easyconnect"]
    with rt.session_factory() as db:  # the agency allows its site through the admin's own validation
        member = db.scalar(select(Member).where(Member.email == demo_portal.email))
        agency = db.get(Agency, member.agency_id)
        agency.embed_origins = []
        widget.add_embed_origin(db, agency, host, SYSTEM, production=False)
        db.commit()
    try:
        yield Sites(host, f"http://127.0.0.1:{evil_server.server_port}", demo_portal.base_url, demo_portal.link_url)
    finally:
        for server, thread in ((host_server, host_thread), (evil_server, evil_thread)):
            server.shutdown()
            thread.join(5)
            server.server_close()


def _events(page: Any) -> list[dict[str, Any]]:
    return list(page.evaluate("() => window.easyconnectEvents || []"))


def _wait_for_event(page: Any, kind: str, timeout: int = 20_000) -> dict[str, Any]:
    page.wait_for_function(f"() => (window.easyconnectEvents || []).some(e => e.type === {json.dumps(kind)})",
                           timeout=timeout)
    return next(e for e in _events(page) if e["type"] == kind)


def _approve(consent_page: Any, account: str = "Northwind Outfitters") -> None:
    consent_page.wait_for_url(CONSENT)
    consent_page.locator("label.account-choice", has_text=account).locator("input[type=radio]").check()
    consent_page.get_by_role("button", name="Approve").click()


def _connection(demo_portal: Any, connection_id: str) -> Connection | None:
    with demo_portal.app.extensions["easyconnect"].session_factory() as db:
        connection = db.get(Connection, connection_id)
        if connection is not None:
            db.expunge(connection)
        return connection


def _assert_one_success(events: list[dict[str, Any]], demo_portal: Any) -> dict[str, Any]:
    successes = [e for e in events if e["type"] == "success"]
    assert len(successes) == 1, events
    [success] = successes
    assert success["source"] == "easyconnect" and success["version"] == 1
    assert success["platform"] == "sandbox" and success["account"] == "@northwind"
    [item] = success["connections"]
    stored = _connection(demo_portal, item["id"])
    assert stored is not None and stored.external_id == "sbx-1002" and stored.platform == "sandbox"
    assert "token" not in json.dumps(success)
    return success


def test_popup_mode_connects_and_reports_one_confirmed_success(demo_portal, sites, page, artifacts):
    page.goto(sites.host)
    page.screenshot(path=artifacts / "widget-01-host-page.png", full_page=True)
    with page.expect_popup() as opened:
        page.get_by_role("button", name="Connect in a popup").click()
    popup = opened.value
    popup.wait_for_load_state()
    assert popup.locator(".brand-name").inner_text() == "Brightside Social"
    assert popup.locator(".handoff summary").inner_text() == "Continue on your phone"
    _wait_for_event(page, "ready")
    popup.locator(".handoff summary").click()  # "continue on your phone": a QR code drawn by the portal
    qr = popup.locator("img.handoff-qr")
    # Asked for only now: merely viewing the page records no session.
    popup.wait_for_function("() => document.querySelector('img.handoff-qr').src.startsWith('data:image/svg')")
    assert qr.is_visible() and qr.evaluate("img => img.naturalWidth > 0 && img.src.startsWith('data:image/svg')")
    popup.screenshot(path=artifacts / "widget-02-popup-link-page.png", full_page=True)
    popup.locator("form[action$='/connect/sandbox'] button").click()
    _approve(popup)
    success = _wait_for_event(page, "success")
    time.sleep(3.5)  # two more polling rounds: the success must not be reported again
    events = _events(page)
    _assert_one_success(events, demo_portal)
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["ready", "platform_selected"] and "exit" not in kinds, kinds
    assert next(e for e in events if e["type"] == "platform_selected")["platform"] == "sandbox"
    assert all(e["session"] == success["session"] for e in events)
    page.screenshot(path=artifacts / "widget-03-host-after-popup.png", full_page=True)


def test_iframe_mode_opens_consent_in_a_popup_and_relays_one_success(demo_portal, sites, page, artifacts):
    page.goto(sites.host)
    page.get_by_role("button", name="Connect in an iframe").click()
    frame = page.frame_locator("#frame iframe")
    assert frame.locator(".brand-name").inner_text() == "Brightside Social"
    _wait_for_event(page, "ready")
    page.screenshot(path=artifacts / "widget-04-iframe.png", full_page=True)
    with page.expect_popup() as opened:
        frame.locator("form[action$='/connect/sandbox'] button").click()
    consent = opened.value
    _approve(consent)  # first-party popup: the flow cookie is set there, so no "confirm" detour
    _wait_for_event(page, "success")
    time.sleep(3.5)
    _assert_one_success(_events(page), demo_portal)
    frame.locator("small.ok").first.wait_for()  # the framed page reloaded with its "Connected" line
    assert "Northwind Outfitters" in frame.locator("small.ok").first.inner_text()
    page.screenshot(path=artifacts / "widget-05-iframe-connected.png", full_page=True)


def test_a_blocked_popup_falls_back_to_redirect_and_still_completes(demo_portal, sites, browser, artifacts):
    # Playwright turns Chromium's popup blocker off; this second Chromium keeps it on, and the page
    # opens the widget without a click, which the blocker refuses (window.open returns null).
    blocking = browser.browser_type.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                           ignore_default_args=["--disable-popup-blocking"])
    try:
        context = blocking.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(20_000)
        page = context.new_page()
        logged: list[dict[str, Any]] = []
        page.on("console", lambda msg: logged.append(json.loads(msg.text[len("easyconnect "):]))
                if msg.text.startswith("easyconnect ") else None)
        popups: list[Any] = []
        page.on("popup", lambda popup: popups.append(popup))
        page.goto(f"{sites.host}/?auto=popup")
        page.wait_for_url(re.compile(r"/c/[^/?]+\?.*embed=redirect"))
        query = parse_qs(page.url.split("?", 1)[1])
        # The host page's own query (?auto=popup here; a reset token elsewhere) never reaches the portal.
        assert query["origin"] == [sites.host] and query["return_url"] == [sites.host + "/"]
        assert popups == [] and [e["type"] for e in logged] == ["popup_blocked"]
        page.screenshot(path=artifacts / "widget-06-redirect-fallback.png", full_page=True)
        page.locator("form[action$='/connect/sandbox'] button").click()
        _approve(page)
        page.wait_for_url(re.compile(r"/c/[^/]+/done/"))
        page.screenshot(path=artifacts / "widget-07-redirect-done.png", full_page=True)
        page.wait_for_url(re.compile("^" + re.escape(sites.host)))  # back on the agency's page
        page.wait_for_function("() => (window.easyconnectEvents || []).some(e => e.type === 'success')")
        time.sleep(2)
        _assert_one_success(logged, demo_portal)
        assert [e["type"] for e in logged] == ["popup_blocked", "success"]
        page.screenshot(path=artifacts / "widget-08-back-on-host.png", full_page=True)
    finally:
        blocking.close()


def test_a_page_on_a_foreign_origin_cannot_frame_the_portal(sites, page, artifacts):
    refused: list[str] = []
    page.on("console", lambda msg: refused.append(msg.text) if "frame-ancestors" in msg.text else None)
    # Lying about its origin (claiming the agency's) and telling the truth both end in a refused frame.
    for origin in (sites.host, sites.evil):
        query = urlencode({"embed": "iframe", "origin": origin, "session": f"s{time.time_ns():0>24}"})
        src = f"{sites.link_url}?{query}"
        page.goto(f"{sites.evil}/?{urlencode({'src': src})}")
        page.wait_for_timeout(1500)
        [child] = [f for f in page.frames if f != page.main_frame]
        assert child.locator(".client-card").count() == 0, child.url
        assert not child.url.startswith(sites.portal), child.url  # replaced by the browser's error page
    assert len(refused) >= 2, refused
    page.screenshot(path=artifacts / "widget-09-foreign-frame-refused.png", full_page=True)


def test_messages_from_foreign_origins_are_ignored(sites, page, artifacts):
    page.goto(sites.host)
    page.get_by_role("button", name="Connect in an iframe").click()
    _wait_for_event(page, "ready")
    session = page.evaluate("() => window.easyconnectFlow.session")
    # A frame from another origin, and the host page itself, post perfectly shaped forged events.
    page.evaluate("""([evil, session]) => {
        const frame = document.createElement("iframe");
        frame.src = evil + "/?session=" + encodeURIComponent(session);
        document.body.appendChild(frame);
        const forged = {source: "easyconnect", version: 1, type: "success", session: session, attempt: "forged",
                        platform: "evil", account: "@evil", connections: [{id: "forged"}]};
        window.postMessage(forged, "*");
        window.postMessage(Object.assign({}, forged, {type: "platform_selected"}), "*");
    }""", [sites.evil, session])
    page.wait_for_timeout(4000)
    events = _events(page)
    assert [e["type"] for e in events] == ["ready"], events
    assert all(e.get("platform") != "evil" for e in events)
    page.screenshot(path=artifacts / "widget-10-forged-messages-ignored.png", full_page=True)


def test_closing_the_popup_without_connecting_reports_exit_once(sites, page):
    page.goto(sites.host)
    with page.expect_popup() as opened:
        page.get_by_role("button", name="Connect in a popup").click()
    opened.value.wait_for_load_state()
    _wait_for_event(page, "ready")
    opened.value.close()
    exit_event = _wait_for_event(page, "exit", timeout=10_000)
    assert exit_event["reason"] == "closed"
    time.sleep(2)
    assert [e["type"] for e in _events(page)] == ["ready", "exit"]


def test_on_a_phone_the_widget_redirects_and_in_app_browsers_get_help(sites, browser, artifacts):
    instagram = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                 "Mobile/15E148 Instagram 309.0.0.0 (iPhone14,5; iOS 17_0; en_US)")
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True, user_agent=instagram)
    try:
        page = context.new_page()
        popups: list[Any] = []
        page.on("popup", lambda popup: popups.append(popup))
        page.goto(sites.host)
        page.get_by_role("button", name="Connect in a popup").click()  # asked for a popup: a phone redirects
        page.wait_for_url(re.compile(r"/c/[^/?]+\?.*embed=redirect"))
        assert popups == []
        notice = page.locator(".in-app-notice")
        assert "Instagram" in notice.inner_text() and "Open in browser" in notice.inner_text()
        assert not page.locator(".handoff").is_visible()  # no "continue on your phone" on a phone
        scroll_width = page.evaluate("() => document.documentElement.scrollWidth")
        assert scroll_width <= 390, scroll_width
        page.screenshot(path=artifacts / "widget-11-phone-in-app-browser.png", full_page=True)
    finally:
        context.close()


def test_an_embedded_link_that_no_longer_works_reports_a_typed_error(demo_portal, sites, page, artifacts):
    from datetime import timedelta

    from portal.services import links

    rt = demo_portal.app.extensions["easyconnect"]
    with rt.session_factory() as db:
        demo_link = links.find_by_token_id(db, rt.deps.signer.unsign(sites.link_url.rsplit("/", 1)[1]))
        revoked = links.create_link(db, rt.deps, demo_link.agency_id, SYSTEM, workspace_id=demo_link.workspace_id,
                                    platforms=["sandbox"], available=["sandbox"], lifetime=timedelta(days=1),
                                    max_uses=None, label="revoked")
        revoked.revoked_at = rt.deps.now()
        db.commit()
        revoked_url = links.link_url(rt.deps, revoked)
    page.goto(sites.host)
    page.evaluate("""(url) => { window.easyconnectFlow = EasyConnect.open({url: url, mode: "iframe",
        container: "#frame", onEvent: (e) => window.easyconnectEvents.push(e)}); }""", revoked_url)
    error = _wait_for_event(page, "error")
    assert error["code"] == "link_revoked" and "turned off" in error["message"]
    assert error["session"] == page.evaluate("() => window.easyconnectFlow.session")
    frame = page.frame_locator("#frame iframe")
    assert "This link no longer works" in frame.locator("h1").inner_text()  # framed: the agency's page shows it
    page.screenshot(path=artifacts / "widget-12-iframe-revoked-link.png", full_page=True)


def test_the_agency_manages_embed_origins_and_copies_the_snippet(demo_portal, sites, page, artifacts):
    page.goto(demo_portal.base_url + "/admin/login")
    page.get_by_label("Email").fill(demo_portal.email)
    page.get_by_label("Password").fill(demo_portal.password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Embed").click()
    page.get_by_label("Origin").fill("https://user@shop.agency.example")
    page.get_by_role("button", name="Allow origin").click()
    assert "user name or password" in page.locator(".flash-error").inner_text()
    page.get_by_label("Origin").fill("HTTPS://Shop.Agency.Example:443/")
    page.get_by_role("button", name="Allow origin").click()
    assert page.locator(".flash-success").inner_text() == "https://shop.agency.example may now embed your links."
    origins = page.locator("table.embed-origins code").all_inner_texts()
    assert origins == [sites.host, "https://shop.agency.example"]
    assert f"{demo_portal.base_url}/widget/v1/connect.js" in page.locator("pre.snippet").inner_text()
    page.screenshot(path=artifacts / "widget-13-admin-embed.png", full_page=True)
    page.locator("tr", has_text="https://shop.agency.example").get_by_role("button", name="Remove").click()
    assert page.locator("table.embed-origins code").all_inner_texts() == [sites.host]
