"""The sandbox's stand-ins for real platforms, served at /sandbox/p/<host>/<path>.

Each module registers handlers for one platform family's real endpoint paths and answers in
that platform's real shapes (and error envelopes), so the adapters run unchanged against
them. Tokens and codes live in the SandboxServer; demo data in portal.sandbox.data.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from flask import current_app, jsonify, redirect, render_template, request
from werkzeug.wrappers import Response

from portal.sandbox import SandboxError, SandboxServer
from portal.sandbox.data import DEMO_ACCOUNTS

Handler = Callable[..., Any]
_ROUTES: list[tuple[str, str, re.Pattern[str], Handler]] = []
FAMILIES = ("meta", "x", "google", "linkedin", "tiktok", "pinterest", "discord", "bluesky", "mastodon", "telegram")


def route(method: str, host: str, path: str) -> Callable[[Handler], Handler]:
    """Register ``handler(**groups)`` for a real platform endpoint (``path`` is a regex, anchored)."""

    def register(handler: Handler) -> Handler:
        _ROUTES.append((method, host, re.compile(path + r"\Z"), handler))
        return handler

    return register


def load_families() -> None:
    for family in FAMILIES:
        try:
            importlib.import_module(f"portal.views.sandbox_platforms.{family}")
        except ModuleNotFoundError as exc:
            if exc.name != f"portal.views.sandbox_platforms.{family}":
                raise


def dispatch(method: str, host: str, path: str) -> Any:
    for route_method, route_host, pattern, handler in _ROUTES:
        if route_method == method and (route_host == host or route_host == "*"):
            match = pattern.match(path)
            if match:
                return handler(**match.groupdict())
    return jsonify(error="not_found", message=f"the sandbox has no {method} {host}/{path}"), 404


def server() -> SandboxServer:
    return current_app.extensions["sandbox"]  # type: ignore[no-any-return]


def bearer() -> str:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[7:]
    return request.args.get("access_token", "")


def oauth_error(exc: SandboxError) -> Response:
    response = jsonify(error=exc.error)
    response.status_code = exc.status
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


# The consent page, shared by every stand-in ----------------------------------------------------------

def consent_page(platform: str, label: str, client_id_param: str = "client_id", keep: tuple[str, ...] = (),
                 choices: list[dict[str, str]] | None = None) -> Any:
    """Validate an authorization request like the platform would and show the sandbox consent page."""
    args = request.args
    try:
        server().check_authorize_request(args.get(client_id_param, ""), args.get("redirect_uri", ""),
                                         args.get("response_type", "code"), args.get("code_challenge_method"))
    except SandboxError as exc:
        return render_template("sandbox/error.html", error=exc.error), 400
    scopes = [s for s in re.split(r"[ ,]+", args.get("scope", "")) if s]
    params = {"client_id": args.get(client_id_param, ""), "redirect_uri": args.get("redirect_uri", ""),
              "state": args.get("state", ""), "response_type": "code", "platform": platform,
              "code_challenge": args.get("code_challenge", ""),
              "code_challenge_method": args.get("code_challenge_method", "")}
    params.update({name: args.get(name, "") for name in keep})
    return render_template("sandbox/consent.html", accounts=DEMO_ACCOUNTS, scopes=scopes, params=params,
                           platform_label=label, choices=choices or [], action="/sandbox/consent")


def approve_consent() -> Any:
    """The generic consent form's answer: a code (with what the page recorded) or access_denied."""
    form = request.form
    redirect_uri, state = form.get("redirect_uri", ""), form.get("state", "")
    try:
        server().check_authorize_request(form.get("client_id", ""), redirect_uri, "code",
                                         form.get("code_challenge_method"))
    except SandboxError as exc:
        return render_template("sandbox/error.html", error=exc.error), 400
    if form.get("decision") != "approve":
        return redirect(_with_query(redirect_uri, error="access_denied", state=state), 302)
    granted = [scope for scope in form.getlist("scope") if scope in form.get("requested_scope", "").split()]
    extra = {key.removeprefix("keep_"): value for key, value in form.items() if key.startswith("keep_")}
    if form.get("choice"):
        extra["choice"] = form["choice"]
    try:
        code = server().issue_code(form["client_id"], redirect_uri, form.get("account", ""), " ".join(granted),
                                   form.get("code_challenge"), platform=form.get("platform", "sandbox"),
                                   extra=extra)
    except SandboxError:
        return render_template("sandbox/error.html", error="Choose an account to continue."), 400
    return redirect(_with_query(redirect_uri, code=code, state=state), 302)


def _with_query(url: str, **params: str) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


def client_credentials() -> tuple[str | None, str | None]:
    """Client id and secret from HTTP Basic or the form, like a real token endpoint."""
    import base64
    from urllib.parse import unquote

    header = request.headers.get("Authorization", "")
    if header.startswith("Basic "):
        try:
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None, None
        return unquote(client_id), unquote(secret)
    source = request.form if request.form else request.args
    return source.get("client_id"), source.get("client_secret")


def oauth2_token_endpoint(platform: str, *, rotate: bool = True, refresh: bool = True,
                          access_lifetime: int | None = None, client_id_param: str = "client_id",
                          extra: Callable[[Any, str], dict[str, Any]] | None = None,
                          error: Callable[[SandboxError], Any] = oauth_error) -> Any:
    """A standard OAuth 2.0 token endpoint (authorization_code and refresh_token grants).

    ``extra(issued, code_or_refresh_token)`` adds platform fields (Pinterest's refresh expiry,
    Discord's guild, TikTok's open_id ...)."""
    form = request.form
    if client_id_param != "client_id":
        client_id, secret = form.get(client_id_param), form.get("client_secret")
    else:
        client_id, secret = client_credentials()
    try:
        client = server().authenticate_client(client_id, secret)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            code = form.get("code", "")
            issued = server().exchange_code(client, code, form.get("redirect_uri", ""), form.get("code_verifier"),
                                            platform=platform, access_lifetime=access_lifetime, refresh=refresh)
            source = code
        elif grant_type == "refresh_token":
            source = form.get("refresh_token", "")
            issued = server().refresh(client, source, platform=platform, rotate=rotate,
                                      access_lifetime=access_lifetime)
        else:
            raise SandboxError("unsupported_grant_type")
    except SandboxError as exc:
        return error(exc)
    body: dict[str, Any] = {"access_token": issued.access_token, "token_type": "bearer",
                            "expires_in": issued.expires_in, "scope": issued.scope}
    if issued.refresh_token:
        body["refresh_token"] = issued.refresh_token
    if extra is not None:
        body.update(extra(issued, source))
    return no_store(jsonify(body))


def revoke_endpoint(token_field: str = "token") -> Any:
    client_id, secret = client_credentials()
    try:
        server().revoke(server().authenticate_client(client_id, secret), request.form.get(token_field, ""))
    except SandboxError as exc:
        return oauth_error(exc)
    return jsonify({})
