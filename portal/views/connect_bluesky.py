"""Bluesky's first page on the connect blueprint: handle (or email or DID), app password and an
optional own server, posted back here. Registered by portal.views.connect."""

from __future__ import annotations

from typing import Any

from flask import Response, make_response, redirect, render_template, request

from portal.errors import ValidationFailed
from portal.services import credentials, links
from portal.views import widget as widget_view
from portal.views.connect import bp, browser_secret, page_brand
from portal.web import client_ip, db, deps, no_store

AUTH_KIND = "app_password"


def _form(resolved: links.ResolvedLink, platform: Any, status: int = 200, **values: str) -> Response:
    demo = None
    if platform.sandboxed:  # the sandbox's demo people, so a newcomer can click through
        from portal.views.sandbox_platforms.bluesky import demo_logins

        demo = demo_logins()
    page = render_template("connect/bluesky.html", brand=page_brand(resolved.agency, resolved.link),
                           token=resolved.token, platform=platform, demo=demo,
                           default_server=credentials.DEFAULT_PDS, **values)
    return no_store(make_response(page, status))


@bp.get("/c/<token>/app-password/<platform>")
def app_password_form(token: str, platform: str) -> Response:
    session, d = db(), deps()
    resolved = links.resolve_link(session, d.signer, token, d.now(), platform=platform)
    return _form(resolved, credentials.spec_for_form(session, d, resolved, platform, AUTH_KIND))


@bp.post("/c/<token>/app-password/<platform>")
def app_password_connect(token: str, platform: str) -> Response:
    session, d = db(), deps()
    resolved = links.resolve_link(session, d.signer, token, d.now(), platform=platform)
    spec = credentials.spec_for_form(session, d, resolved, platform, AUTH_KIND)
    form = request.form
    identifier, server = form.get("identifier", "")[:300], form.get("server", "")[:300]
    try:
        attempt = credentials.connect_with_app_password(session, d, resolved, platform, identifier,
                                                        form.get("app_password", "")[:100], server, client_ip())
    except ValidationFailed as exc:  # the form again, with what was typed (never the password)
        return _form(resolved, spec, 400, error=exc.public_message, identifier=identifier, server=server)
    if widget_view.attach_carried(resolved, attempt, browser_secret()):  # chosen in the widget: tell its host
        session.commit()
    return no_store(make_response(redirect(f"/c/{token}/done/{attempt.id}", 303)))
