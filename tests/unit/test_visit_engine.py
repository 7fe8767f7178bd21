"""Page-view counts skip the fsync on PostgreSQL; nothing else does (tokens must survive a crash)."""

from __future__ import annotations

import sqlalchemy as sa

from portal.db import make_engine, make_visit_engine
from tests.conftest import PG_SCHEMA, PG_URL


def _setting(engine: sa.Engine, name: str) -> str:
    with engine.connect() as conn:
        return str(conn.execute(sa.text(f"SHOW {name}")).scalar())


def test_only_the_visit_engine_commits_without_waiting_for_the_disk() -> None:
    url = PG_URL + f"?options=-csearch_path%3D{PG_SCHEMA}"
    durable, visits = make_engine(url), make_visit_engine(url)
    assert visits is not None
    try:
        assert _setting(durable, "synchronous_commit") == "on"
        assert _setting(visits, "synchronous_commit") == "off"
        assert _setting(visits, "search_path") == _setting(durable, "search_path") == PG_SCHEMA  # options kept
    finally:
        durable.dispose()
        visits.dispose()


def test_sqlite_has_no_visit_engine(tmp_path) -> None:
    assert make_visit_engine(f"sqlite:///{tmp_path / 'x.db'}") is None
