"""Stand-ins for LinkedIn: OAuth 2.0, OpenID userinfo, and the versioned /rest API for organizations.

Real shapes (reference/platforms.md §4, §5): client id and secret in the form body, no PKCE; a
60-day access token; a refresh token that lives 365 days from the first consent, which refreshing
does not extend (``refresh_token_expires_in`` counts down); scopes answered comma-separated;
``/rest`` calls refused without ``LinkedIn-Version`` and ``X-Restli-Protocol-Version: 2.0.0``;
errors as ``{"status", "serviceErrorCode", "code", "message"}``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from flask import jsonify, request
from sqlalchemy import update
from werkzeug.wrappers import Response

from portal.db import utcnow
from portal.sandbox import ACCOUNTS_BY_ID, SandboxError, SandboxToken, _hash
from portal.sandbox.data import SubItem, platform_user_id, sub_accounts_for
from portal.views.sandbox_platforms import consent_page, no_store, revoke_endpoint, route, server

PLATFORMS = ("linkedin", "linkedin-page")
API = "api.linkedin.com"
ACCESS_LIFETIME = 60 * 86400
REFRESH_LIFETIME = timedelta(days=365)
ORGANIZATION_SCOPES = {"rw_organization_admin", "r_organization_admin"}
# Roles that are not ADMINISTRATOR: listed by organizationAcls unless the caller filters by role.
OTHER_ROLES: dict[str, tuple[tuple[SubItem, str], ...]] = {
    "sbx-1002": ((SubItem("72003", "Northwind Careers", "northwind-careers"), "ANALYST"),)}
CODE_INVALID = ("Unable to retrieve access token: appid/redirect uri/code verifier does not match authorization "
                "code. Or authorization code expired.")
REFRESH_INVALID = "The provided authorization grant or refresh token is invalid, expired or revoked."
_VERSION = re.compile(r"20[0-9]{2}(0[1-9]|1[0-2])(\.[0-9]{2})?")


def api_error(status: int, code: str, message: str, service_code: int | None = None) -> Response:
    body: dict[str, Any] = {"status": status, "code": code, "message": message}
    if service_code is not None:
        body["serviceErrorCode"] = service_code
    response = jsonify(body)
    response.status_code = status
    return response


# OAuth 2.0 -----------------------------------------------------------------------------------------------

@route("GET", "www.linkedin.com", r"oauth/v2/authorization")
def authorize() -> Any:
    platform = "linkedin-page" if "organization" in request.args.get("scope", "") else "linkedin"
    return consent_page(platform, "LinkedIn")


def oauth_error(exc: SandboxError, refreshing: bool) -> Response:
    if exc.error == "invalid_grant":  # LinkedIn calls a bad or spent code an invalid_request
        error, description = ("invalid_grant", REFRESH_INVALID) if refreshing else ("invalid_request", CODE_INVALID)
    else:
        error, description = exc.error, {"invalid_client": "Client authentication failed"}.get(exc.error, exc.error)
    response = jsonify(error=error, error_description=description)
    response.status_code = exc.status
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return no_store(response)


@route("POST", "www.linkedin.com", r"oauth/v2/accessToken")
def token() -> Any:
    form = request.form
    refreshing = form.get("grant_type") == "refresh_token"
    try:  # LinkedIn takes the client's id and secret in the form body only
        client = server().authenticate_client(form.get("client_id"), form.get("client_secret"))
        if form.get("grant_type") == "authorization_code":
            code = form.get("code", "")
            platform = server().code_platform(code)
            issued = server().exchange_code(client, code, form.get("redirect_uri", ""), form.get("code_verifier"),
                                            platform=platform if platform in PLATFORMS else PLATFORMS[0],
                                            access_lifetime=ACCESS_LIFETIME)
            refresh_expires = _start_refresh_clock(issued.refresh_token)
        elif refreshing:
            refresh_token = form.get("refresh_token", "")
            row = _token_row(refresh_token)
            issued = server().refresh(client, refresh_token, platform=row.platform if row else PLATFORMS[0],
                                      rotate=False, access_lifetime=ACCESS_LIFETIME)
            refresh_expires = row.expires_at if row else utcnow()  # fixed at the first consent
        else:
            raise SandboxError("unsupported_grant_type")
    except SandboxError as exc:
        return oauth_error(exc, refreshing)
    return no_store(jsonify(access_token=issued.access_token, expires_in=ACCESS_LIFETIME, token_type="Bearer",
                            refresh_token=issued.refresh_token, scope=",".join(issued.scope.split()),
                            refresh_token_expires_in=int((refresh_expires - utcnow()).total_seconds())))


def _start_refresh_clock(refresh_token: str) -> datetime:
    """A new consent's refresh token lives 365 days (the sandbox's default lifetime is shorter)."""
    expires = utcnow() + REFRESH_LIFETIME
    with server().sessions.begin() as db:
        db.execute(update(SandboxToken).where(SandboxToken.token_hash == _hash(refresh_token))
                   .values(expires_at=expires))
    return expires


def _token_row(token: str) -> SandboxToken | None:
    with server().sessions() as db:
        row = db.get(SandboxToken, _hash(token))
        if row is not None:
            db.expunge(row)
        return row


@route("POST", "www.linkedin.com", r"oauth/v2/revoke")
def revoke() -> Any:
    return revoke_endpoint()


# APIs ------------------------------------------------------------------------------------------------------

def _caller() -> SandboxToken | Response:
    """The live token in the Authorization header, or LinkedIn's 401 for it."""
    header = request.headers.get("Authorization", "")
    value = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
    row = _token_row(value)
    try:
        return server().lookup(row.platform if row and row.platform in PLATFORMS else PLATFORMS[0], value)
    except SandboxError as exc:
        if exc.status == 429:
            return api_error(429, "TOO_MANY_REQUESTS", "Resource level throttle APPLICATION DAY limit for calls to "
                             "this resource is reached.")
        if exc.status >= 500:
            return api_error(503, "SERVICE_UNAVAILABLE", "Service Unavailable")
        if row is not None and row.revoked_at is not None:
            return api_error(401, "REVOKED_ACCESS_TOKEN", "The token used in the request has been revoked by the "
                             "user", 65601)
        return api_error(401, "INVALID_ACCESS_TOKEN", "Invalid access token", 65600)


@route("GET", API, r"v2/userinfo")
def userinfo() -> Any:
    row = _caller()
    if isinstance(row, Response):
        return row
    scopes = set(row.scope.split())
    if "openid" not in scopes:
        return api_error(403, "ACCESS_DENIED", "Not enough permissions to access: userinfo.GET.NO_VERSION", 100)
    account = ACCOUNTS_BY_ID[row.account_id]
    body: dict[str, Any] = {"sub": platform_user_id(row.platform, account), "email_verified": True,
                            "locale": {"country": "US", "language": "en"}}
    if "profile" in scopes:
        first, _, last = account.name.partition(" ")
        body.update(name=account.name, given_name=first, family_name=last,
                    picture=f"{request.host_url.rstrip('/')}/sandbox/avatars/{account.id}.svg")
    if "email" in scopes:
        body["email"] = f"{account.handle.replace('.', '')}@linkedin.example"
    return jsonify(body)


def _rest_caller(resource: str) -> SandboxToken | Response:
    """A versioned /rest call: the version headers first, then the token, then the organization scopes."""
    version = request.headers.get("LinkedIn-Version", "")
    if not version:
        return api_error(400, "VERSION_MISSING", "A version must be present. Please specify a version by adding the "
                         "LinkedIn-Version header.")
    if not _VERSION.fullmatch(version):
        return api_error(426, "NONEXISTENT_VERSION", f"Requested version {version[:20]} is not active")
    if request.headers.get("X-Restli-Protocol-Version") != "2.0.0":
        return api_error(400, "ILLEGAL_ARGUMENT", "This resource needs Rest.li protocol 2.0.0: send the "
                         "X-Restli-Protocol-Version: 2.0.0 header.")
    row = _caller()
    if not isinstance(row, Response) and not ORGANIZATION_SCOPES & set(row.scope.split()):
        return api_error(403, "ACCESS_DENIED", f"Not enough permissions to access: {resource}.{version}", 100)
    return row


def _acls(account_id: str) -> list[tuple[SubItem, str]]:
    """Every organization role this person holds (all approved)."""
    admin = [(org, "ADMINISTRATOR") for org in sub_accounts_for(account_id, "organization")]
    return admin + list(OTHER_ROLES.get(account_id, ()))


@route("GET", API, r"rest/organizationAcls")
def organization_acls() -> Any:
    row = _rest_caller("organizationAcls.FINDER-roleAssignee")
    if isinstance(row, Response):
        return row
    args = request.args
    if args.get("q") != "roleAssignee":
        return api_error(400, "ILLEGAL_ARGUMENT", "The sandbox serves the roleAssignee finder only (q=roleAssignee).")
    person = f"urn:li:person:{platform_user_id(row.platform, ACCOUNTS_BY_ID[row.account_id])}"
    matching = [(org, role) for org, role in _acls(row.account_id)
                if args.get("role", role) == role and args.get("state", "APPROVED") == "APPROVED"]
    try:
        start, count = int(args.get("start", 0)), int(args.get("count", 10))
    except ValueError:
        return api_error(400, "ILLEGAL_ARGUMENT", "start and count must be numbers")
    elements = [{"roleAssignee": person, "state": "APPROVED", "role": role,
                 "organization": f"urn:li:organization:{org.id}",
                 "created": {"actor": person, "time": 1_700_000_000_000},
                 "lastModified": {"actor": person, "time": 1_700_000_000_000}}
                for org, role in matching[start:start + max(count, 0)]]
    return jsonify(paging={"start": start, "count": count, "links": [], "total": len(matching)}, elements=elements)


@route("GET", API, r"rest/organizations/(?P<org_id>[0-9]+)")
def organization(org_id: str) -> Any:
    row = _rest_caller("organizations.GET")
    if isinstance(row, Response):
        return row
    mine = {org.id: org for org, _ in _acls(row.account_id)}
    if org_id not in mine:
        known = any(org.id == org_id for person in ACCOUNTS_BY_ID for org, _ in _acls(person))
        return (api_error(403, "ACCESS_DENIED", f"Not enough permissions to access: organizations.GET.{org_id}", 100)
                if known else api_error(404, "NOT_FOUND", f"Organization {org_id} not found"))
    org = mine[org_id]
    return jsonify(id=int(org.id), localizedName=org.name, vanityName=org.handle, primaryOrganizationType="NONE",
                   name={"localized": {"en_US": org.name}, "preferredLocale": {"country": "US", "language": "en"}})
