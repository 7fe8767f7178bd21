"""Stand-in for TikTok's Login Kit and API v2 (reference/platforms.md §7).

Real shapes: ``client_key`` instead of ``client_id``, comma-separated scopes, a token answer with
``open_id``, ``refresh_expires_in`` and a comma-separated ``scope``; 2-hour access tokens and
rotating refresh tokens (the old one dies); ``/v2/user/info/`` answering only the fields the
granted scopes unlock, inside ``{"data": {"user": ...}, "error": {"code": "ok", ...}}``; API errors
as ``{"error": {"code", "message", "log_id"}}`` and OAuth errors as ``{"error", "error_description",
"log_id"}``.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import jsonify, request

from portal.sandbox import ACCOUNTS_BY_ID, IssuedTokens, SandboxError
from portal.sandbox.data import platform_user_id
from portal.views.sandbox_platforms import consent_page, no_store, oauth2_token_endpoint, route, server

API = "open.tiktokapis.com"
ACCESS_LIFETIME = 7200  # current docs: 2 hours
REFRESH_LIFETIME = 180 * 86400  # current docs: 180 days
SCOPE_OF_FIELD = {
    "open_id": "user.info.basic", "union_id": "user.info.basic", "avatar_url": "user.info.basic",
    "avatar_url_100": "user.info.basic", "avatar_large_url": "user.info.basic", "display_name": "user.info.basic",
    "username": "user.info.profile", "bio_description": "user.info.profile", "is_verified": "user.info.profile",
    "profile_deep_link": "user.info.profile", "follower_count": "user.info.stats",
    "following_count": "user.info.stats", "likes_count": "user.info.stats", "video_count": "user.info.stats",
}
_API_ERRORS = {  # sandbox failure -> (status, TikTok's code)
    "invalid_token": (401, "access_token_invalid"), "rate_limited": (429, "rate_limit_exceeded"),
    "server_error": (500, "internal_error"), "scope": (401, "scope_not_authorized"),
    "invalid_params": (400, "invalid_params"),
}


def _log_id() -> str:
    return "2026" + secrets.token_hex(12).upper()


def oauth_error(exc: SandboxError) -> Any:
    name = "rate_limit_exceeded" if exc.error == "rate_limited" else exc.error
    response = jsonify(error=name, error_description=f"sandbox: {name}", log_id=_log_id())
    response.status_code = exc.status
    return no_store(response)


def api_error(kind: str) -> Any:
    status, code = _API_ERRORS.get(kind, (500, "internal_error"))
    response = jsonify(data={}, error={"code": code, "message": f"sandbox: {code}", "log_id": _log_id()})
    response.status_code = status
    return response


def _token_fields(issued: IssuedTokens, _source: str) -> dict[str, Any]:
    account = ACCOUNTS_BY_ID[issued.account_id]
    # Say no more than the stand-in enforces: its refresh tokens may live shorter than TikTok's.
    return {"open_id": platform_user_id("tiktok", account), "scope": ",".join(issued.scope.split()),
            "token_type": "Bearer", "refresh_expires_in": min(REFRESH_LIFETIME, server().refresh_lifetime)}


@route("GET", "www.tiktok.com", r"v2/auth/authorize/?")
def authorize() -> Any:
    return consent_page("tiktok", "TikTok", client_id_param="client_key")


@route("POST", API, r"v2/oauth/token/?")
def token() -> Any:
    return oauth2_token_endpoint("tiktok", access_lifetime=ACCESS_LIFETIME, client_id_param="client_key",
                                 extra=_token_fields, error=oauth_error)


@route("POST", API, r"v2/oauth/revoke/?")
def revoke() -> Any:
    form = request.form
    try:
        client = server().authenticate_client(form.get("client_key"), form.get("client_secret"))
        server().revoke(client, form.get("token", ""))
    except SandboxError as exc:
        return oauth_error(exc)
    return jsonify({})


@route("GET", API, r"v2/user/info/?")
def user_info() -> Any:
    header = request.headers.get("Authorization", "")
    try:
        row = server().lookup("tiktok", header.removeprefix("Bearer ") if header.startswith("Bearer ") else "")
    except SandboxError as exc:
        return api_error(exc.error)
    fields = [name for name in request.args.get("fields", "").split(",") if name]
    if not fields or any(name not in SCOPE_OF_FIELD for name in fields):
        return api_error("invalid_params")
    granted = set(row.scope.split())
    if any(SCOPE_OF_FIELD[name] not in granted for name in fields):
        return api_error("scope")
    user = _profile(row.account_id)
    return jsonify(data={"user": {name: user[name] for name in fields}},
                   error={"code": "ok", "message": "", "log_id": _log_id()})


def _profile(account_id: str) -> dict[str, Any]:
    account = ACCOUNTS_BY_ID[account_id]
    avatar = f"{request.host_url.rstrip('/')}/sandbox/avatars/{account.id}.svg"
    number = int(account.id.removeprefix("sbx-"))
    return {"open_id": platform_user_id("tiktok", account), "union_id": f"tt-union-{number}",
            "avatar_url": avatar, "avatar_url_100": avatar, "avatar_large_url": avatar,
            "display_name": account.name, "username": account.handle.replace(".", "_"),
            "bio_description": f"{account.name} on TikTok (sandbox)", "is_verified": False,
            "profile_deep_link": f"https://vm.tiktok.com/sandbox{number}/", "follower_count": number * 3,
            "following_count": 12, "likes_count": number * 7, "video_count": 24}
