"""Stand-ins for Meta: Facebook Login and Graph API (Pages, Instagram via Facebook), Instagram Login, Threads.

Real shapes (reference/platforms.md §1-3, §9): GET code exchange with the secret in the query,
fb_exchange_token for a ~60-day token, /me/permissions with declined entries, /me/accounts with a
token per Page, the Graph error envelope {"error": {"message", "type", "code", "fbtrace_id"}}.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify, request

from portal.sandbox import ACCOUNTS_BY_ID, SandboxError
from portal.sandbox.data import platform_user_id, sub_accounts_for
from portal.views.sandbox_platforms import bearer, client_credentials, consent_page, no_store, route, server

GRAPH = "graph.facebook.com"
SHORT_LIVED = 3600
LONG_LIVED = 5_183_944  # what Meta returns for a ~60-day token
PAGE_TOKEN_LIFETIME = 10 * 365 * 86400  # "never expires"
FACEBOOK_SCOPES = {"facebook": ("pages_show_list", "pages_read_engagement", "pages_manage_posts",
                                "business_management", "read_insights"),
                   "instagram": ("instagram_basic", "instagram_content_publish", "pages_show_list",
                                 "pages_read_engagement", "business_management")}


def graph_error(exc: SandboxError) -> Any:
    code = {"invalid_token": 190, "invalid_grant": 100, "invalid_client": 101, "rate_limited": 4,
            "server_error": 2}.get(exc.error, 1)
    body = {"error": {"message": f"(#{code}) sandbox: {exc.error}", "type": "OAuthException", "code": code,
                      "fbtrace_id": "sandbox"}}
    if code == 2:
        body["error"]["is_transient"] = True
    status = {190: 401, 4: 403, 2: 500}.get(code, 400)
    response = jsonify(body)
    response.status_code = status
    return response


def _meta_platform() -> str:
    """Facebook Login serves both Facebook Pages and Instagram via Facebook: the scope tells them apart."""
    return "instagram" if "instagram_basic" in request.args.get("scope", "") else "facebook"


@route("GET", "www.facebook.com", r"v[\d.]+/dialog/oauth")
def facebook_dialog() -> Any:
    platform = _meta_platform()
    return consent_page(platform, "Facebook", keep=("auth_type",))


def _user_token_platform(token: str) -> str:
    for platform in ("facebook", "instagram"):
        try:
            server().lookup(platform, token)
            return platform
        except SandboxError:
            continue
    raise SandboxError("invalid_token", status=401)


@route("GET", GRAPH, r"v[\d.]+/oauth/access_token")
def facebook_token() -> Any:
    args = request.args
    try:
        if args.get("grant_type") == "fb_exchange_token":
            server().authenticate_client(args.get("client_id"), args.get("client_secret"))
            short = args.get("fb_exchange_token", "")
            issued = server().exchange_access(_user_token_platform(short), short, LONG_LIVED)
            return no_store(jsonify(access_token=issued.access_token, token_type="bearer", expires_in=LONG_LIVED))
        client_id, secret = client_credentials()
        server().authenticate_client(client_id, secret)
        code = args.get("code", "")
        platform = server().code_platform(code) if server().code_platform(code) == "instagram" else "facebook"
        issued = server().exchange_code(client_id or "", code, args.get("redirect_uri", ""), None,
                                        platform=platform, access_lifetime=SHORT_LIVED, refresh=False)
    except SandboxError as exc:
        return graph_error(exc)
    return no_store(jsonify(access_token=issued.access_token, token_type="bearer", expires_in=SHORT_LIVED))


def _me(token: str) -> tuple[str, Any]:
    platform = _user_token_platform(token)
    row = server().lookup(platform, token)
    return platform, row


@route("GET", GRAPH, r"v[\d.]+/me")
def facebook_me() -> Any:
    try:
        platform, row = _me(bearer())
    except SandboxError as exc:
        return graph_error(exc)
    if row.subject:  # a Page token: /me is the Page
        return jsonify(id=row.subject)
    account = ACCOUNTS_BY_ID[row.account_id]
    base = request.host_url.rstrip("/")
    return jsonify(id=platform_user_id("facebook", account), name=account.name,
                   picture={"data": {"url": f"{base}/sandbox/avatars/{account.id}.svg"}})


@route("GET", GRAPH, r"v[\d.]+/me/permissions")
def facebook_permissions() -> Any:
    try:
        platform, row = _me(bearer())
    except SandboxError as exc:
        return graph_error(exc)
    granted = set(row.scope.split())
    return jsonify(data=[{"permission": name, "status": "granted" if name in granted else "declined"}
                         for name in FACEBOOK_SCOPES[platform]])


@route("GET", GRAPH, r"v[\d.]+/me/accounts")
def facebook_accounts() -> Any:
    try:
        platform, row = _me(bearer())
        pages = sub_accounts_for(row.account_id, "page")
        base = request.host_url.rstrip("/")
        data = []
        for page in pages:
            page_token = server().exchange_access(platform, bearer(), PAGE_TOKEN_LIFETIME, subject=page.id,
                                                  count_as="page_tokens").access_token
            item: dict[str, Any] = {"id": page.id, "name": page.name, "access_token": page_token,
                                    "picture": {"data": {"url": f"{base}/sandbox/avatars/{row.account_id}.svg"}}}
            if "username" in request.args.get("fields", ""):
                item["username"] = page.handle
            if page.linked_instagram and "instagram_business_account" in request.args.get("fields", ""):
                item["instagram_business_account"] = {
                    "id": page.linked_instagram, "username": page.handle + ".ig", "name": page.name,
                    "profile_picture_url": f"{base}/sandbox/avatars/{row.account_id}.svg"}
            data.append(item)
    except SandboxError as exc:
        return graph_error(exc)
    return jsonify(data=data, paging={"cursors": {"before": "MA", "after": "MQ"}})


@route("GET", GRAPH, r"v[\d.]+/(?P<object_id>\d+)")
def facebook_object(object_id: str) -> Any:
    try:
        _, row = _me(bearer())
    except SandboxError as exc:
        return graph_error(exc)
    if row.subject not in (None, object_id):
        return graph_error(SandboxError("invalid_grant"))
    return jsonify(id=object_id)


# Instagram Login and Threads: POST code exchange, long-lived exchange, refresh by exchange -------------

def _long_lived_family(platform: str, host: str, version: str, me_fields: Any) -> None:
    @route("GET", host, r"v[\d.]+/me" if version else r"me")
    def me() -> Any:
        try:
            row = server().lookup(platform, bearer())
        except SandboxError as exc:
            return graph_error(exc)
        account = ACCOUNTS_BY_ID[row.account_id]
        return jsonify(me_fields(account, request.host_url.rstrip("/")))

    @route("GET", host, r"access_token")
    def exchange() -> Any:
        args = request.args
        try:
            server().check_secret(args.get("client_secret"))
            issued = server().exchange_access(platform, args.get("access_token", ""), LONG_LIVED)
        except SandboxError as exc:
            return graph_error(exc)
        return no_store(jsonify(access_token=issued.access_token, token_type="bearer", expires_in=LONG_LIVED))

    @route("GET", host, r"refresh_access_token")
    def refresh() -> Any:
        try:
            issued = server().exchange_access(platform, request.args.get("access_token", ""), LONG_LIVED,
                                              count_as="refreshes")
        except SandboxError as exc:
            return graph_error(exc)
        return no_store(jsonify(access_token=issued.access_token, token_type="bearer", expires_in=LONG_LIVED))


def _code_exchange(platform: str) -> Any:
    form = request.form
    try:
        server().authenticate_client(form.get("client_id"), form.get("client_secret"))
        issued = server().exchange_code(form.get("client_id", ""), form.get("code", ""),
                                        form.get("redirect_uri", ""), None, platform=platform,
                                        access_lifetime=SHORT_LIVED, refresh=False)
    except SandboxError as exc:
        return graph_error(exc)
    account = ACCOUNTS_BY_ID[issued.account_id]
    body: dict[str, Any] = {"access_token": issued.access_token, "user_id": platform_user_id(platform, account)}
    if platform == "instagram-standalone":
        body = {"data": [{**body, "permissions": ",".join(issued.scope.split())}]}
    return no_store(jsonify(body))


@route("GET", "www.instagram.com", r"oauth/authorize")
def instagram_login_dialog() -> Any:
    return consent_page("instagram-standalone", "Instagram")


@route("POST", "api.instagram.com", r"oauth/access_token")
def instagram_login_token() -> Any:
    return _code_exchange("instagram-standalone")


@route("GET", "threads.net", r"oauth/authorize")
def threads_dialog() -> Any:
    return consent_page("threads", "Threads")


@route("POST", "graph.threads.net", r"oauth/access_token")
def threads_token() -> Any:
    return _code_exchange("threads")


_long_lived_family("instagram-standalone", "graph.instagram.com", "v21.0", lambda account, base: {
    "user_id": platform_user_id("instagram-standalone", account), "username": account.handle.replace(".", "_"),
    "name": account.name, "profile_picture_url": f"{base}/sandbox/avatars/{account.id}.svg"})
_long_lived_family("threads", "graph.threads.net", "v1.0", lambda account, base: {
    "id": platform_user_id("threads", account), "username": account.handle, "name": account.name,
    "threads_profile_picture_url": f"{base}/sandbox/avatars/{account.id}.svg"})
