"""The adapter protocol and the default: a standard OAuth 2.0 authorization code flow.

A platform gets its own adapter module only where its protocol really differs (Meta's GET token
exchange and long-lived tokens, TikTok's client_key, sub-account listings, XRPC sessions, ...).
Every adapter maps the platform's errors into the shared PlatformError classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from portal.errors import PlatformError
from portal.oauth import AccountInfo, AppCredentials, OAuthClient, TokenGrant, pluck
from portal.providers.spec import ProviderSpec


@dataclass(frozen=True)
class SubAccount:
    """A page, organization, channel, board, location or guild the client may pick."""

    external_id: str
    display_name: str
    kind: str
    handle: str = ""
    avatar_url: str | None = None
    detail: str = ""  # shown under the name in the picker (an address, "linked to Page X" ...)
    access_token: str | None = field(default=None, repr=False)  # its own token (a Meta Page token)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Authorized:
    """A completed authorization, before anything is stored."""

    grant: TokenGrant
    account: AccountInfo
    scopes: tuple[str, ...]
    sub_accounts: list[SubAccount] | None  # None: the signed-in account is the connection


class Adapter:
    """Standard OAuth 2.0 authorization code flow, as the catalog entry describes it."""

    def __init__(self, oauth: OAuthClient) -> None:
        self.oauth = oauth

    # Authorization ----------------------------------------------------------------------------------

    def authorization_url(self, spec: ProviderSpec, app: AppCredentials, redirect_uri: str, state: str,
                          verifier: str | None, reconsent: bool = False) -> str:
        extra = dict(spec.reconsent_params) if reconsent else {}
        return self.oauth.authorization_url(spec, app, redirect_uri, state, verifier, extra)

    def authorize(self, spec: ProviderSpec, app: AppCredentials, redirect_uri: str, code: str,
                  verifier: str | None, now: datetime) -> Authorized:
        grant = self.exchange(spec, app, redirect_uri, code, verifier, now)
        account = self.identify(spec, grant)
        scopes = self.granted_scopes(spec, grant)
        subs = self.list_sub_accounts(spec, grant, account) if spec.sub_accounts else None
        return Authorized(grant, account, scopes, subs)

    def exchange(self, spec: ProviderSpec, app: AppCredentials, redirect_uri: str, code: str,
                 verifier: str | None, now: datetime) -> TokenGrant:
        return self.oauth.exchange_code(spec, app, redirect_uri, code, verifier, now)

    def identify(self, spec: ProviderSpec, grant: TokenGrant) -> AccountInfo:
        return self.oauth.fetch_account(spec, grant.access_token)

    def granted_scopes(self, spec: ProviderSpec, grant: TokenGrant) -> tuple[str, ...]:
        return grant.scopes

    def list_sub_accounts(self, spec: ProviderSpec, grant: TokenGrant, account: AccountInfo) -> list[SubAccount]:
        return []

    # Lifecycle --------------------------------------------------------------------------------------

    def can_refresh(self, spec: ProviderSpec, has_refresh_token: bool) -> bool:
        if spec.refresh in ("standard", "rotating", "session"):
            return has_refresh_token
        return spec.refresh == "exchange"

    def refresh(self, spec: ProviderSpec, app: AppCredentials, access_token: str | None, refresh_token: str | None,
                now: datetime) -> TokenGrant:
        if not refresh_token:
            raise PlatformError(PlatformError.TOKEN_INVALID, "this connection has no refresh token")
        return self.oauth.refresh(spec, app, refresh_token, now)

    def revoke(self, spec: ProviderSpec, app: AppCredentials, access_token: str | None,
               refresh_token: str | None) -> None:
        token = refresh_token or access_token
        if token:
            self.oauth.revoke(spec, app, token)

    def check(self, spec: ProviderSpec, access_token: str | None, *, app: AppCredentials | None = None,
              external_id: str | None = None) -> None:
        """The platform's cheapest call proving the connection still works (the daily health check);
        raises PlatformError. ``external_id`` is the connection's account (a page, channel, location...)."""
        if not access_token:
            raise PlatformError(PlatformError.TOKEN_INVALID, "this connection holds no token")
        self.identify(spec, TokenGrant(access_token, None, None, None, ()))


def account_from(data: dict[str, Any], fields: dict[str, str], id_key: str = "id") -> AccountInfo:
    """An AccountInfo from a JSON object using a field map with dotted paths."""
    external_id = pluck(data, fields.get("id", id_key))
    if external_id in (None, ""):
        raise PlatformError(PlatformError.TEMPORARY, "the platform did not say which account this is")
    avatar = pluck(data, fields["avatar"]) if "avatar" in fields else None
    return AccountInfo(
        external_id=str(external_id)[:255],
        display_name=str(pluck(data, fields.get("name", "name")) or "")[:255],
        handle=str(pluck(data, fields["handle"]) or "")[:255] if "handle" in fields else "",
        avatar_url=avatar if isinstance(avatar, str) and avatar.startswith(("https://", "http://")) else None,
    )
