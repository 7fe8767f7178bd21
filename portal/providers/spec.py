"""ProviderSpec: one platform's protocol facts as a frozen, validated value."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import urlsplit

AUTH_KINDS = ("oauth2", "app_password", "instance_oauth", "bot_code")
REFRESH_STYLES = ("none", "standard", "rotating", "exchange", "session")
TOKEN_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
ACCOUNT_KINDS = ("profile", "page", "organization", "channel", "board", "location", "guild", "chat")
REQUIRED_USERINFO_FIELDS = ("id", "name")
URL_FIELDS = ("authorize_url", "token_url", "userinfo_url", "revoke_url")
_OAUTH_KINDS = ("oauth2", "instance_oauth")


class CatalogError(ValueError):
    """A catalog entry is invalid; the message names the entry and the field."""


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    display_name: str
    account_kind: str
    base_url: str
    scopes: tuple[str, ...]
    authorize_url: str = ""
    token_url: str = ""
    userinfo_url: str = ""
    revoke_url: str | None = None
    auth_kind: str = "oauth2"
    adapter: str = "oauth2"
    credentials: str = ""  # whose app credentials: "" = this platform's own
    sub_accounts: bool = False  # the client picks pages / channels / boards ... after authorizing
    scope_separator: str = " "
    token_auth_method: str = "client_secret_post"
    client_id_param: str = "client_id"
    pkce: bool = True
    refresh: str = "standard"
    required_scopes: tuple[str, ...] = ()
    description: str = ""
    color: str = "#64748b"
    sandbox_only: bool = False
    sandboxed: bool = False  # resolved against the local sandbox (demo, tests)
    authorize_params: tuple[tuple[str, str], ...] = ()
    reconsent_params: tuple[tuple[str, str], ...] = ()
    userinfo_fields: tuple[tuple[str, str], ...] = ()

    @property
    def credential_group(self) -> str:
        return self.credentials or self.name

    @property
    def label(self) -> str:
        return f"{self.display_name} (Sandbox)" if self.sandboxed and not self.sandbox_only else self.display_name

    def resolve(self, sandbox_url: str, sandboxed: bool) -> ProviderSpec:
        """This deployment's URLs: {base} and {sandbox} filled; with ``sandboxed`` every https URL is
        routed to the sandbox's stand-in for that host (``{sandbox}/p/<host>/<path>``)."""
        base = self.base_url.replace("{sandbox}", sandbox_url).rstrip("/")

        def fill(url: str | None) -> str | None:
            if not url:
                return url
            url = url.replace("{base}", base)
            return sandbox_route(sandbox_url, url) if sandboxed else url

        return replace(self, base_url=fill(base) or base, sandboxed=sandboxed and not self.sandbox_only,
                       **{name: fill(getattr(self, name)) for name in URL_FIELDS})

    def for_instance(self, instance: str, sandbox_url: str = "") -> ProviderSpec:
        """Multi-instance platforms: the spec bound to one server (e.g. a Mastodon instance URL)."""
        instance = instance.rstrip("/")

        def fill(url: str | None) -> str | None:
            if not url:
                return url
            url = url.replace("{instance}", instance)
            return sandbox_route(sandbox_url, url) if self.sandboxed else url

        return replace(self, base_url=fill(self.base_url) or instance,
                       **{name: fill(getattr(self, name)) for name in URL_FIELDS})


def sandbox_route(sandbox_url: str, url: str) -> str:
    """The sandbox's stand-in address for a real platform URL."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        return url
    return f"{sandbox_url}/p/{parts.netloc}{parts.path}" + (f"?{parts.query}" if parts.query else "")


def build_spec(name: str, entry: dict[str, Any]) -> ProviderSpec:
    """Validate one catalog entry and turn it into a ProviderSpec."""

    def fail(message: str) -> CatalogError:
        return CatalogError(f"catalog entry [{name}]: {message}")

    known = {f.name for f in fields(ProviderSpec)} - {"name", "sandboxed"}
    unknown = set(entry) - known
    if unknown:
        raise fail(f"unknown fields {sorted(unknown)}")
    for required in ("display_name", "account_kind", "base_url"):
        if not entry.get(required):
            raise fail(f"missing {required}")
    if not name.replace("_", "").replace("-", "").isalnum() or name != name.lower():
        raise fail("name must be lowercase letters, digits, - or _")
    _check_choice(entry, "account_kind", ACCOUNT_KINDS, fail)
    _check_choice(entry, "auth_kind", AUTH_KINDS, fail, "oauth2")
    _check_choice(entry, "refresh", REFRESH_STYLES, fail, "standard")
    _check_choice(entry, "token_auth_method", TOKEN_AUTH_METHODS, fail, "client_secret_post")
    scopes = entry.get("scopes")
    if not isinstance(scopes, list) or not all(isinstance(s, str) and s for s in scopes):
        raise fail("scopes must be a list of strings")
    if not set(entry.get("required_scopes", [])) <= set(scopes):
        raise fail("required_scopes must be a subset of scopes")
    if entry.get("auth_kind", "oauth2") in _OAUTH_KINDS:
        _check_oauth_entry(entry, fail)
    color = entry.get("color", "#64748b")
    if not (len(color) == 7 and color.startswith("#") and all(c in "0123456789abcdefABCDEF" for c in color[1:])):
        raise fail("color must be #rrggbb")
    values = {**entry, "name": name, "scopes": tuple(scopes),
              "required_scopes": tuple(entry.get("required_scopes", ()))}
    for table in ("userinfo_fields", "authorize_params", "reconsent_params"):
        values[table] = tuple(sorted(entry.get(table, {}).items()))
    return ProviderSpec(**values)


def _check_choice(entry: dict[str, Any], key: str, choices: tuple[str, ...], fail: Any,
                  default: str | None = None) -> None:
    if entry.get(key, default) not in choices:
        raise fail(f"{key} must be one of {choices}")


def _check_oauth_entry(entry: dict[str, Any], fail: Any) -> None:
    for required in ("authorize_url", "token_url", "userinfo_url"):
        if not entry.get(required):
            raise fail(f"missing {required}")
    for url_field in URL_FIELDS:
        url = entry.get(url_field)
        if url is not None and not _is_url_template(url):
            raise fail(f"{url_field} must be an https URL or start with {{base}} or {{instance}}")
    userinfo = entry.get("userinfo_fields", {})
    for key in REQUIRED_USERINFO_FIELDS:
        if key not in userinfo and entry.get("adapter", "oauth2") == "oauth2":
            raise fail(f"userinfo_fields needs {key!r}")


def _is_url_template(url: str) -> bool:
    if url.startswith(("{base}", "{instance}")):
        return True
    parts = urlsplit(url)
    return parts.scheme == "https" and bool(parts.netloc)
