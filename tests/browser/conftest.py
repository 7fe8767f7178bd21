"""Browser fixtures: the demo portal on a real local socket, and Debian's Chromium through Playwright.

The portal is served exactly like ``easyconnect demo`` serves it: one app holds the portal and
the sandbox platform (under /sandbox), on SQLite, with jobs inline. A missing Chromium fails the
run; it never skips.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from portal.app import create_app
from portal.cli import ensure_demo
from portal.migrate import upgrade
from tests.conftest import base_settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


class _LateApp:
    """A WSGI callable bound to the socket before the app exists: the app needs to know its own port."""

    def __init__(self) -> None:
        self.app: Callable[..., Iterable[bytes]] | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        assert self.app is not None, "the portal is not ready yet"
        return self.app(environ, start_response)


@dataclass
class DemoPortal:
    base_url: str
    email: str
    password: str
    link_url: str
    app: Any


@pytest.fixture(scope="module")
def demo_portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoPortal]:
    late = _LateApp()
    server = make_server("127.0.0.1", 0, late, threaded=True)
    base_url = f"http://127.0.0.1:{server.server_port}"
    instance = tmp_path_factory.mktemp("browser-portal")
    url = f"sqlite:///{instance / 'portal.db'}"
    settings = base_settings(instance, url, base_url=base_url, sandbox_url=base_url + "/sandbox",
                             sandbox_redirect_prefix=base_url + "/oauth/callback/")
    app = create_app(settings)
    thread: threading.Thread | None = None
    try:
        upgrade(url)
        email, password, link_url = ensure_demo(app.extensions["easyconnect"])
        late.app = app
        thread = threading.Thread(target=server.serve_forever, name="browser-portal", daemon=True)
        thread.start()
        yield DemoPortal(base_url, email, password, link_url, app)
    finally:
        if thread is not None:
            server.shutdown()
            thread.join(5)
        server.server_close()
        app.extensions["easyconnect"].close()
        sandbox = app.extensions.get("sandbox")
        if sandbox is not None:  # the sandbox platform keeps its own engine, outside the runtime
            sandbox.engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is required for the browser tests and was not found at {CHROMIUM} "
                    "(install Debian's chromium package)", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh desktop-sized context per test: no cookies carried between tests."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()
