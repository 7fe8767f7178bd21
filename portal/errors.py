"""Typed errors raised by services and translated at the edges (pages, JSON, jobs).

``public_message`` is plain language safe to show a client; it never carries platform
text verbatim or a secret.
"""

from __future__ import annotations


class PortalError(Exception):
    status = 400
    code = "error"
    public_message = "Something went wrong."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.public_message)
        if message:
            self.public_message = message


class NotFound(PortalError):
    status = 404
    code = "not_found"
    public_message = "We could not find that."


class ValidationFailed(PortalError):
    status = 400
    code = "invalid_input"


class LinkInvalid(PortalError):
    status = 404
    code = "link_invalid"
    public_message = "This link is not valid. Check that you copied the whole address."


class LinkExpired(PortalError):
    status = 410
    code = "link_expired"
    public_message = "This link has expired. Ask the sender for a new one."


class LinkRevoked(PortalError):
    status = 410
    code = "link_revoked"
    public_message = "This link has been turned off by its sender. Ask them for a new one."


class LinkUsedUp(PortalError):
    status = 410
    code = "link_used_up"
    public_message = "This link has already been used as many times as allowed. Ask the sender for a new one."


class PlatformNotAllowed(PortalError):
    status = 404
    code = "platform_not_allowed"
    public_message = "This link does not offer that platform."


class AttemptInvalid(PortalError):
    """Missing, altered, reused, expired or foreign OAuth state."""

    status = 400
    code = "attempt_invalid"
    public_message = "This sign-in could not be verified or was already used. Please start again from your link."


class OAuthFailed(PortalError):
    status = 502
    code = "oauth_failed"
    public_message = "The platform did not complete the sign-in. Please try again."


class ConsentDenied(OAuthFailed):
    status = 400
    code = "consent_denied"
    public_message = "You chose not to grant access, so nothing was connected. You can try again at any time."


class RefreshBusy(PortalError):
    status = 409
    code = "refresh_in_progress"
    public_message = "A refresh for this connection is already running."


class ServiceUnavailable(PortalError):
    status = 503
    code = "unavailable"
    public_message = "The service is briefly unavailable. Please try again in a minute."


class PlatformError(PortalError):
    """A platform call failed; ``kind`` is one of the shared classes workers act on."""

    TOKEN_INVALID = "token_invalid"  # revoked or invalid grant: the client must reconnect
    PERMISSION_LOST = "permission_lost"
    RATE_LIMITED = "rate_limited"
    TEMPORARY = "temporary"  # 5xx, timeouts, unknown errors: retry, never "revoked"
    APP_MISCONFIGURED = "app_misconfigured"  # invalid client: the agency's app, not the connection
    KINDS = (TOKEN_INVALID, PERMISSION_LOST, RATE_LIMITED, TEMPORARY, APP_MISCONFIGURED)

    status = 502
    code = "platform_error"

    def __init__(self, kind: str, message: str, *, retry_after: float | None = None,
                 platform_code: str | None = None) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown platform error kind {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after
        self.platform_code = platform_code

    @property
    def permanent(self) -> bool:
        return self.kind in (self.TOKEN_INVALID, self.PERMISSION_LOST, self.APP_MISCONFIGURED)


class ScopesMissing(PortalError):
    """The client unticked permissions the platform needs for publishing."""

    status = 400
    code = "scopes_missing"

    def __init__(self, missing: list[str], platform_name: str) -> None:
        names = ", ".join(missing)
        super().__init__(f"You did not allow {names} on {platform_name}. Without it the connection cannot publish, "
                         "so nothing was connected. Please try again and keep every permission ticked.")
        self.missing = missing


class NoSubAccounts(PortalError):
    status = 400
    code = "no_sub_accounts"


class AccountNotExpected(PortalError):
    status = 403
    code = "account_not_expected"


class IdentityMismatch(PortalError):
    status = 409
    code = "identity_mismatch"


class SelectionExpired(PortalError):
    status = 410
    code = "selection_expired"
    public_message = "This choice took too long and has expired, so nothing was connected. Please start again."
