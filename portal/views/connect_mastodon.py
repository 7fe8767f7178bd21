"""The first page of multi-instance platforms (Mastodon) on the connect blueprint: the client names
their server, then goes to sign in there. Registered by portal.views.connect."""

from __future__ import annotations

from typing import Any

from flask import Response, make_response, render_template, request

from portal.errors import ValidationFailed
from portal.services import credentials, links
from portal.views import widget as widget_view
from portal.views.connect import bp, flow_secret, page_brand, redirect_to_platform
from portal.web import db, deps, no_store

AUTH_KIND = "instance_oauth"


def _form(resolved: links.ResolvedLink, platform: Any, status: int = 200, **values: str) -> Response:
    page = render_template("connect/mastodon.html", brand=page_brand(resolved.agency, resolved.link),
                           token=resolved.token, platform=platform, **values)
    return no_store(make_response(page, status))


@bp.get("/c/<token>/instance-oauth/<platform>")
def instance_form(token: str, platform: str) -> Response:
    session, d = db(), deps()
    resolved = links.resolve_link(session, d.signer, token, d.now(), platform=platform)
    return _form(resolved, credentials.spec_for_form(session, d, resolved, platform, AUTH_KIND))


@bp.post("/c/<token>/instance-oauth/<platform>")
def instance_start(token: str, platform: str) -> Response:
    session, d = db(), deps()
    resolved = links.resolve_link(session, d.signer, token, d.now(), platform=platform)
    spec = credentials.spec_for_form(session, d, resolved, platform, AUTH_KIND)
    server = request.form.get("server", "")[:300]
    secret = flow_secret()
    try:
        started = credentials.begin_instance_oauth(session, d, resolved, platform, server, secret)
    except ValidationFailed as exc:
        session.rollback()
        return _form(resolved, spec, 400, error=exc.public_message, server=server)
    widget_view.attach_carried(resolved, started.attempt, secret)  # chosen in the widget: tell its host
    session.commit()
    return redirect_to_platform(started.authorize_url, secret)
