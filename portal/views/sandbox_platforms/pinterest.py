"""Stand-in for Pinterest's OAuth and API v5 (reference/platforms.md §10).

Real shapes: the token endpoint insists on HTTP Basic client authentication and answers
``access_token, expires_in, refresh_token, refresh_token_expires_in, refresh_token_expires_at,
scope, token_type, response_type``; continuous refresh: every refresh answers a new refresh token
with a new 60-day expiry and the previous one dies here; ``/v5/user_account``; ``/v5/boards``
with bookmark pagination (``items``, ``bookmark``); errors as ``{"code": int, "message": str}``
(401/2, 403/29, 429/8; 283 for an invalid grant).
"""

from __future__ import annotations

import base64
import time
from typing import Any

from flask import jsonify, request

from portal.sandbox import ACCOUNTS_BY_ID, IssuedTokens, SandboxError
from portal.sandbox.data import platform_user_id, sub_accounts_for
from portal.views.sandbox_platforms import bearer, consent_page, oauth2_token_endpoint, route, server

API = "api.pinterest.com"
ACCESS_LIFETIME = 30 * 86400
REFRESH_LIFETIME = 60 * 86400  # continuous refresh tokens: 60 days from each refresh
MAX_PAGE_SIZE = 250
# page_size is a maximum: the stand-in answers at most this many boards per page, so that the
# demo people's few boards still take several pages and bookmarks are really followed.
SANDBOX_PAGE_CAP = 2
_ERRORS = {  # sandbox failure -> (status, Pinterest code, message)
    "invalid_token": (401, 2, "Authentication failed."),
    "invalid_grant": (401, 283, "The authorization grant is invalid"),
    "invalid_client": (401, 2, "Authentication failed."),
    "rate_limited": (429, 8, "You have exceeded your rate limit. Try again later."),
    "server_error": (500, 1, "Something went wrong on our end. Sorry about that."),
    "scope": (403, 29, "You are not permitted to access that resource."),
    "invalid_bookmark": (400, 1, "Invalid bookmark."),
}


def pinterest_error(kind: str) -> Any:
    status, code, message = _ERRORS.get(kind, (400, 1, "Invalid request."))
    response = jsonify(code=code, message=message)
    response.status_code = status
    return response


def _token_fields(issued: IssuedTokens, _source: str) -> dict[str, Any]:
    # Say no more than the stand-in enforces: its refresh tokens may live shorter than Pinterest's.
    refresh_in = min(REFRESH_LIFETIME, server().refresh_lifetime)
    return {"token_type": "bearer", "response_type": request.form.get("grant_type", ""),
            "refresh_token_expires_in": refresh_in, "refresh_token_expires_at": int(time.time()) + refresh_in}


@route("GET", "www.pinterest.com", r"oauth/?")
def authorize() -> Any:
    return consent_page("pinterest", "Pinterest")


@route("POST", API, r"v5/oauth/token")
def token() -> Any:
    if not request.headers.get("Authorization", "").startswith("Basic "):
        return pinterest_error("invalid_client")  # Pinterest takes client credentials in Basic only
    return oauth2_token_endpoint("pinterest", access_lifetime=ACCESS_LIFETIME, extra=_token_fields,
                                 error=lambda exc: pinterest_error(exc.error))


def _granted(scope: str) -> tuple[Any, Any]:
    """The caller's live token row, or a Pinterest error response when it is dead or lacks ``scope``."""
    try:
        row = server().lookup("pinterest", bearer())
    except SandboxError as exc:
        return None, pinterest_error(exc.error)
    if scope not in row.scope.split():
        return None, pinterest_error("scope")
    return row, None


@route("GET", API, r"v5/user_account")
def user_account() -> Any:
    row, failure = _granted("user_accounts:read")
    if failure is not None:
        return failure
    account = ACCOUNTS_BY_ID[row.account_id]
    business = account.id != "sbx-1003"  # one personal account among the demo people
    return jsonify(account_type="BUSINESS" if business else "PINNER", id=f"5491{account.id.removeprefix('sbx-')}",
                   username=platform_user_id("pinterest", account),
                   profile_image=f"{request.host_url.rstrip('/')}/sandbox/avatars/{account.id}.svg",
                   website_url=f"https://{account.handle.replace('.', '')}.example", about="",
                   business_name=account.name if business else None,
                   board_count=len(sub_accounts_for(account.id, "board")), pin_count=42, follower_count=120,
                   following_count=35, monthly_views=1800)


@route("GET", API, r"v5/boards")
def boards() -> Any:
    row, failure = _granted("boards:read")
    if failure is not None:
        return failure
    try:
        size = min(int(request.args.get("page_size", "25")), MAX_PAGE_SIZE)
        start = int(base64.urlsafe_b64decode(request.args.get("bookmark", "") or "MA==").decode())
    except ValueError:
        return pinterest_error("invalid_bookmark")
    if size < 1 or start < 0:
        return pinterest_error("invalid_bookmark")
    items = sub_accounts_for(row.account_id, "board")
    end = start + min(size, SANDBOX_PAGE_CAP)
    owner = platform_user_id("pinterest", ACCOUNTS_BY_ID[row.account_id])
    page = [{"id": board.id, "name": board.name, "description": "", "privacy": "PUBLIC",
             "owner": {"username": owner}, "pin_count": 10 + index, "follower_count": 3,
             "created_at": "2025-03-01T10:00:00", "board_pins_modified_at": "2026-01-15T09:30:00"}
            for index, board in enumerate(items[start:end], start=start)]
    bookmark = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else None
    return jsonify(items=page, bookmark=bookmark)
