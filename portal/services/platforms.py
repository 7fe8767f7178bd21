"""Which platforms this deployment offers, resolved to its URLs, and the app credentials to use."""

from __future__ import annotations

from portal.config import Settings
from portal.errors import PlatformNotAllowed
from portal.oauth import AppCredentials
from portal.providers import ProviderSpec, load_catalog


def offered(settings: Settings) -> dict[str, ProviderSpec]:
    """Platforms with a usable app, resolved to this deployment's URLs, in catalog order."""
    result = {}
    for name, spec in load_catalog().items():
        if spec.sandbox_only and not settings.sandbox_enabled:
            continue
        if default_app(settings, name) is None:
            continue
        result[name] = spec.resolve(settings.sandbox_url, settings.extra.get(f"{name}_base_url"))
    return result


def resolved(settings: Settings, name: str) -> ProviderSpec:
    spec = offered(settings).get(name)
    if spec is None:
        raise PlatformNotAllowed()
    return spec


def default_app(settings: Settings, name: str) -> AppCredentials | None:
    """The operator's app for a platform, from configuration."""
    if name == "sandbox":
        return AppCredentials(settings.sandbox_client_id, settings.sandbox_client_secret)
    client_id = settings.extra.get(f"{name}_client_id")
    client_secret = settings.extra.get(f"{name}_client_secret")
    if client_id and client_secret:
        return AppCredentials(str(client_id), str(client_secret))
    return None


def app_for(settings: Settings, name: str) -> AppCredentials:
    app = default_app(settings, name)
    if app is None:
        raise PlatformNotAllowed("This platform is not set up on this portal.")
    return app


def redirect_uri(settings: Settings, name: str) -> str:
    return f"{settings.base_url}/oauth/callback/{name}"
