"""Settings: documented defaults, overridden by environment variables.

Three modes:
- ``demo`` / ``dev``: missing keys are generated once and kept in the instance folder
  (``keys.json``, mode 0600), so restarts keep links and tokens readable.
- ``production``: start-up refuses to proceed without every key, naming what is missing.

Keys are lists, newest first: the newest signs or encrypts, all of them verify or decrypt,
so a key is rotated by prepending a new one and dropping the oldest later.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

MODES = ("demo", "dev", "test", "production")

ENV_DOC: dict[str, str] = {
    "PORTAL_MODE": "demo | dev | test | production (default: demo)",
    "PORTAL_INSTANCE_PATH": "folder for the SQLite file and generated dev keys (default: ./instance)",
    "DATABASE_URL": "SQLAlchemy URL (default: SQLite file in the instance folder)",
    "REDIS_URL": "redis://… ; unset = jobs run inline, locks are process-local",
    "PORTAL_BASE_URL": "public URL of the portal, used for links and OAuth redirect URIs",
    "PORTAL_SECRET_KEYS": "Flask session/CSRF keys, comma-separated, newest first",
    "PORTAL_LINK_KEYS": "EasyConnect link signing keys, comma-separated, newest first",
    "PORTAL_TOKEN_KEYS": "token encryption keys as kid:base64url(32 bytes), comma-separated, newest first",
    "PORTAL_SANDBOX": "1 to serve the sandbox platform (default on outside production)",
    "PORTAL_SANDBOX_URL": "where the portal reaches the sandbox (default: PORTAL_BASE_URL + /sandbox)",
    "PORTAL_SANDBOX_CLIENT_ID / _SECRET": "the operator's app registered at the sandbox",
    "PORTAL_TRUSTED_PROXIES": "number of reverse proxies whose X-Forwarded-* headers are trusted (default 0)",
    "PORTAL_SANDBOX_PLATFORMS": "1 to route every platform to the sandbox's stand-ins (default on outside production)",
    "PORTAL_APP_<GROUP>_CLIENT_ID / _CLIENT_SECRET": "the operator's default app per platform group "
                                                     "(FACEBOOK, GOOGLE, LINKEDIN, X, TIKTOK, ...)",
    "PORTAL_PLATFORM_REFRESHES_PER_SECOND": "sweep refreshes per second per platform, across workers (200)",
    "PORTAL_VIEW_FLUSH_SECONDS": "how often link page views are written, in one transaction (1; 0 = only when read)",
    "PORTAL_SMTP_URL": "smtp://user:pass@host:587 (smtp+starttls://, smtps://); unset: mail stays in the outbox",
    "PORTAL_MAIL_FROM": "sender of notification mail",
    "PORTAL_OFFBOARDING_RETENTION_DAYS": "days a deleted workspace's or agency's rows are kept (tokens go at once; 30)",
    "PORTAL_EVENT_RETENTION_DAYS": "days finished webhook deliveries/events and sent emails are kept (30)",
    "PORTAL_NOTIFICATION_RETENTION_DAYS": "days read notifications are kept (90)",
    "PORTAL_CUSTOM_DOMAINS": "1 lets agencies map their own host to the portal (default 0); see README",
    "PORTAL_DNS_NAMESERVERS": "resolvers asked for custom-domain TXT proofs: ip or ip:port, comma-separated "
                              "(default: the system's)",
    "PORTAL_ALLOW_PRIVATE_URLS": "1 lets user-supplied URLs reach private addresses (default on outside production; "
                                 "refused in production)",
}


class ConfigError(RuntimeError):
    """The configuration cannot run; the message names what is missing."""


@dataclass(frozen=True)
class Settings:
    mode: str = "demo"
    instance_path: Path = Path("instance")
    database_url: str = ""
    redis_url: str | None = None
    base_url: str = "http://127.0.0.1:5000"
    secret_keys: tuple[str, ...] = ()
    link_keys: tuple[str, ...] = ()
    token_keys: tuple[tuple[str, bytes], ...] = ()
    sandbox_enabled: bool = True
    sandbox_url: str = ""
    sandbox_client_id: str = "easyconnect-demo"
    sandbox_client_secret: str = ""
    sandbox_access_lifetime: int = 3600
    sandbox_refresh_lifetime: int = 90 * 86400
    sandbox_database_url: str = ""
    # Where the sandbox may send the browser back to after consent; empty = PORTAL_BASE_URL + "/oauth/callback/".
    sandbox_redirect_prefix: str = ""
    trusted_proxies: int = 0
    # Route every platform to the local sandbox's stand-ins (demo, tests); off in production.
    sandbox_platforms: bool = True
    # The operator's default app per credential group: {"facebook": ("client id", "secret"), ...}.
    operator_apps: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    operator_bot_tokens: Mapping[str, str] = field(default_factory=dict)  # PORTAL_APP_<GROUP>_BOT_TOKEN
    # Let user-supplied URLs (Mastodon, Bluesky PDS, custom OIDC) reach private addresses: dev and tests only.
    allow_private_urls: bool = False
    platform_timeout: float = 15.0
    # At most this many sweep refreshes per second per platform, across all workers.
    platform_refreshes_per_second: int = 200
    # Link page views are written in one transaction this often; 0 = only when read (admin, API) or at exit.
    view_flush_seconds: float = 1.0
    attempt_lifetime: int = 15 * 60
    refresh_lock_seconds: int = 60
    # Refresh a rotating short-lived token this long before it expires.
    refresh_margin_seconds: int = 10 * 60
    login_rate_limit: str = "10 per minute"
    credential_rate_limit: str = "10 per minute"
    smtp_url: str | None = None  # smtp://user:pass@host:port (or smtps://, smtp+starttls://); unset = local outbox
    mail_from: str = "EasyConnect <no-reply@localhost>"
    extra: Mapping[str, Any] = field(default_factory=dict)
    api_rate_limit: str = "600 per minute"  # per REST API key (per address for requests without one)
    # Agencies may map their own host (connect.agency.example) to the portal: its links, pages and OAuth
    # callbacks (with the agency's own apps) then use that host. The operator routes and certifies it.
    custom_domains: bool = False
    # Resolvers (ip, port) asked for a custom domain's TXT proof; empty = the system's resolver.
    dns_nameservers: tuple[tuple[str, int], ...] = ()
    # Retention (days): what is left of a deleted workspace or agency (its tokens go at once); finished
    # webhook deliveries/events and sent emails; read notifications.
    offboarding_retention_days: int = 30
    event_retention_days: int = 30
    notification_retention_days: int = 90

    @property
    def production(self) -> bool:
        return self.mode == "production"

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")

    def sandbox_redirect_allowed_prefix(self) -> str:
        return self.sandbox_redirect_prefix or self.base_url.rstrip("/") + "/oauth/callback/"

    def __repr__(self) -> str:  # never let keys (or the SMTP password) reach a log or a traceback
        return f"Settings(mode={self.mode!r}, base_url={self.base_url!r}, database={_redact_url(self.database_url)})"


def _redact_url(url: str) -> str:
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def parse_nameservers(value: str) -> tuple[tuple[str, int], ...]:
    """``ip`` or ``ip:port`` (``[v6]:port`` for IPv6 with a port), comma-separated. IP literals only: a
    resolver named by a host name would itself need a resolver, and its answers decide domain ownership."""
    servers = []
    for entry in _split(value):
        host, port = entry, "53"
        if entry.startswith("["):
            host, _, rest = entry[1:].partition("]")
            if rest:
                if not rest.startswith(":"):
                    raise ConfigError(f"PORTAL_DNS_NAMESERVERS entry {entry!r} must be ip or ip:port")
                port = rest[1:]
        elif entry.count(":") == 1:
            host, port = entry.split(":")
        try:
            address = str(ipaddress.ip_address(host))
        except ValueError:
            raise ConfigError(f"PORTAL_DNS_NAMESERVERS entry {entry!r} is not an IP address") from None
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ConfigError(f"PORTAL_DNS_NAMESERVERS entry {entry!r} needs a port from 1 to 65535")
        servers.append((address, int(port)))
    return tuple(servers)


def parse_token_keys(value: str) -> tuple[tuple[str, bytes], ...]:
    """Parse ``kid:base64key,...`` into (kid, 32-byte key) pairs, newest first."""
    keys = []
    for item in _split(value):
        kid, sep, encoded = item.partition(":")
        if not sep or not kid.isalnum():
            raise ConfigError("PORTAL_TOKEN_KEYS entries must look like kid:base64url-key (kid alphanumeric)")
        try:
            raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError as exc:
            raise ConfigError(f"PORTAL_TOKEN_KEYS key {kid!r} is not base64url") from exc
        if len(raw) != 32:
            raise ConfigError(f"PORTAL_TOKEN_KEYS key {kid!r} must be 32 bytes")
        keys.append((kid, raw))
    if len({kid for kid, _ in keys}) != len(keys):
        raise ConfigError("PORTAL_TOKEN_KEYS has a repeated key id")
    return tuple(keys)


def new_token_key() -> str:
    """A fresh ``kid:key`` entry for PORTAL_TOKEN_KEYS."""
    return f"k{secrets.token_hex(4)}:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def _dev_keys(instance_path: Path) -> dict[str, str]:
    """Keys generated once per instance folder for demo and dev mode."""
    path = instance_path / "keys.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    keys = {
        "PORTAL_SECRET_KEYS": secrets.token_urlsafe(32),
        "PORTAL_LINK_KEYS": secrets.token_urlsafe(32),
        "PORTAL_TOKEN_KEYS": new_token_key(),
        "PORTAL_SANDBOX_CLIENT_SECRET": secrets.token_urlsafe(24),
    }
    instance_path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(keys, handle)
    return keys


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build Settings from the environment (or ``env``) plus explicit overrides."""
    env = dict(os.environ if env is None else env)
    mode = overrides.pop("mode", None) or env.get("PORTAL_MODE", "demo")
    if mode not in MODES:
        raise ConfigError(f"PORTAL_MODE must be one of {', '.join(MODES)}")
    instance_path = Path(overrides.pop("instance_path", None) or env.get("PORTAL_INSTANCE_PATH", "instance"))
    instance_path = instance_path.resolve()
    if mode == "production":
        missing = [
            name
            for name in ("PORTAL_SECRET_KEYS", "PORTAL_LINK_KEYS", "PORTAL_TOKEN_KEYS", "DATABASE_URL",
                         "PORTAL_BASE_URL")
            if not env.get(name) and name.lower().removeprefix("portal_") not in overrides
        ]
        if missing:
            raise ConfigError("production mode needs these settings: " + ", ".join(missing))
    else:
        for name, value in _dev_keys(instance_path).items():
            env.setdefault(name, value)

    base_url = env.get("PORTAL_BASE_URL", "http://127.0.0.1:5000").rstrip("/")
    sandbox_default = "0" if mode == "production" else "1"
    settings = Settings(
        mode=mode,
        instance_path=instance_path,
        database_url=env.get("DATABASE_URL") or f"sqlite:///{instance_path / 'easyconnect.db'}",
        redis_url=env.get("REDIS_URL") or None,
        base_url=base_url,
        secret_keys=_split(env.get("PORTAL_SECRET_KEYS")),
        link_keys=_split(env.get("PORTAL_LINK_KEYS")),
        token_keys=parse_token_keys(env.get("PORTAL_TOKEN_KEYS", "")),
        sandbox_enabled=env.get("PORTAL_SANDBOX", sandbox_default) == "1",
        sandbox_url=(env.get("PORTAL_SANDBOX_URL") or base_url + "/sandbox").rstrip("/"),
        sandbox_client_id=env.get("PORTAL_SANDBOX_CLIENT_ID", "easyconnect-demo"),
        sandbox_client_secret=env.get("PORTAL_SANDBOX_CLIENT_SECRET", ""),
        sandbox_database_url=env.get("PORTAL_SANDBOX_DATABASE_URL") or f"sqlite:///{instance_path / 'sandbox.db'}",
        trusted_proxies=int(env.get("PORTAL_TRUSTED_PROXIES", "0")),
        sandbox_platforms=env.get("PORTAL_SANDBOX_PLATFORMS", sandbox_default) == "1",
        operator_apps=_operator_apps(env),
        operator_bot_tokens={key.removeprefix("PORTAL_APP_").removesuffix("_BOT_TOKEN").lower().replace("_", "-"): value
                             for key, value in env.items()
                             if key.startswith("PORTAL_APP_") and key.endswith("_BOT_TOKEN") and value},
        # The demo's sandbox lives on 127.0.0.1; production never lets user URLs reach private addresses.
        allow_private_urls=env.get("PORTAL_ALLOW_PRIVATE_URLS", sandbox_default) == "1",
        smtp_url=env.get("PORTAL_SMTP_URL") or None,
        platform_refreshes_per_second=int(env.get("PORTAL_PLATFORM_REFRESHES_PER_SECOND", "200")),
        view_flush_seconds=float(env.get("PORTAL_VIEW_FLUSH_SECONDS", "1")),
        mail_from=env.get("PORTAL_MAIL_FROM", "EasyConnect <no-reply@localhost>"),
        custom_domains=env.get("PORTAL_CUSTOM_DOMAINS", "0") == "1",
        dns_nameservers=parse_nameservers(env.get("PORTAL_DNS_NAMESERVERS", "")),
        offboarding_retention_days=int(env.get("PORTAL_OFFBOARDING_RETENTION_DAYS", "30")),
        event_retention_days=int(env.get("PORTAL_EVENT_RETENTION_DAYS", "30")),
        notification_retention_days=int(env.get("PORTAL_NOTIFICATION_RETENTION_DAYS", "90")),
    )
    settings = replace(settings, **overrides)
    validate(settings)
    return settings


def _operator_apps(env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    apps = {}
    for key, client_id in env.items():
        if key.startswith("PORTAL_APP_") and key.endswith("_CLIENT_ID") and client_id:
            group = key.removeprefix("PORTAL_APP_").removesuffix("_CLIENT_ID")
            secret = env.get(f"PORTAL_APP_{group}_CLIENT_SECRET", "")
            if not secret:
                raise ConfigError(f"PORTAL_APP_{group}_CLIENT_SECRET is missing for PORTAL_APP_{group}_CLIENT_ID")
            apps[group.lower().replace("_", "-")] = (client_id, secret)
    return apps


def validate(settings: Settings) -> None:
    """Fail closed: no signing or encryption without keys, in any mode."""
    problems = []
    if not settings.secret_keys:
        problems.append("PORTAL_SECRET_KEYS")
    if not settings.link_keys:
        problems.append("PORTAL_LINK_KEYS")
    if not settings.token_keys:
        problems.append("PORTAL_TOKEN_KEYS")
    if settings.sandbox_enabled and not settings.sandbox_client_secret:
        problems.append("PORTAL_SANDBOX_CLIENT_SECRET")
    if problems:
        raise ConfigError("missing settings: " + ", ".join(problems))
    if settings.production:
        unsafe = [name for name, on in (("PORTAL_ALLOW_PRIVATE_URLS", settings.allow_private_urls),
                                        ("PORTAL_SANDBOX_PLATFORMS", settings.sandbox_platforms),
                                        ("PORTAL_SANDBOX", settings.sandbox_enabled)) if on]
        if unsafe:
            raise ConfigError("not allowed in production: " + ", ".join(unsafe))
        if not settings.base_url.startswith("https://"):
            raise ConfigError("PORTAL_BASE_URL must be https in production (secure cookies, HSTS)")
        if not settings.redis_url:
            raise ConfigError("REDIS_URL is required in production: refresh locks must span every process")
    if set(settings.link_keys) & set(settings.secret_keys):
        raise ConfigError("PORTAL_LINK_KEYS must differ from PORTAL_SECRET_KEYS")
