"""The migrations build exactly the schema the models describe, on both databases, and step back down."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from portal.db import Base
from portal.migrate import downgrade, upgrade


def _differences(url: str) -> list:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    # database_url has been upgraded to head by the fixture.
    assert _differences(database_url) == []


def test_migrations_step_down_and_up_again(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'steps.db'}"
    upgrade(url)
    downgrade(url, "base")
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    upgrade(url)
    assert _differences(url) == []
