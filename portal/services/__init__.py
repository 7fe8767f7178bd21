"""Domain services shared by the portal, the admin panel, the API and the workers.

Services are plain Python: they take a DB session and a ``Deps`` bundle (settings, keys,
OAuth client, locks, clock) as arguments, filter every query by agency, flush but do not
commit (except where a platform call sits between two steps, documented there), and
raise typed errors from ``portal.errors``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from portal.config import Settings
from portal.db import utcnow
from portal.locks import LockFactory
from portal.oauth import OAuthClient
from portal.security.crypto import TokenCipher
from portal.security.signing import LinkSigner


@dataclass(frozen=True)
class Deps:
    settings: Settings
    cipher: TokenCipher
    signer: LinkSigner
    oauth: OAuthClient
    locks: LockFactory
    clock: Callable[[], datetime] = utcnow

    def now(self) -> datetime:
        return self.clock()
