"""ProviderSpec: one platform's protocol facts as a frozen, validated value."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

REFRESH_STYLES = ("none", "standard", "rotating")
TOKEN_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
ACCOUNT_KINDS = ("profile", "page", "organization", "channel", "board", "location", "guild", "chat")
REQUIRED_USERINFO_FIELDS = ("id", "name")
_URL_FIELDS = ("authorize_url", "token_url", "userinfo_url", "revoke_url")


class CatalogError(ValueError):
    """A catalog entry is invalid; the message names the entry and the field."""


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    display_name: str
    account_kind: str
    base_url: str
    authorize_url: str
    token_url: str
    userinfo_url: str
    scopes: tuple[str, ...]
    scope_separator: str = " "
    token_auth_method: str = "client_secret_post"
    pkce: bool = True
    refresh: str = "standard"
    required_scopes: tuple[str, ...] = ()
    revoke_url: str | None = None
    description: str = ""
    icon: str = ""
    color: str = "#64748b"
    sandbox_only: bool = False
    authorize_params: tuple[tuple[str, str], ...] = ()
    userinfo_fields: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def field_name(self, key: str) -> str | None:
        return dict(self.userinfo_fields).get(key)

    def resolve(self, sandbox_url: str, base_override: str | None = None) -> ProviderSpec:
        """The spec with {base}/{sandbox} placeholders replaced by this deployment's URLs."""
        base = (base_override or self.base_url).replace("{sandbox}", sandbox_url).rstrip("/")

        def fill(url: str | None) -> str | None:
            return None if url is None else url.replace("{base}", base)

        return ProviderSpec(**{
            **self.__dict__,
            "base_url": base,
            **{name: fill(getattr(self, name)) for name in _URL_FIELDS},
        })


def build_spec(name: str, entry: dict[str, Any]) -> ProviderSpec:
    """Validate one catalog entry and turn it into a ProviderSpec."""

    def fail(message: str) -> CatalogError:
        return CatalogError(f"catalog entry [{name}]: {message}")

    known = set(ProviderSpec.__dataclass_fields__) - {"name"}
    unknown = set(entry) - known
    if unknown:
        raise fail(f"unknown fields {sorted(unknown)}")
    for required in ("display_name", "account_kind", "base_url", "authorize_url", "token_url", "userinfo_url",
                     "scopes"):
        if not entry.get(required):
            raise fail(f"missing {required}")
    if not name.replace("_", "").replace("-", "").isalnum() or name != name.lower():
        raise fail("name must be lowercase letters, digits, - or _")
    if entry["account_kind"] not in ACCOUNT_KINDS:
        raise fail(f"account_kind must be one of {ACCOUNT_KINDS}")
    if entry.get("refresh", "standard") not in REFRESH_STYLES:
        raise fail(f"refresh must be one of {REFRESH_STYLES}")
    if entry.get("token_auth_method", "client_secret_post") not in TOKEN_AUTH_METHODS:
        raise fail(f"token_auth_method must be one of {TOKEN_AUTH_METHODS}")
    scopes = entry["scopes"]
    if not isinstance(scopes, list) or not all(isinstance(s, str) and s for s in scopes):
        raise fail("scopes must be a list of strings")
    if not set(entry.get("required_scopes", [])) <= set(scopes):
        raise fail("required_scopes must be a subset of scopes")
    for url_field in _URL_FIELDS:
        url = entry.get(url_field)
        if url is not None and not _is_url_template(url):
            raise fail(f"{url_field} must be an https URL or start with {{base}}")
    fields = entry.get("userinfo_fields", {})
    for key in REQUIRED_USERINFO_FIELDS:
        if key not in fields:
            raise fail(f"userinfo_fields needs {key!r}")
    color = entry.get("color", "#64748b")
    if not (len(color) == 7 and color.startswith("#") and all(c in "0123456789abcdefABCDEF" for c in color[1:])):
        raise fail("color must be #rrggbb")
    values = {**entry, "name": name}
    values["scopes"] = tuple(scopes)
    values["required_scopes"] = tuple(entry.get("required_scopes", ()))
    values["userinfo_fields"] = tuple(sorted(fields.items()))
    values["authorize_params"] = tuple(sorted(entry.get("authorize_params", {}).items()))
    return ProviderSpec(**values)


def _is_url_template(url: str) -> bool:
    if url.startswith("{base}"):
        return True
    parts = urlsplit(url)
    return parts.scheme == "https" and bool(parts.netloc)
