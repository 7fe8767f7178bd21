"""Multi-instance platforms (Mastodon and compatible servers): the portal's app registered at each
server, cached per host (InstanceApp). Owned by the Mastodon work; see registered_app()."""

from __future__ import annotations

from sqlalchemy.orm import Session

from portal.errors import PlatformNotAllowed
from portal.oauth import AppCredentials
from portal.providers import ProviderSpec
from portal.services import Deps


def registered_app(db: Session, deps: Deps, spec: ProviderSpec, instance: str) -> AppCredentials:
    """The portal's app at ``instance`` (registered on first use, then cached)."""
    raise PlatformNotAllowed("Connecting to this kind of server is not available yet.")
