"""Link page views are counted in memory and written once a second in one transaction."""

from __future__ import annotations

import time

import sqlalchemy as sa

from portal.models import ConnectLink
from portal.services.link_page import ViewCounts
from tests.helpers import fresh, setup_link


def test_views_are_counted_in_memory_then_written_together(client, db, runtime):
    _, _, link, path = setup_link(db, runtime.deps)
    for _ in range(3):
        assert client.get(path).status_code == 200
    assert fresh(db).get(ConnectLink, link.id).opened_count == 0  # not yet written: no write per view
    runtime.view_counts.flush()
    assert fresh(db).get(ConnectLink, link.id).opened_count == 3
    runtime.view_counts.flush()  # nothing pending: nothing written twice
    assert fresh(db).get(ConnectLink, link.id).opened_count == 3


def test_a_failed_write_keeps_the_counts_for_the_next_flush(client, db, runtime, tmp_path):
    _, _, link, _ = setup_link(db, runtime.deps)
    broken = sa.create_engine(f"sqlite:///{tmp_path / 'missing' / 'nowhere.db'}")  # cannot be opened
    counts = ViewCounts(broken)
    counts.add(link.id)
    counts.add(link.id)
    counts.flush()  # fails: logged, kept
    counts._engine = runtime.engine  # the database is back
    counts.flush()
    assert fresh(db).get(ConnectLink, link.id).opened_count == 2


def test_the_admin_and_the_api_show_views_at_once(client, db, runtime):
    from tests.helpers import login

    member, workspace, link, path = setup_link(db, runtime.deps)
    client.get(path)
    login(client, member.email)
    page = client.get(f"/admin/workspaces/{workspace.id}").get_data(as_text=True)
    row = page[page.index(f'id="link-{link.id}"'):]
    assert 'class="count-opened">1<' in row


def test_a_background_writer_writes_views_within_its_interval(client, db, runtime):
    _, _, link, _ = setup_link(db, runtime.deps)
    counts = ViewCounts(runtime.engine, interval=0.05)
    try:
        counts.add(link.id)
        deadline = time.monotonic() + 5
        while fresh(db).get(ConnectLink, link.id).opened_count != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fresh(db).get(ConnectLink, link.id).opened_count == 1
    finally:
        counts.close()


def test_a_pooled_connection_that_died_does_not_fail_the_link_page(client, db, runtime):
    """The link page's read goes to the driver directly (portal.db.DirectSelect) on an engine that does not
    ping: a dead connection must still be noticed, dropped and the read retried on a new one."""
    from portal.db import run_direct

    *_, path = setup_link(db, runtime.deps)
    assert client.get(path).status_code == 200
    engine = runtime.direct_engine
    if engine.dialect.name == "postgresql":
        pid = run_direct(engine, lambda c: c.execute(sa.text("SELECT pg_backend_pid()")).scalar())
        assert fresh(db).execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
        db.commit()
    else:
        run_direct(engine, lambda c: c.connection.driver_connection.close())
    response = client.get(path)
    assert response.status_code == 200 and "briefly unavailable" not in response.get_data(as_text=True)
