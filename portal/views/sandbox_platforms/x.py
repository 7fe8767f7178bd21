"""Stand-in for X's OAuth 2.0 (PKCE, single-use rotating refresh tokens) and /2/users/me."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request

from portal.sandbox import ACCOUNTS_BY_ID, SandboxError
from portal.sandbox.data import platform_user_id
from portal.views.sandbox_platforms import (
    bearer,
    consent_page,
    oauth2_token_endpoint,
    revoke_endpoint,
    route,
    server,
)

ACCESS_LIFETIME = 7200


def x_error(exc: SandboxError) -> Any:
    if exc.error == "invalid_grant":  # what X really answers for a spent refresh token
        response = jsonify(error="invalid_request", error_description="Value passed for the token was invalid.")
        response.status_code = 400
        return response
    response = jsonify(title=exc.error, detail=f"sandbox: {exc.error}", status=exc.status)
    response.status_code = exc.status
    if exc.retry_after:
        response.headers["x-rate-limit-reset"] = str(exc.retry_after)
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


@route("GET", "x.com", r"i/oauth2/authorize")
def authorize() -> Any:
    return consent_page("x", "X")


@route("POST", "api.x.com", r"2/oauth2/token")
def token() -> Any:
    return oauth2_token_endpoint("x", access_lifetime=ACCESS_LIFETIME, error=x_error)


@route("POST", "api.x.com", r"2/oauth2/revoke")
def revoke() -> Any:
    return revoke_endpoint()


@route("GET", "api.x.com", r"2/users/me")
def me() -> Any:
    try:
        row = server().lookup("x", bearer())
    except SandboxError as exc:
        response = jsonify(title="Unauthorized", type="about:blank", status=401, detail="Unauthorized")
        response.status_code = 401 if exc.status == 401 else exc.status
        return response
    account = ACCOUNTS_BY_ID[row.account_id]
    base = request.host_url.rstrip("/")
    return jsonify(data={"id": platform_user_id("x", account), "name": account.name,
                         "username": account.handle.replace(".", "_"),
                         "profile_image_url": f"{base}/sandbox/avatars/{account.id}.svg"})
