"""Connections made from one authorization share its tokens: refreshing one refreshes them all.

Pinterest rotates its refresh token on every refresh; two boards picked in one authorization hold
the same one, so refreshing board A must not leave board B with a dead token."""

from __future__ import annotations

from portal.errors import PlatformError
from portal.models import Connection, Health
from portal.services import tokens
from portal.services.connections import read_tokens
from portal.services.tokens import RefreshResult
from tests.helpers import all_platforms_link, candidates_on, connect, connections_in, fresh, select


def _two_boards(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["pinterest"])
    select_path = connect(client, path, platform="pinterest", account="sbx-1001").headers["Location"]
    chosen = candidates_on(client, select_path)[:2]
    assert select(client, select_path, chosen).status_code == 303
    rows = connections_in(db, workspace.id)
    assert len(rows) == 2 and rows[0].grant_id == rows[1].grant_id is not None
    return [row.id for row in rows]


def test_refreshing_one_board_keeps_the_other_working(client, db, runtime, live_sandbox):
    first, second = _two_boards(client, db, runtime)
    assert tokens.refresh_connection(db, runtime.deps, first, force=True) == RefreshResult.REFRESHED
    fresh(db)
    a, b = db.get(Connection, first), db.get(Connection, second)
    assert read_tokens(runtime.deps, a) == read_tokens(runtime.deps, b)  # same live tokens, each row's own ciphertext
    assert a.refresh_token_enc != b.refresh_token_enc
    assert tokens.refresh_connection(db, runtime.deps, second, force=True) == RefreshResult.REFRESHED
    fresh(db)
    assert {db.get(Connection, i).health for i in (first, second)} == {Health.HEALTHY}


def test_a_dead_shared_grant_marks_every_connection_of_it(client, db, runtime, live_sandbox):
    first, second = _two_boards(client, db, runtime)
    live_sandbox.fail("token", "invalid_grant")
    try:
        try:
            tokens.refresh_connection(db, runtime.deps, first, force=True)
        except PlatformError as exc:
            assert exc.kind == PlatformError.TOKEN_INVALID
    finally:
        live_sandbox.reset()
    fresh(db)
    assert [db.get(Connection, i).health for i in (first, second)] == [Health.ERROR, Health.ERROR]


def test_meta_pages_each_have_their_own_grant(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["facebook"])
    select_path = connect(client, path, platform="facebook").headers["Location"]
    select(client, select_path, ["9001001", "9001002"])
    rows = connections_in(db, workspace.id)
    assert len({row.grant_id for row in rows}) == 2
