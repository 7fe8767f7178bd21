"""The migrations build exactly the schema the models describe, on both databases, and step back down."""

from __future__ import annotations

from datetime import UTC, datetime

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


def test_claims_older_than_domain_proofs_get_a_challenge_token_of_their_own(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    upgrade(url, "0015")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        agencies = sa.Table("agencies", sa.MetaData(), autoload_with=conn)  # the table as 0015 left it
        for agency_id, domain, token in (("a", "connect.a.example", None), ("b", "connect.b.example", None),
                                         ("c", "connect.c.example", "kept-token"), ("d", None, None)):
            conn.execute(agencies.insert().values({**_required_values(agencies), "id": agency_id, "name": agency_id,
                                                   "custom_domain": domain, "custom_domain_token": token}))
    upgrade(url)
    with engine.connect() as conn:
        tokens = dict(conn.execute(sa.text("SELECT id, custom_domain_token FROM agencies")).all())
    engine.dispose()
    assert tokens["c"] == "kept-token" and tokens["d"] is None
    assert len(tokens["a"]) >= 32 and len(tokens["b"]) >= 32 and tokens["a"] != tokens["b"]


def _required_values(table: sa.Table) -> dict:
    """A value for every column that must have one and has no server default."""
    samples = {sa.Integer: 0, sa.Boolean: False, sa.DateTime: datetime.now(UTC), sa.JSON: []}
    return {column.name: next((v for kind, v in samples.items() if isinstance(column.type, kind)), "x")
            for column in table.columns if not column.nullable and column.server_default is None}
