"""Stand-ins for Google: OAuth 2.0, OpenID userinfo, YouTube channels, Business Profile accounts and locations.

Real shapes (reference/platforms.md §8, §15): a refresh token only when the authorize request asked
for ``access_type=offline`` (and, on a repeat consent, ``prompt=consent``); a refresh answers no new
refresh token; ``invalid_grant`` "Token has been expired or revoked."; granted ``email``/``profile``
come back as their full scope URLs; APIs answer ``{"error": {"code", "message", "status", ...}}``;
Business Profile's locations need ``readMask``; lists page with ``nextPageToken`` (the sandbox
answers at most two items a page, as Google may, so paging code runs).
"""

from __future__ import annotations

from typing import Any

from flask import jsonify, request
from sqlalchemy import select
from werkzeug.wrappers import Response

from portal.db import utcnow
from portal.sandbox import ACCOUNTS_BY_ID, SandboxCode, SandboxError, SandboxToken, _hash
from portal.sandbox.data import SubItem, platform_user_id, sub_accounts_for
from portal.views.sandbox_platforms import bearer, client_credentials, consent_page, no_store, route, server

PLATFORMS = ("youtube", "gmb")
ACCESS_LIFETIME = 3599
AUTH = "https://www.googleapis.com/auth/"
FULL_SCOPE_NAMES = {"email": AUTH + "userinfo.email", "profile": AUTH + "userinfo.profile"}
YOUTUBE_READ = {AUTH + "youtube", AUTH + "youtube.readonly", AUTH + "youtube.force-ssl"}
BUSINESS = AUTH + "business.manage"
PAGE_CAP = 2
OAUTH_DESCRIPTIONS = {"invalid_client": "Unauthorized", "invalid_token": "Token expired or revoked"}
LOCATION_FIELDS = {"name", "languageCode", "storeCode", "title", "phoneNumbers", "categories", "storefrontAddress",
                   "websiteUri", "regularHours", "specialHours", "serviceArea", "labels", "latlng", "openInfo",
                   "metadata", "profile", "relationshipData", "moreHours", "serviceItems"}
LOCATION_GROUPS = {"sbx-1002": "Northwind Outfitters (stores)"}  # these people's locations sit in a group
UNVERIFIED = {"locations/51002"}  # no "voice of merchant" yet: listed, but posts would not show


# OAuth 2.0 ------------------------------------------------------------------------------------------------

@route("GET", "accounts.google.com", r"o/oauth2/v2/auth")
def authorize() -> Any:
    platform = "gmb" if "business.manage" in request.args.get("scope", "") else "youtube"
    return consent_page(platform, "Google", keep=("access_type", "prompt"))


def oauth_error(exc: SandboxError, refreshing: bool = False) -> Response:
    description = OAUTH_DESCRIPTIONS.get(exc.error, exc.error)
    if exc.error == "invalid_grant":
        description = "Token has been expired or revoked." if refreshing else "Bad Request"
    response = jsonify(error=exc.error, error_description=description)
    response.status_code = exc.status
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return no_store(response)


@route("POST", "oauth2.googleapis.com", r"token")
def token() -> Any:
    form = request.form
    client_id, secret = client_credentials()
    refreshing = form.get("grant_type") == "refresh_token"
    try:
        client = server().authenticate_client(client_id, secret)
        if form.get("grant_type") == "authorization_code":
            body = _exchange(client, form.get("code", ""), form.get("redirect_uri", ""), form.get("code_verifier"))
        elif refreshing:
            refresh_token = form.get("refresh_token", "")
            issued = server().refresh(client, refresh_token, platform=_platform_of(refresh_token), rotate=False,
                                      access_lifetime=ACCESS_LIFETIME)
            body = _token_body(issued.access_token, issued.scope)  # no refresh_token: the old one stays valid
        else:
            raise SandboxError("unsupported_grant_type")
    except SandboxError as exc:
        return oauth_error(exc, refreshing)
    return no_store(jsonify(body))


def _exchange(client: str, code: str, redirect_uri: str, verifier: str | None) -> dict[str, Any]:
    asked = server().code_extra(code)
    offline = asked.get("access_type") == "offline" and (
        "consent" in asked.get("prompt", "").split() or not _had_offline_grant(code))
    platform = server().code_platform(code)
    issued = server().exchange_code(client, code, redirect_uri, verifier, platform=platform or PLATFORMS[0],
                                    access_lifetime=ACCESS_LIFETIME, refresh=offline)
    body = _token_body(issued.access_token, issued.scope)
    if offline:
        body["refresh_token"] = issued.refresh_token
    return body


def _token_body(access_token: str, scope: str) -> dict[str, Any]:
    return {"access_token": access_token, "expires_in": ACCESS_LIFETIME, "token_type": "Bearer",
            "scope": " ".join(FULL_SCOPE_NAMES.get(name, name) for name in scope.split())}


def _had_offline_grant(code: str) -> bool:
    """Google returns a refresh token on a repeat consent only when ``prompt=consent`` forces it."""
    with server().sessions() as db:
        row = db.get(SandboxCode, _hash(code))
        if row is None:
            return False
        live = db.scalar(select(SandboxToken.token_hash).where(
            SandboxToken.kind == "refresh", SandboxToken.platform.in_(PLATFORMS),
            SandboxToken.client_id == row.client_id, SandboxToken.account_id == row.account_id,
            SandboxToken.revoked_at.is_(None), SandboxToken.expires_at > utcnow()).limit(1))
        return live is not None


def _token_row(token: str) -> SandboxToken | None:
    with server().sessions() as db:
        row = db.get(SandboxToken, _hash(token))
        if row is not None:
            db.expunge(row)
        return row


def _platform_of(token: str) -> str:
    row = _token_row(token)
    return row.platform if row is not None and row.platform in PLATFORMS else PLATFORMS[0]


@route("POST", "oauth2.googleapis.com", r"revoke")
def revoke() -> Any:
    """Google's revocation needs no client authentication; it ends the whole grant."""
    value = request.form.get("token") or request.args.get("token", "")
    row = _token_row(value)
    if row is None or row.revoked_at is not None or row.platform not in PLATFORMS:
        return oauth_error(SandboxError("invalid_token"))
    server().revoke(row.client_id, value)
    return jsonify({})


@route("GET", "openidconnect.googleapis.com", r"v1/userinfo")
def userinfo() -> Any:
    try:
        row = _caller()
    except SandboxError as exc:
        if exc.error != "invalid_token":
            return oauth_error(exc)
        response = jsonify(error="invalid_request", error_description="Invalid Credentials")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="https://accounts.google.com/", error="invalid_token"'
        return response
    account, scopes = ACCOUNTS_BY_ID[row.account_id], set(row.scope.split())
    body: dict[str, Any] = {"sub": platform_user_id("google", account)}
    if "profile" in scopes:
        first, _, last = account.name.partition(" ")
        body.update(name=account.name, given_name=first, family_name=last, picture=_avatar(row.account_id))
    if "email" in scopes:
        body.update(email=f"{account.handle.replace('.', '')}@gmail.example", email_verified=True)
    return jsonify(body)


# The APIs' shared ways to fail ------------------------------------------------------------------------

def api_error(status: int, state: str, message: str, reason: str | None = None, domain: str = "global",
              details: list[dict[str, Any]] | None = None) -> Response:
    error: dict[str, Any] = {"code": status, "message": message, "status": state}
    if reason:
        error["errors"] = [{"message": message, "domain": domain, "reason": reason}]
    if details:
        error["details"] = details
    response = jsonify(error=error)
    response.status_code = status
    return response


def _api_failure(exc: SandboxError, youtube: bool = False) -> Response:
    """A dead token or a failure switch, the way Google's APIs say it (YouTube throttles with 403)."""
    if exc.status == 401 or exc.error == "invalid_token":
        response = api_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected "
                             "OAuth 2 access token, login cookie or other valid authentication credential.",
                             "authError" if youtube else None)
        response.headers["WWW-Authenticate"] = 'Bearer realm="https://accounts.google.com/", error="invalid_token"'
        return response
    if exc.status == 429 and youtube:
        return api_error(403, "PERMISSION_DENIED", "The request cannot be completed because you have exceeded your "
                         "quota.", "rateLimitExceeded", domain="youtube.quota")
    if exc.status == 429:
        response = api_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Requests' and limit "
                             "'Requests per minute'.", details=[{"reason": "RATE_LIMIT_EXCEEDED"}])
        response.headers["Retry-After"] = str(exc.retry_after or 60)
        return response
    return api_error(503, "UNAVAILABLE", "The service is currently unavailable.", "backendError")


def _insufficient_scopes(youtube: bool = False) -> Response:
    return api_error(403, "PERMISSION_DENIED", "Request had insufficient authentication scopes.",
                     "insufficientPermissions" if youtube else None,
                     details=None if youtube else [{"reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT"}])


def _invalid_argument(field: str, description: str) -> Response:
    return api_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.", details=[
        {"@type": "type.googleapis.com/google.rpc.BadRequest",
         "fieldViolations": [{"field": field, "description": description}]}])


def _caller() -> SandboxToken:
    token = bearer()
    return server().lookup(_platform_of(token), token)


def _avatar(account_id: str) -> str:
    return f"{request.host_url.rstrip('/')}/sandbox/avatars/{account_id}.svg"


def _page(items: list[Any], default_size: int) -> tuple[list[Any], str | None]:
    """One page of ``items`` per pageSize/pageToken; ValueError on a bad size or a token it did not issue."""
    page_token = request.args.get("pageToken", "")
    if page_token and not page_token.startswith("sbx-page-"):
        raise ValueError(page_token)
    start = int(page_token.removeprefix("sbx-page-") or 0)
    size = int(request.args.get("pageSize") or 0) or default_size
    if size < 0 or not 0 <= start <= len(items):
        raise ValueError(page_token)
    end = start + min(size, PAGE_CAP)
    return items[start:end], f"sbx-page-{end}" if end < len(items) else None


# YouTube Data API v3 -------------------------------------------------------------------------------------

@route("GET", "www.googleapis.com", r"youtube/v3/channels")
def youtube_channels() -> Any:
    try:
        row = _caller()
    except SandboxError as exc:
        return _api_failure(exc, youtube=True)
    if not YOUTUBE_READ & set(row.scope.split()):
        return _insufficient_scopes(youtube=True)
    parts = {part.strip() for part in request.args.get("part", "").split(",") if part.strip()}
    if not parts:
        return api_error(400, "INVALID_ARGUMENT", "'part' is required.", "required")
    if request.args.get("mine") != "true":
        return api_error(400, "INVALID_ARGUMENT", "No filter selected. Expected one of: id, mine, forHandle.",
                         "missingRequiredParameter")
    items = [_channel(channel, parts, row.account_id) for channel in sub_accounts_for(row.account_id, "channel")]
    body: dict[str, Any] = {"kind": "youtube#channelListResponse", "etag": "sbx-etag",
                            "pageInfo": {"totalResults": len(items), "resultsPerPage": 5}}
    if items:  # Google leaves empty lists out
        body["items"] = items
    return jsonify(body)


def _channel(channel: SubItem, parts: set[str], account_id: str) -> dict[str, Any]:
    item: dict[str, Any] = {"kind": "youtube#channel", "etag": "sbx-etag", "id": channel.id}
    if "snippet" in parts:
        url = _avatar(account_id)
        item["snippet"] = {"title": channel.name, "description": "", "customUrl": channel.handle,
                           "publishedAt": "2016-03-01T09:00:00Z",
                           "thumbnails": {size: {"url": url, "width": px, "height": px}
                                          for size, px in (("default", 88), ("medium", 240), ("high", 800))},
                           "localized": {"title": channel.name, "description": ""}}
    if "statistics" in parts:
        item["statistics"] = {"viewCount": "1200", "subscriberCount": "340", "hiddenSubscriberCount": False,
                              "videoCount": "12"}
    return item


# Business Profile: account management and business information ---------------------------------------

def _business_accounts(account_id: str) -> list[tuple[dict[str, Any], tuple[SubItem, ...]]]:
    """Each person's Business Profile accounts, each with the locations in it."""
    number = account_id.removeprefix("sbx-")
    locations = sub_accounts_for(account_id, "location")
    personal = {"name": f"accounts/1{number}", "accountName": ACCOUNTS_BY_ID[account_id].name, "type": "PERSONAL",
                "role": "PRIMARY_OWNER", "verificationState": "VERIFIED", "vettedState": "NOT_VETTED"}
    if account_id not in LOCATION_GROUPS:
        return [(personal, locations)]
    group = {"name": f"accounts/2{number}", "accountName": LOCATION_GROUPS[account_id], "type": "LOCATION_GROUP",
             "role": "OWNER", "verificationState": "VERIFIED", "vettedState": "NOT_VETTED",
             "permissionLevel": "OWNER_LEVEL"}
    return [(personal, ()), (group, locations)]


def _business_caller() -> SandboxToken | Response:
    try:
        row = _caller()
    except SandboxError as exc:
        return _api_failure(exc)
    return row if BUSINESS in row.scope.split() else _insufficient_scopes()


@route("GET", "mybusinessaccountmanagement.googleapis.com", r"v1/accounts")
def business_accounts() -> Any:
    row = _business_caller()
    if isinstance(row, Response):
        return row
    try:
        accounts, next_token = _page([account for account, _ in _business_accounts(row.account_id)], 20)
    except ValueError:
        return _invalid_argument("page_token", "Invalid page size or page token.")
    return jsonify({"accounts": accounts, **({"nextPageToken": next_token} if next_token else {})})


def _read_mask() -> set[str] | Response:
    fields = {field.strip() for field in request.args.get("readMask", "").split(",") if field.strip()}
    if not fields:
        return _invalid_argument("read_mask", "Field is required")
    if not fields <= LOCATION_FIELDS:
        return _invalid_argument("read_mask", f"Invalid field mask provided: {sorted(fields - LOCATION_FIELDS)[0]}")
    return fields


@route("GET", "mybusinessbusinessinformation.googleapis.com", r"v1/(?P<account>accounts/[^/]+)/locations")
def business_locations(account: str) -> Any:
    row, mask = _business_caller(), _read_mask()
    if isinstance(row, Response) or isinstance(mask, Response):
        return row if isinstance(row, Response) else mask
    owned = {info["name"]: locations for info, locations in _business_accounts(row.account_id)}
    if account not in owned:
        return api_error(403, "PERMISSION_DENIED", "The caller does not have permission")
    try:
        locations, next_token = _page(list(owned[account]), 10)
    except ValueError:
        return _invalid_argument("page_token", "Invalid page size or page token.")
    body: dict[str, Any] = {}
    if locations:  # Google leaves empty lists out: a person without locations gets {}
        body["locations"] = [_location(location, mask) for location in locations]
    if next_token:
        body["nextPageToken"] = next_token
    return jsonify(body)


@route("GET", "mybusinessbusinessinformation.googleapis.com", r"v1/(?P<name>locations/[^/]+)")
def business_location(name: str) -> Any:
    row, mask = _business_caller(), _read_mask()
    if isinstance(row, Response) or isinstance(mask, Response):
        return row if isinstance(row, Response) else mask
    everyone = {location.id: owner for owner in ACCOUNTS_BY_ID for location in sub_accounts_for(owner, "location")}
    if name not in everyone:
        return api_error(404, "NOT_FOUND", "Requested entity was not found.")
    if everyone[name] != row.account_id:
        return api_error(403, "PERMISSION_DENIED", "The caller does not have permission")
    location = next(item for item in sub_accounts_for(row.account_id, "location") if item.id == name)
    return jsonify(_location(location, mask))


def _location(location: SubItem, mask: set[str]) -> dict[str, Any]:
    street, _, town = location.detail.rpartition(", ")
    number = location.id.removeprefix("locations/")
    full = {"name": location.id, "title": location.name, "languageCode": "en",
            "storefrontAddress": {"regionCode": "US", "languageCode": "en", "locality": town,
                                  "addressLines": [street] if street else []},
            "metadata": {"hasGoogleUpdated": False, "hasPendingEdits": False, "canDelete": True,
                         "canOperateLocalPost": location.id not in UNVERIFIED, "canModifyServiceList": True,
                         "placeId": f"ChIJsbx{number}", "mapsUri": f"https://maps.google.com/maps?cid={number}",
                         "newReviewUri": f"https://search.google.com/local/writereview?placeid=ChIJsbx{number}",
                         "hasVoiceOfMerchant": location.id not in UNVERIFIED}}
    return {key: value for key, value in full.items() if key in mask}
