"""Per-process wiring: settings, database, Redis, locks, keys and the OAuth client.

The web app builds one in ``create_app``; a worker process builds one from the environment
(``workers.runtime``). Jobs receive it explicitly when run inline.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from portal.config import Settings
from portal.db import make_direct_engine, make_engine, make_session_factory
from portal.locks import LocalLocks, RedisLocks
from portal.oauth import OAuthClient
from portal.security.crypto import TokenCipher
from portal.security.signing import LinkSigner
from portal.security.urls import GuardPolicy
from portal.services import Deps
from portal.services.link_page import ViewCounts


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    deps: Deps
    redis: Redis | None
    # The hot paths' autocommit engine (make_direct_engine: the link page's read, API token reads) and the link
    # page's view counts, written in batches.
    direct_engine: Engine
    view_counts: ViewCounts

    def close(self) -> None:
        self.view_counts.close()  # the last second of link page views, while the engine is still there
        self.engine.dispose()
        self.direct_engine.dispose()
        self.deps.oauth.close()
        if self.redis is not None:
            self.redis.close()


def url_policy(settings: Settings) -> GuardPolicy:
    """How far user-supplied URLs may reach: public https only in production."""
    return GuardPolicy(allow_private=settings.allow_private_urls, require_https=settings.production)


def build_runtime(settings: Settings) -> Runtime:
    engine = make_engine(settings.database_url)
    redis = Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5) if settings.redis_url \
        else None
    locks = RedisLocks(redis) if redis is not None else LocalLocks()
    deps = Deps(settings=settings, cipher=TokenCipher(settings.token_keys), signer=LinkSigner(settings.link_keys),
                oauth=OAuthClient(url_policy=url_policy(settings)), locks=locks)
    return Runtime(settings, engine, make_session_factory(engine), deps, redis,
                   direct_engine=make_direct_engine(settings.database_url),
                   view_counts=ViewCounts(engine, settings.view_flush_seconds))
