"""The issue's acceptance walk in a real browser: a client connects a Sandbox account through the
demo link, then the agency sees it healthy in the admin panel and refreshes it.

Screenshots land in tests/artifacts/ for review (01..06).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

pytestmark = pytest.mark.browser

DATE = re.compile(r"^\d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2} UTC$")


def _watch_errors(page: Any) -> list[str]:
    """Script errors, console errors (CSP violations among them) and failed sub-resources seen by the page."""
    problems: list[str] = []

    def on_console(msg: Any) -> None:
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):  # reported by on_response
            problems.append(f"console error: {msg.text}")

    def on_response(response: Any) -> None:
        if response.status >= 400:
            problems.append(f"HTTP {response.status}: {response.url}")

    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", on_console)
    page.on("response", on_response)
    return problems


def test_client_connects_and_agency_refreshes(demo_portal: Any, page: Any, artifacts: Any) -> None:
    problems = _watch_errors(page)

    # 1. The client opens the demo link.
    page.goto(demo_portal.link_url)
    assert page.locator(".brand-name").inner_text() == "Brightside Social"
    assert page.locator("li.platform-item").count() == 16  # every platform, each served by the sandbox
    sandbox = page.locator("li.platform-item:has(form[action$='/connect/sandbox'])")
    assert sandbox.count() == 1
    assert sandbox.locator("strong").first.inner_text() == "Sandbox"
    page.screenshot(path=artifacts / "01-link-page.png", full_page=True)

    # 2. Connect → the sandbox platform's consent page → approve as Northwind Outfitters.
    sandbox.get_by_role("button", name="Connect").click()
    page.wait_for_url(re.compile(r"/sandbox/oauth/authorize\?"))
    assert page.get_by_role("heading", name="Authorize access").is_visible()
    northwind = page.locator("label.account-choice", has_text="Northwind Outfitters").locator("input[type=radio]")
    northwind.check()
    assert northwind.is_checked()
    page.screenshot(path=artifacts / "02-consent.png", full_page=True)
    page.get_by_role("button", name="Approve").click()

    # 3. Back on the portal: the done page.
    page.wait_for_url(re.compile(r"/c/[^/]+/done/[^/]+$"))
    assert page.get_by_role("heading", name="You're connected").is_visible()
    lead = page.locator(".done .lead").inner_text()
    assert "Northwind Outfitters" in lead and "@northwind" in lead and "Brightside Social" in lead
    page.screenshot(path=artifacts / "03-done.png", full_page=True)

    # 3b. Facebook Pages: consent, then the client picks two Pages in the agency's branded picker.
    page.goto(demo_portal.link_url)
    page.locator("form[action$='/connect/facebook'] button").click()
    page.wait_for_url(re.compile(r"/sandbox/p/www\.facebook\.com/"))
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(re.compile(r"/c/[^/]+/select/[^/]+$"))
    page.get_by_label("Blue Bottle Bakery").check()
    page.get_by_label("Blue Bottle Catering").check()
    page.screenshot(path=artifacts / "03b-pick-pages.png", full_page=True)
    page.get_by_role("button", name="Connect selected").click()
    page.wait_for_url(re.compile(r"/c/[^/]+/done/[^/]+$"))
    assert page.locator(".done .lead").count() == 2

    # 4. The agency logs in and finds the connection in the demo workspace.
    page.goto(demo_portal.base_url + "/admin/login")
    page.get_by_label("Email").fill(demo_portal.email)
    page.get_by_label("Password").fill(demo_portal.password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(demo_portal.base_url + "/admin/")
    page.get_by_role("link", name="Blue Bottle Bakery").click()
    page.wait_for_url(re.compile(r"/admin/workspaces/"))
    row = page.locator("table.connections tbody tr", has_text="Northwind Outfitters")
    assert row.count() == 1
    cells = row.locator("td")
    assert "@northwind" in cells.nth(0).inner_text()
    assert cells.nth(2).inner_text().strip() == "Healthy"
    assert DATE.match(cells.nth(4).inner_text().strip()), cells.nth(4).inner_text()
    page.screenshot(path=artifacts / "04-admin-workspace.png", full_page=True)

    # 5. The connection's page: refresh it now.
    row.get_by_role("link", name="Northwind Outfitters").click()
    page.wait_for_url(re.compile(r"/admin/connections/"))

    def fact(name: str) -> str:
        return str(page.locator(f"xpath=//dl[@class='facts']/dt[normalize-space()='{name}']"
                                "/following-sibling::dd[1]").inner_text()).strip()

    expiry_before = page.locator(".token-expiry").inner_text().strip()
    assert DATE.match(expiry_before), expiry_before
    assert fact("Health") == "Healthy"
    assert fact("Last refresh") == "—"
    page.get_by_role("button", name="Refresh now").click()
    page.wait_for_url(re.compile(r"/admin/connections/"))
    assert page.locator(".flash-success").inner_text().strip() == "Connection refreshed."
    assert page.locator(".connection-head .health").inner_text().strip() == "Healthy"
    assert fact("Health") == "Healthy"
    assert DATE.match(fact("Last refresh")), fact("Last refresh")
    assert DATE.match(page.locator(".token-expiry").inner_text().strip())
    page.screenshot(path=artifacts / "05-connection-refreshed.png", full_page=True)

    assert problems == []


def test_link_page_fits_a_phone(demo_portal: Any, browser: Any, artifacts: Any) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True)
    try:
        page = context.new_page()
        problems = _watch_errors(page)
        page.goto(demo_portal.link_url)
        assert page.locator(".brand-name").inner_text() == "Brightside Social"
        assert page.get_by_role("button", name=re.compile(r"^Connect")).first.is_visible()
        page.screenshot(path=artifacts / "06-link-page-phone.png", full_page=True)
        scroll_width, inner_width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert inner_width == 390, f"the page lays out {inner_width}px wide on a 390px phone (meta viewport?)"
        assert scroll_width <= inner_width, f"horizontal scroll on a phone: scrollWidth {scroll_width} > {inner_width}"
        assert problems == []
    finally:
        context.close()
