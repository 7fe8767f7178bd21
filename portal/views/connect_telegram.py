"""Routes of the connect blueprint for Telegram (auth_kind "bot_code"); registered by portal.views.connect.

The page shows a one-time code to post where the agency's bot is an admin. It learns of
success by itself: telegram.js polls the status URL. Without JavaScript, "check now" posts
the code back (it is on the page already) and gets the page again with the news.
"""

from __future__ import annotations

from flask import Response, jsonify, make_response, redirect, render_template, request

from portal import i18n
from portal.services import links, telegram
from portal.views import widget as widget_view
from portal.views.connect import bp, browser_secret, page_brand
from portal.web import client_ip, db, deps, no_store

BASE = "/c/<token>/bot-code/telegram"


@bp.get(BASE)
def telegram_page(token: str) -> Response:
    session, d = db(), deps()
    resolved = links.resolve_link(session, d.signer, token, d.now(), platform=telegram.PLATFORM)
    page = telegram.start(session, d, resolved.link)
    widget_view.attach_carried(resolved, page.attempt, browser_secret())  # chosen in the widget: tell its host
    session.commit()
    return _render(resolved, page, None)


@bp.post(f"{BASE}/<attempt_id>/check")
def telegram_check(token: str, attempt_id: str) -> Response:
    session, d = db(), deps()
    resolved = links.resolve_link(session, d.signer, token, d.now(), platform=telegram.PLATFORM)
    page = telegram.resume(session, d, resolved.link, attempt_id, request.form.get("code", ""))
    status = telegram.check(session, d, resolved.link, attempt_id, client_ip())
    if status.state == "connected":
        return no_store(redirect(f"/c/{token}/done/{attempt_id}", 303))
    return _render(resolved, page, status)


@bp.get(f"{BASE}/<attempt_id>/status")
def telegram_status(token: str, attempt_id: str) -> Response:
    session, d = db(), deps()
    resolved = links.resolve_link(session, d.signer, token, d.now(), platform=telegram.PLATFORM)
    status = telegram.check(session, d, resolved.link, attempt_id, client_ip())
    i18n.use_language(resolved.link.language or resolved.agency.default_language)  # as its page (page_brand)
    body = {"state": status.state, "message": i18n.translate(status.message), "final": status.final,
            "retry_after": status.retry_after}
    if status.state == "connected":
        body["next"] = f"/c/{token}/done/{attempt_id}"
    return no_store(jsonify(body))


def _render(resolved: links.ResolvedLink, page: telegram.BotCodePage, status: telegram.Status | None) -> Response:
    token, settings = resolved.token, deps().settings
    html = render_template(
        "connect/telegram.html", brand=page_brand(resolved.agency, resolved.link), token=token, page=page,
        status=status, status_url=f"/c/{token}/bot-code/telegram/{page.attempt.id}/status",
        check_url=f"/c/{token}/bot-code/telegram/{page.attempt.id}/check",
        sandbox_page=f"{settings.sandbox_url}/telegram" if page.sandboxed else None)
    return no_store(make_response(html, 200))
