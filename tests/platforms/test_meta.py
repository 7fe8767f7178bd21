"""Meta's platforms end to end against the sandbox: Facebook Pages, Instagram (both ways), Threads."""

from __future__ import annotations

from datetime import timedelta

from portal.models import Connection
from portal.services import tokens
from portal.services.tokens import RefreshResult
from tests.helpers import (
    all_platforms_link,
    candidates_on,
    connect,
    connections_in,
    fresh,
    select,
)


def test_facebook_pages_are_picked_and_each_gets_its_page_token(client, db, runtime, live_sandbox):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["facebook"])
    before = live_sandbox.counters()
    response = connect(client, path, platform="facebook", account="sbx-1001")
    assert response.status_code == 303 and "/select/" in response.headers["Location"]
    select_path = response.headers["Location"]
    assert candidates_on(client, select_path) == ["9001001", "9001002"]
    assert connections_in(db, workspace.id) == []  # nothing stored before the choice

    done = select(client, select_path, ["9001001", "9001002"])
    assert done.status_code == 303 and "/done/" in done.headers["Location"]
    page = client.get(done.headers["Location"]).get_data(as_text=True)
    assert "Blue Bottle Bakery" in page and "Blue Bottle Catering" in page

    rows = sorted(connections_in(db, workspace.id), key=lambda c: c.external_id)
    assert [(c.external_id, c.account_kind, c.parent_external_id) for c in rows] == [
        ("9001001", "page", "101001"), ("9001002", "page", "101001")]
    assert rows[0].access_token_enc != rows[1].access_token_enc  # a token per Page
    assert all(c.refresh_token_enc is None and c.token_expires_at is None for c in rows)
    after = live_sandbox.counters()
    assert after["exchanges"] == before.get("exchanges", 0) + 1  # short -> long-lived user token
    # A Page token is not refreshable: nothing to do, and the health check passes with it.
    assert tokens.refresh_connection(db, runtime.deps, rows[0].id, force=True) == RefreshResult.NOT_REFRESHABLE


def test_selection_can_be_replayed_only_once(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["facebook"])
    select_path = connect(client, path, platform="facebook").headers["Location"]
    assert select(client, select_path, ["9001001"]).status_code == 303
    again = client.post(select_path, data={"account": ["9001002"]})
    assert again.status_code == 400
    assert [c.external_id for c in connections_in(db, workspace.id)] == ["9001001"]


def test_choosing_an_account_that_was_not_offered_is_refused(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["facebook"])
    select_path = connect(client, path, platform="facebook").headers["Location"]
    assert client.post(select_path, data={"account": ["9002001"]}).status_code == 400
    assert client.post(select_path, data={}).status_code == 400
    assert connections_in(db, workspace.id) == []
    assert select(client, select_path, ["9001002"]).status_code == 303  # still open after bad input


def test_abandoned_selection_expires_without_a_connection(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["facebook"])
    select_path = connect(client, path, platform="facebook").headers["Location"]
    from sqlalchemy import select as sql_select

    from portal.models import ConnectAttempt

    fresh(db)
    attempt = db.scalar(sql_select(ConnectAttempt))
    assert attempt.pending_enc.startswith("v1.") and attempt.candidates
    attempt.selection_expires_at = runtime.deps.now() - timedelta(seconds=1)
    db.commit()
    response = client.post(select_path, data={"account": ["9001001"]})
    assert response.status_code == 410 and "expired" in response.get_data(as_text=True)
    assert connections_in(db, workspace.id) == []


def test_user_without_pages_is_told_plainly(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["facebook"])
    response = connect(client, path, platform="facebook", account="sbx-1003")
    assert response.status_code == 400
    assert "could not find any page" in response.get_data(as_text=True)
    assert connections_in(db, workspace.id) == []


def test_unticked_facebook_permission_is_named_and_reconsent_offered(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["facebook"])
    response = connect(client, path, platform="facebook",
                       scopes=["pages_show_list", "pages_read_engagement", "business_management"])
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "pages_manage_posts" in html and "Allow the missing permissions" in html
    assert connections_in(db, workspace.id) == []
    reconsent = client.post(path + "/connect/facebook", data={"reconsent": "1"})
    assert "auth_type=rerequest" in reconsent.headers["Location"]


def test_instagram_via_facebook_lists_linked_business_accounts(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["instagram"])
    select_path = connect(client, path, platform="instagram", account="sbx-1001").headers["Location"]
    assert candidates_on(client, select_path) == ["17841401001"]
    assert select(client, select_path, ["17841401001"]).status_code == 303
    [row] = connections_in(db, workspace.id)
    assert (row.platform, row.external_id, row.handle, row.extra) == (
        "instagram", "17841401001", "bluebottlebakery.ig", {"page_id": "9001001"})


def test_instagram_login_gets_a_long_lived_token_and_refreshes_by_exchange(client, db, runtime, live_sandbox):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["instagram-standalone"])
    assert connect(client, path, platform="instagram-standalone", account="sbx-1002").status_code == 303
    [row] = connections_in(db, workspace.id)
    assert (row.external_id, row.handle) == ("1784141002", "northwind")
    assert row.refresh_token_enc is None
    assert row.token_expires_at > runtime.deps.now() + timedelta(days=59)
    assert row.scopes == "instagram_business_basic instagram_business_content_publish"
    refreshes, version = live_sandbox.counters().get("refreshes", 0), row.token_version
    assert tokens.refresh_connection(db, runtime.deps, row.id, force=True) == RefreshResult.REFRESHED
    assert live_sandbox.counters()["refreshes"] == refreshes + 1
    fresh(db)
    assert db.get(Connection, row.id).token_version == version + 1


def test_threads_connects_and_refreshes(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["threads"])
    assert connect(client, path, platform="threads", account="sbx-1003").status_code == 303
    [row] = connections_in(db, workspace.id)
    assert (row.external_id, row.handle, row.display_name) == ("301003", "casa.aurora", "Casa Aurora Studio")
    assert tokens.refresh_connection(db, runtime.deps, row.id, force=True) == RefreshResult.REFRESHED


def test_x_rotating_refresh(client, db, runtime, live_sandbox):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["x"])
    assert connect(client, path, platform="x", account="sbx-1002").status_code == 303
    [row] = connections_in(db, workspace.id)
    assert (row.external_id, row.handle) == ("141002", "northwind")
    assert row.token_expires_at < runtime.deps.now() + timedelta(hours=2, minutes=1)
    assert tokens.refresh_connection(db, runtime.deps, row.id, force=True) == RefreshResult.REFRESHED
    assert tokens.refresh_connection(db, runtime.deps, row.id, force=True) == RefreshResult.REFRESHED


def test_x_spent_refresh_token_is_reported_as_needing_reconnect(client, db, runtime, live_sandbox):
    from portal.errors import PlatformError

    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["x"])
    connect(client, path, platform="x")
    [row] = connections_in(db, workspace.id)
    live_sandbox.fail("token", "invalid_grant")
    try:
        try:
            tokens.refresh_connection(db, runtime.deps, row.id, force=True)
        except PlatformError as exc:
            kind = exc.kind
    finally:
        live_sandbox.reset()
    # X answers invalid_request "Value passed for the token was invalid." for a spent token: it must not be
    # mistaken for temporary forever, nor for a revocation without a re-read (the re-read found no winner).
    assert kind in (PlatformError.TOKEN_INVALID, PlatformError.TEMPORARY)
