"""Google: YouTube channels and Business Profile locations (reference/platforms.md §8, §15).

Both use Google's standard OAuth 2.0 (post, PKCE, ``access_type=offline`` + ``prompt=consent`` from the
catalog so a refresh token comes back; a refresh returns no new refresh token, and the old one is kept).
What differs: after authorizing, the client picks a channel or a location, which then acts with the
user's own token; Google's APIs answer errors in the envelope
``{"error": {"code", "message", "status", "errors": [{"reason"}], "details": [{"reason"}]}}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from portal.errors import PlatformError
from portal.oauth import AccountInfo, AppCredentials, TokenGrant, pluck
from portal.providers import load_catalog
from portal.providers.adapters.base import Adapter, SubAccount
from portal.providers.spec import ProviderSpec, sandbox_route

_RATE_LIMITED = {"rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED", "RESOURCE_EXHAUSTED"}
_DAILY_QUOTA = {"quotaExceeded", "dailyLimitExceeded"}  # resets at midnight Pacific: waiting minutes is pointless
_API_NOT_ENABLED = {"accessNotConfigured", "SERVICE_DISABLED", "API_DISABLED"}
_ACCOUNT_NAME = re.compile(r"accounts/[0-9]{1,30}")
_LOCATION_NAME = re.compile(r"locations/[0-9]{1,30}")
MAX_PAGES = 10  # per listing: bounded however the platform pages


def classify_google_error(status: int, body: dict[str, Any], retry_after: str | None, what: str) -> PlatformError:
    """Google's JSON error envelope to a shared class: the HTTP status, ``error.status`` and the reasons."""
    error: dict[str, Any] = body["error"] if isinstance(body.get("error"), dict) else {}
    state = error["status"] if isinstance(error.get("status"), str) else ""
    reasons = {str(item.get("reason")) for key in ("errors", "details") if isinstance(error.get(key), list)
               for item in error[key] if isinstance(item, dict) and item.get("reason")}
    code = (sorted(reasons)[0] if reasons else state or str(status))[:40]
    if status >= 500:
        return PlatformError(PlatformError.TEMPORARY, f"Google had a temporary problem ({what})", platform_code=code)
    if reasons & _DAILY_QUOTA:
        return PlatformError(PlatformError.RATE_LIMITED, f"the Google project's daily quota is used up ({what})",
                             retry_after=3600.0, platform_code=code)
    if status == 429 or state == "RESOURCE_EXHAUSTED" or reasons & _RATE_LIMITED:
        return PlatformError(PlatformError.RATE_LIMITED, f"Google rate-limited the {what}",
                             retry_after=_seconds(retry_after, 60.0), platform_code=code)
    if status == 401 or state == "UNAUTHENTICATED":
        return PlatformError(PlatformError.TOKEN_INVALID, f"Google no longer accepts this token ({what})",
                             platform_code=code)
    if reasons & _API_NOT_ENABLED:
        return PlatformError(PlatformError.APP_MISCONFIGURED, f"the Google project is not enabled or approved for "
                             f"this API ({what})", platform_code=code)
    if status in (403, 404) or state in ("PERMISSION_DENIED", "NOT_FOUND"):
        return PlatformError(PlatformError.PERMISSION_LOST, f"Google refused the {what}: the account no longer has "
                             "access", platform_code=code)
    return PlatformError(PlatformError.TEMPORARY, f"Google failed the {what}", platform_code=code)


def _seconds(value: str | None, default: float) -> float:
    try:
        return max(0.0, float(value)) if value else default
    except ValueError:
        return default


def api_url(spec: ProviderSpec, url: str) -> str:
    """A real URL on another host of the same platform, routed the way this deployment routes
    ``spec.base_url`` (to the sandbox's stand-in when sandboxed, else unchanged)."""
    if not spec.sandboxed:
        return url
    real = load_catalog()[spec.name].base_url.rstrip("/")
    sandbox_url = spec.base_url.removesuffix("/p/" + real.removeprefix("https://"))
    return sandbox_route(sandbox_url, url)


class GoogleAdapter(Adapter):
    """What YouTube and Business Profile share: the user's token acts for every picked sub-account."""

    def list_sub_accounts(self, spec: ProviderSpec, grant: TokenGrant, account: AccountInfo) -> list[SubAccount]:
        if not set(spec.required_scopes) <= set(grant.scopes):
            return []  # Google would answer 403; the scope check then names what was unticked
        return self.sub_accounts(spec, grant.access_token)

    def sub_accounts(self, spec: ProviderSpec, access_token: str) -> list[SubAccount]:
        raise NotImplementedError

    def get(self, url: str, access_token: str, what: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        return self.oauth.call_json("GET", url, what, token=access_token, params=params,
                                    classify=classify_google_error)

    def pages(self, url: str, access_token: str, what: str, key: str,
              params: dict[str, str]) -> Iterator[dict[str, Any]]:
        """Every item of a paged Google list (``nextPageToken``), at most MAX_PAGES pages."""
        page_token = ""
        for _ in range(MAX_PAGES):
            data = self.get(url, access_token, what, {**params, "pageToken": page_token} if page_token else params)
            yield from (item for item in data.get(key) or [] if isinstance(item, dict))
            page_token = str(data.get("nextPageToken") or "")
            if not page_token:
                return


class YouTube(GoogleAdapter):
    """The channel the user picked in Google's account chooser (``channels?mine=true``)."""

    def channels_url(self, spec: ProviderSpec) -> str:
        return f"{spec.base_url}/youtube/v3/channels"

    def sub_accounts(self, spec: ProviderSpec, access_token: str) -> list[SubAccount]:
        data = self.get(self.channels_url(spec), access_token, "channel listing",
                        {"part": "snippet", "mine": "true"})
        return [SubAccount(external_id=str(item["id"])[:255],
                           display_name=str(pluck(item, "snippet.title") or "")[:255], kind="channel",
                           handle=str(pluck(item, "snippet.customUrl") or "").lstrip("@")[:255],
                           avatar_url=_url(pluck(item, "snippet.thumbnails.default.url")))
                for item in data.get("items") or [] if isinstance(item, dict) and item.get("id")]

    def check(self, spec: ProviderSpec, access_token: str | None, *, app: AppCredentials | None = None,
              external_id: str | None = None) -> None:
        """``channels?part=id&mine=true`` (1 quota unit); with the connection's channel id, also that the
        token still reaches that channel."""
        data = self.get(self.channels_url(spec), access_token, "health check", {"part": "id", "mine": "true"})
        ids = {str(item.get("id")) for item in data.get("items") or [] if isinstance(item, dict)}
        if not ids or (external_id is not None and external_id not in ids):
            raise PlatformError(PlatformError.PERMISSION_LOST, "the token no longer reaches this YouTube channel")


class BusinessProfile(GoogleAdapter):
    """Locations of every Business Profile account the user can see (account management, then
    business information with its required ``readMask``). The connection's id is the location's
    v1 name; the account's name is kept in ``extra["account"]`` for v4 Local Posts."""

    accounts_url = "https://mybusinessaccountmanagement.googleapis.com/v1/accounts"
    read_mask = "name,title,storefrontAddress,metadata"

    def sub_accounts(self, spec: ProviderSpec, access_token: str) -> list[SubAccount]:
        found: dict[str, SubAccount] = {}
        for account in self.pages(api_url(spec, self.accounts_url), access_token, "account listing",
                                  "accounts", {"pageSize": "20"}):
            name = str(account.get("name", ""))
            if not _ACCOUNT_NAME.fullmatch(name):
                continue
            for location in self.pages(f"{spec.base_url}/v1/{name}/locations", access_token,
                                       "location listing", "locations", {"readMask": self.read_mask,
                                                                         "pageSize": "100"}):
                sub = _location(location, name)
                if sub is not None:
                    found.setdefault(sub.external_id, sub)  # a location seen through two accounts is one
        return list(found.values())

    def check(self, spec: ProviderSpec, access_token: str | None, *, app: AppCredentials | None = None,
              external_id: str | None = None) -> None:
        """``GET v1/{location}?readMask=name`` for the connection's location; without one, the account list."""
        if external_id is not None and _LOCATION_NAME.fullmatch(external_id):
            self.get(f"{spec.base_url}/v1/{external_id}", access_token, "health check", {"readMask": "name"})
        else:
            self.get(api_url(spec, self.accounts_url), access_token, "health check", {"pageSize": "1"})

    def revoke(self, spec: ProviderSpec, app: AppCredentials, access_token: str | None,
               refresh_token: str | None) -> None:
        return  # every location picked in one sign-in shares this grant: revoking it would cut off the others


def _location(location: dict[str, Any], account: str) -> SubAccount | None:
    name = str(location.get("name", ""))
    if not _LOCATION_NAME.fullmatch(name):
        return None
    detail = _address(location.get("storefrontAddress"))
    if pluck(location, "metadata.hasVoiceOfMerchant") is False:
        detail = f"{detail} · not verified yet, so posts will not show" if detail else "Not verified yet"
    return SubAccount(external_id=name, display_name=str(location.get("title") or name)[:255], kind="location",
                      detail=detail[:255], extra={"account": account})


def _address(address: Any) -> str:
    """A storefrontAddress (google.type.PostalAddress) on one line: street, town, region and postcode."""
    if not isinstance(address, dict):
        return ""
    lines = [str(line) for line in address.get("addressLines") or [] if line]
    region = " ".join(str(address[key]) for key in ("administrativeArea", "postalCode") if address.get(key))
    return ", ".join(part for part in (*lines, str(address.get("locality") or ""), region) if part)


def _url(value: Any) -> str | None:
    return value if isinstance(value, str) and value.startswith(("https://", "http://")) else None
