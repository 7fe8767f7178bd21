"""Blueprint "sandbox": the local stand-in platform's HTTP endpoints (demo and tests only)."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import unquote, urlencode

from flask import Blueprint, Response, current_app, jsonify, redirect, render_template, request, url_for

from portal.sandbox import ACCOUNTS_BY_ID, DEMO_ACCOUNTS, FAILURE_MODES, SandboxError, SandboxServer, avatar_svg
from portal.views import sandbox_platforms

bp = Blueprint("sandbox", __name__, url_prefix="/sandbox")


def server() -> SandboxServer:
    return current_app.extensions["sandbox"]  # type: ignore[no-any-return]


def _oauth_error(exc: SandboxError) -> Response:
    response = jsonify(error=exc.error)
    response.status_code = exc.status
    response.headers["Cache-Control"] = "no-store"
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


@bp.get("/oauth/authorize")
def authorize() -> Any:
    args = request.args
    try:
        server().check_authorize_request(args.get("client_id", ""), args.get("redirect_uri", ""),
                                         args.get("response_type", ""), args.get("code_challenge_method"))
    except SandboxError as exc:
        # Never redirect to an unverified redirect_uri: show the error here instead.
        return render_template("sandbox/error.html", error=exc.error), 400
    scopes = args.get("scope", "").split()
    return render_template("sandbox/consent.html", accounts=DEMO_ACCOUNTS, scopes=scopes, params=args)


@bp.post("/oauth/authorize")
def approve() -> Any:
    form = request.form
    redirect_uri, state = form.get("redirect_uri", ""), form.get("state", "")
    try:
        server().check_authorize_request(form.get("client_id", ""), redirect_uri, form.get("response_type", ""),
                                         form.get("code_challenge_method"))
    except SandboxError as exc:
        return render_template("sandbox/error.html", error=exc.error), 400
    if form.get("decision") != "approve":
        return redirect(_with_query(redirect_uri, error="access_denied", state=state), 302)
    granted = [scope for scope in form.getlist("scope") if scope in form.get("requested_scope", "").split()]
    try:
        code = server().issue_code(form["client_id"], redirect_uri, form.get("account", ""), " ".join(granted),
                                   form.get("code_challenge"))
    except SandboxError:
        return render_template("sandbox/error.html", error="Choose an account to continue."), 400
    return redirect(_with_query(redirect_uri, code=code, state=state), 302)


def _with_query(url: str, **params: str) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


@bp.post("/oauth/token")
def token() -> Any:
    client_id, client_secret = _client_credentials()
    form = request.form
    try:
        client = server().authenticate_client(client_id, client_secret)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            issued = server().exchange_code(client, form.get("code", ""), form.get("redirect_uri", ""),
                                            form.get("code_verifier"))
        elif grant_type == "refresh_token":
            issued = server().refresh(client, form.get("refresh_token", ""))
        else:
            raise SandboxError("unsupported_grant_type")
    except SandboxError as exc:
        return _oauth_error(exc)
    response = jsonify(access_token=issued.access_token, token_type="Bearer", expires_in=issued.expires_in,
                       refresh_token=issued.refresh_token, scope=issued.scope)
    response.headers["Cache-Control"] = "no-store"
    return response


def _client_credentials() -> tuple[str | None, str | None]:
    header = request.headers.get("Authorization", "")
    if header.startswith("Basic "):
        try:
            decoded = base64.b64decode(header[6:]).decode()
        except ValueError:
            return None, None
        client_id, _, secret = decoded.partition(":")
        return unquote(client_id), unquote(secret)
    return request.form.get("client_id"), request.form.get("client_secret")


@bp.post("/oauth/revoke")
def revoke() -> Any:
    client_id, client_secret = _client_credentials()
    try:
        server().revoke(server().authenticate_client(client_id, client_secret), request.form.get("token", ""))
    except SandboxError as exc:
        return _oauth_error(exc)
    return jsonify({})


@bp.get("/api/me")
def me() -> Any:
    header = request.headers.get("Authorization", "")
    try:
        if not header.startswith("Bearer "):
            raise SandboxError("invalid_token", status=401)
        account = server().account_for_access_token(header[7:])
    except SandboxError as exc:
        return _oauth_error(exc)
    base = request.host_url.rstrip("/")
    return jsonify(sub=account.id, name=account.name, preferred_username=account.handle,
                   picture=f"{base}/sandbox/avatars/{account.id}.svg")


@bp.get("/avatars/<account_id>.svg")
def avatar(account_id: str) -> Any:
    account = ACCOUNTS_BY_ID.get(account_id)
    if account is None:
        return Response("not found", status=404, mimetype="text/plain")
    response = Response(avatar_svg(account), mimetype="image/svg+xml")
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


@bp.get("/_control")
def control_state() -> Any:
    return jsonify(counters=server().counters())


@bp.post("/_control")
def control() -> Any:
    """Failure switches: {"endpoint": "token"|"userinfo", "mode": "server_error"|..., "times": n};
    added latency: {"endpoint": "token"|"userinfo", "latency_ms": n} (0 turns it off)."""
    data = request.get_json(silent=True) or {}
    endpoint = str(data.get("endpoint", ""))
    try:
        if "latency_ms" in data:
            server().set_latency(endpoint, int(data["latency_ms"]))
        else:
            server().set_switch(endpoint, str(data.get("mode", "")), int(data.get("times", 1)))
    except (SandboxError, ValueError):
        return jsonify(error="invalid_request"), 400
    return jsonify(ok=True)


# Stand-ins for the real platforms -----------------------------------------------------------------

sandbox_platforms.load_families()


@bp.route("/p/<host>/<path:rest>", methods=["GET", "POST", "DELETE"])
def platform_endpoint(host: str, rest: str) -> Any:
    return sandbox_platforms.dispatch(request.method, host, rest)


@bp.post("/consent")
def platform_consent() -> Any:
    return sandbox_platforms.approve_consent()


@bp.get("/.well-known/openid-configuration")
def openid_configuration() -> Any:
    """Discovery for the generic sandbox platform, so a custom OIDC platform can be tried against it."""
    base = request.host_url.rstrip("/")
    return jsonify(issuer=base, authorization_endpoint=f"{base}/sandbox/oauth/authorize",
                   token_endpoint=f"{base}/sandbox/oauth/token", userinfo_endpoint=f"{base}/sandbox/api/me",
                   revocation_endpoint=f"{base}/sandbox/oauth/revoke", response_types_supported=["code"],
                   code_challenge_methods_supported=["S256"], scopes_supported=["profile", "publish"],
                   token_endpoint_auth_methods_supported=["client_secret_basic", "client_secret_post"])


@bp.get("/controls")
def controls_page() -> Any:
    """A page to make the sandbox platforms misbehave, so the demo can show every health state."""
    return render_template("sandbox/controls.html", modes=[m for m in FAILURE_MODES if m != "none"],
                           counters=server().counters())


@bp.post("/controls")
def controls_submit() -> Any:
    form = request.form
    try:
        if form.get("mode") == "none":
            for endpoint in ("token", "userinfo"):
                server().set_switch(endpoint, "none", 0)
        else:
            server().set_switch(form.get("endpoint", ""), form.get("mode", ""), int(form.get("times", "1")))
    except (SandboxError, ValueError):
        return render_template("sandbox/error.html", error="That switch does not exist."), 400
    return redirect(url_for("sandbox.controls_page"), 303)
