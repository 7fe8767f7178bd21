"""Alembic environment: the URL comes from portal.migrate (or DATABASE_URL for the alembic CLI)."""

from __future__ import annotations

import os

from alembic import context

from portal import models  # noqa: F401  (registers the tables on Base.metadata)
from portal.db import Base, make_engine

config = context.config
url = config.attributes.get("database_url") or os.environ["DATABASE_URL"]
engine = make_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
