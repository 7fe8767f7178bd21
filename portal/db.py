"""Engine, session factory and declarative base.

One DB session per request (closed on teardown) and one per job. The caller owns the
transaction: services flush, edges commit. No transaction is ever held across a platform
HTTP call (SQLite would block the sandbox in the demo; PostgreSQL would hold row locks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import QueuePool
from sqlalchemy.types import TypeDecorator

T = TypeVar("T")
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime()}


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_engine(url: str, *, immediate: bool = True, pool_pre_ping: bool = True, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys, a busy timeout and (by default) BEGIN IMMEDIATE.

    ``immediate=False`` is for readers that must never queue behind or block a writer (tests'
    own inspection sessions)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        # Pooled, not a connection per session: closing a WAL database's last connection checkpoints and
        # deletes the WAL, and the next commit recreates it; that cost milliseconds on every request.
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, poolclass=QueuePool,
                               pool_size=5, max_overflow=15, **kwargs)
        _configure_sqlite(engine, immediate, kwargs.get("isolation_level") == "AUTOCOMMIT")
        return engine
    if parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    # A worker's refresh pool keeps 16 threads on a connection each: they must all stay pooled, not be
    # reopened (a new PostgreSQL connection costs milliseconds) for every batch.
    return create_engine(url, pool_pre_ping=pool_pre_ping, pool_size=20, max_overflow=20, **kwargs)


def _configure_sqlite(engine: Engine, immediate: bool, autocommit: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take control of transactions so every one starts with BEGIN IMMEDIATE: writers queue on
        # the busy timeout instead of failing with "database is locked" when a reader upgrades.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    if autocommit:
        return  # each statement is its own transaction (make_direct_engine)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_direct_engine(url: str) -> Engine:
    """The engine of the hot paths (the client link page's read, the API's token reads): each statement its own
    transaction, no BEGIN or COMMIT round trips. On SQLite its transactions start deferred (a read must not take
    the write lock that every other transaction here takes at once). On PostgreSQL a checkout does not ping the
    server: ``run_direct`` retries once on a connection found dead instead, which is what the ping was for,
    without a round trip on every request."""
    # Set once per new DBAPI connection, not per checkout and check-in as execution options would be.
    options = {"isolation_level": "AUTOCOMMIT", "skip_autocommit_rollback": True}
    if make_url(url).get_backend_name() == "sqlite":
        return make_engine(url, immediate=False, **options)
    return make_engine(url, pool_pre_ping=False, **options)


def run_direct(engine: Engine, work: Callable[[Connection], T]) -> T:
    """``work`` on a pooled autocommit connection of ``engine`` (see make_direct_engine). A connection that turns
    out dead (the database restarted) invalidates the pool and the work runs once more on a new one: at worst
    a statement that did reach the server runs twice, so work must be safe to repeat (reads, audit rows)."""
    for attempt in (1, 2):
        try:
            with engine.connect() as connection:
                return work(connection)
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise
    raise AssertionError("unreachable")


class DirectSelect:
    """A SELECT built with SQLAlchemy, compiled once per dialect and sent straight to the DBAPI cursor, its
    result columns converted by their SQLAlchemy types as usual: for a hot path's single read, where SQLAlchemy's
    per-execution machinery costs more than the query itself (the link page's read: SQLite 57 -> 21 us,
    PostgreSQL 212 -> 123 us of CPU; tests/benchmarks/bench_link_page.py). Its parameters are bound as given,
    so they must be plain values (strings, numbers) the driver takes as they are; a connection found dead is
    invalidated and reported as SQLAlchemy would, so ``run_direct`` retries it."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._compiled: dict[str, tuple[str, list[str] | None, list[Any]]] = {}

    def _for(self, dialect: Any) -> tuple[str, list[str] | None, list[Any]]:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)
            if any(value is not None for value in compiled.params.values()):
                raise ValueError("DirectSelect binds only the caller's parameters: no literal values")
            processors = [column.type.dialect_impl(dialect).result_processor(dialect, None)
                          for column in self.statement.selected_columns]
            found = (str(compiled), compiled.positiontup, processors)
            self._compiled[dialect.name] = found
        return found

    def first(self, connection: Connection, params: dict[str, Any]) -> tuple[Any, ...] | None:
        dialect = connection.dialect
        sql, positions, processors = self._for(dialect)
        values: Any = [params[name] for name in positions] if positions is not None else params
        fairy = connection.connection
        cursor = fairy.cursor()
        try:
            cursor.execute(sql, values)
            row = cursor.fetchone()
        except dialect.loaded_dbapi.Error as exc:
            dead = dialect.is_disconnect(exc, fairy.dbapi_connection, cursor)
            if dead:
                connection.invalidate(exc)
            raise DBAPIError.instance(sql, values, exc, dialect.loaded_dbapi.Error,
                                      connection_invalidated=dead, dialect=dialect) from exc
        finally:
            cursor.close()
        if row is None:
            return None
        return tuple(value if process is None else process(value) for process, value in zip(processors, row,
                                                                                                 strict=True))


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session for one unit of work outside a request: commit on success, roll back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
