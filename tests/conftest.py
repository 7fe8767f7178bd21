"""Shared fixtures: real databases (SQLite and PostgreSQL), real Redis, a live sandbox platform.

Every test that touches the database runs twice, once per backend. PostgreSQL and Redis
must be running: a missing service stops the run with an error, never a skip.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
import sqlalchemy as sa
from werkzeug.serving import make_server

from portal.app import create_app
from portal.config import Settings, load_settings, new_token_key
from portal.db import Base, make_engine, make_session_factory
from portal.migrate import upgrade
from tests.helpers import LiveServer

PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PG_SCHEMA = os.environ.get("TEST_PG_SCHEMA", "easyconnect_test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PORTAL_BASE = "http://portal.test"
SANDBOX_SECRET = "sandbox-test-secret"
ARTIFACTS = Path(__file__).parent / "artifacts"


def pytest_sessionstart(session: pytest.Session) -> None:
    problems = []
    try:
        engine = sa.create_engine(PG_URL)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means the service is missing
        problems.append(f"PostgreSQL at {PG_URL} is not reachable: {exc.__class__.__name__}: {exc}")
    try:
        redis_lib.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001
        problems.append(f"Redis at {REDIS_URL} is not reachable: {exc}")
    if problems:
        pytest.exit("Required test services are missing (tests are never skipped):\n  " + "\n  ".join(problems),
                    returncode=3)


# Network guard: tests may talk to this machine only. -------------------------------------------------

_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and self.family in (socket.AF_INET, socket.AF_INET6):
        if not (host.startswith("127.") or host in ("::1", "localhost")):
            raise OSError(f"test tried to reach {host}: only loopback is allowed")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)


# Databases ----------------------------------------------------------------------------------------------

def _postgres_url() -> str:
    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {PG_SCHEMA}"))
    engine.dispose()
    return PG_URL + f"?options=-csearch_path%3D{PG_SCHEMA}"


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'portal.db'}"
    else:
        url = _postgres_url()
    upgrade(url)  # the migrations themselves are under test here
    return url


# The live sandbox platform: a separate app on a real local socket. ----------------------------------------

def _serve(app: Any) -> LiveServer:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return LiveServer(f"http://127.0.0.1:{server.server_port}", server, thread)


@pytest.fixture(scope="session")
def live_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    instance = tmp_path_factory.mktemp("sandbox")
    settings = base_settings(instance, f"sqlite:///{instance / 'unused.db'}", sandbox_url="http://unused")
    app = create_app(settings)
    server = _serve(app)
    yield server
    server.stop()
    app.extensions["easyconnect"].close()


def base_settings(instance: Path, database_url: str, **overrides: Any) -> Settings:
    env = {
        "PORTAL_MODE": "test",
        "PORTAL_SECRET_KEYS": "test-session-key",
        "PORTAL_LINK_KEYS": "test-link-key",
        "PORTAL_TOKEN_KEYS": new_token_key(),
        "PORTAL_SANDBOX_CLIENT_SECRET": SANDBOX_SECRET,
        "PORTAL_BASE_URL": PORTAL_BASE,
        "DATABASE_URL": database_url,
    }
    values: dict[str, Any] = {"instance_path": instance, "sandbox_redirect_prefix": PORTAL_BASE + "/oauth/callback/",
                              "sandbox_database_url": f"sqlite:///{instance / 'sandbox.db'}",
                              "login_rate_limit": "1000 per minute", "credential_rate_limit": "1000 per minute",
                              # the sandbox and test servers live on loopback; production refuses it
                              "allow_private_urls": True,
                              # link page views are written when read or flushed, never by a background thread
                              # racing the tests' own deferred writers (tests/web/test_link_views.py covers it)
                              "view_flush_seconds": 0}
    values.update(overrides)
    return load_settings(env, **values)


@pytest.fixture(scope="session")
def settings(database_url: str, live_sandbox: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return base_settings(tmp_path_factory.mktemp("instance"), database_url,
                         sandbox_url=live_sandbox.url + "/sandbox")


@pytest.fixture(scope="session")
def app(settings: Settings) -> Iterator[Any]:
    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    app.extensions["easyconnect"].close()


@pytest.fixture(scope="session")
def runtime(app: Any) -> Any:
    return app.extensions["easyconnect"]


@pytest.fixture(autouse=True)
def _clean_tables(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "runtime" in request.fixturenames or "app" in request.fixturenames:
        rt = request.getfixturevalue("app").extensions["easyconnect"]
        with rt.engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture(scope="session")
def inspect_engine(settings: Settings) -> Iterator[sa.Engine]:
    """The tests' own engine: on SQLite its transactions start deferred, so a test holding a
    read open never blocks the app's writers."""
    engine = make_engine(settings.database_url, immediate=False)
    yield engine
    engine.dispose()


@pytest.fixture
def db(inspect_engine: sa.Engine) -> Iterator[Any]:
    session = make_session_factory(inspect_engine)()
    yield session
    session.rollback()
    session.close()


@pytest.fixture
def redis_client() -> Iterator[redis_lib.Redis]:
    client = redis_lib.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
