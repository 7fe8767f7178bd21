"""LinkedIn company pages (reference/platforms.md §4, §5).

The personal profile is plain OAuth 2.0 (the "oauth2" adapter). A company page has no token of its
own: the member's token acts as the organization when the member holds an approved role, so after
authorizing, the member's organizations come from the versioned ``/rest`` API
(``organizationAcls``, then ``organizations/{id}``), which needs the ``LinkedIn-Version`` and
``X-Restli-Protocol-Version`` headers. Errors come as
``{"status", "serviceErrorCode", "code", "message"}``.
"""

from __future__ import annotations

import re
from typing import Any

from portal.errors import PlatformError
from portal.oauth import AccountInfo, AppCredentials, TokenGrant
from portal.providers.adapters.base import Adapter, SubAccount, account_from
from portal.providers.spec import ProviderSpec

API_VERSION = "202510"  # LinkedIn sunsets a monthly version after about a year: move it on before then
RESTLI_PROTOCOL = "2.0.0"
PAGE_SIZE = 100
MAX_PAGES = 10
_ORGANIZATION_URN = re.compile(r"urn:li:organization:([0-9]{1,30})")


def classify_linkedin_error(status: int, body: dict[str, Any], retry_after: str | None, what: str) -> PlatformError:
    """LinkedIn's error body to a shared class: 401 token, 403 role or scope, 429 throttled, 5xx temporary."""
    code = str(body.get("code") or body.get("serviceErrorCode") or status)[:40]
    if status >= 500:
        return PlatformError(PlatformError.TEMPORARY, f"LinkedIn had a temporary problem ({what})", platform_code=code)
    if status == 429:
        wait = float(retry_after) if retry_after and retry_after.isdigit() else 60.0
        return PlatformError(PlatformError.RATE_LIMITED, f"LinkedIn throttled the {what}", retry_after=wait,
                             platform_code=code)
    if status == 401:
        return PlatformError(PlatformError.TOKEN_INVALID, f"LinkedIn no longer accepts this token ({what})",
                             platform_code=code)
    if status in (403, 404):
        return PlatformError(PlatformError.PERMISSION_LOST, f"LinkedIn refused the {what}: the member lacks the "
                             "role or permission", platform_code=code)
    # 400 VERSION_MISSING, 426 NONEXISTENT_VERSION: our pinned version, not the connection, is at fault.
    return PlatformError(PlatformError.TEMPORARY, f"LinkedIn failed the {what}", platform_code=code)


class LinkedInPages(Adapter):
    """The organizations the member administers; each picked one is a connection with the member's token."""

    def rest(self, spec: ProviderSpec, path: str, access_token: str, what: str,
             params: dict[str, str] | None = None) -> dict[str, Any]:
        return self.oauth.call_json("GET", f"{spec.base_url}/rest/{path}", what, token=access_token, params=params,
                                    headers={"LinkedIn-Version": API_VERSION,
                                             "X-Restli-Protocol-Version": RESTLI_PROTOCOL},
                                    classify=classify_linkedin_error)

    def identify(self, spec: ProviderSpec, grant: TokenGrant) -> AccountInfo:
        data = self.oauth.call_json("GET", spec.userinfo_url, "identity call", token=grant.access_token,
                                    classify=classify_linkedin_error)
        return account_from(data, dict(spec.userinfo_fields), id_key="sub")

    def administered(self, spec: ProviderSpec, access_token: str, what: str) -> list[str]:
        """Ids of the organizations where the member is an approved ADMINISTRATOR, in LinkedIn's order."""
        ids: list[str] = []
        for page in range(MAX_PAGES):
            data = self.rest(spec, "organizationAcls", access_token, what, {
                "q": "roleAssignee", "role": "ADMINISTRATOR", "state": "APPROVED",
                "start": str(page * PAGE_SIZE), "count": str(PAGE_SIZE)})
            elements = [e for e in data.get("elements") or [] if isinstance(e, dict)]
            for element in elements:
                match = _ORGANIZATION_URN.fullmatch(str(element.get("organization", "")))
                if match and match.group(1) not in ids:
                    ids.append(match.group(1))
            if len(elements) < PAGE_SIZE:
                break
        return ids

    def list_sub_accounts(self, spec: ProviderSpec, grant: TokenGrant, account: AccountInfo) -> list[SubAccount]:
        if not set(spec.required_scopes) <= set(grant.scopes):
            return []  # LinkedIn would answer 403; the scope check then names what was unticked
        subs = []
        for org_id in self.administered(spec, grant.access_token, "organization listing"):
            try:
                org = self.rest(spec, f"organizations/{org_id}", grant.access_token, "organization lookup")
            except PlatformError as exc:
                if exc.kind != PlatformError.PERMISSION_LOST:
                    raise
                continue  # removed meanwhile, or not readable: not offered
            subs.append(SubAccount(external_id=org_id, display_name=str(org.get("localizedName") or org_id)[:255],
                                   kind="organization", handle=str(org.get("vanityName") or "")[:255]))
        return subs

    def check(self, spec: ProviderSpec, access_token: str | None, *, app: AppCredentials | None = None,
              external_id: str | None = None) -> None:
        """``/v2/userinfo`` for the token; with the connection's organization id, also that the member
        still administers it (a lost role is a lost sub-account, not a dead token)."""
        self.identify(spec, TokenGrant(access_token, None, None, None, ()))
        if external_id is not None and external_id not in self.administered(spec, access_token, "health check"):
            raise PlatformError(PlatformError.PERMISSION_LOST, "the member no longer administers this LinkedIn page")

    def revoke(self, spec: ProviderSpec, app: AppCredentials, access_token: str | None,
               refresh_token: str | None) -> None:
        return  # every page picked in one sign-in shares the member's token: revoking it would cut off the others
