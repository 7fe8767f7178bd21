"""The client's self-service page of a link: only what this link connected, health and reconnect-by
date, reconnect and remove (CSRF-protected; revoked at the sandbox; the agency is told)."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from portal.models import Connection, ConnectLink, Notification, WebhookEvent
from portal.services import webhooks
from portal.services.audit import SYSTEM
from tests.helpers import connect, connections_in, fresh, make_link, setup_link


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_manage_lists_only_what_this_link_connected(client, db, runtime):
    _, workspace, link, path = setup_link(db, runtime.deps)
    other_link, other_path = make_link(db, runtime.deps, workspace)
    connect(client, path, account="sbx-1001")
    connect(client, other_path, account="sbx-1002")  # same workspace, another link
    for row in connections_in(db, workspace.id):  # the platform says when a new sign-in is due
        row.refresh_expires_at = runtime.deps.now() + timedelta(days=40)
    db.commit()
    html = client.get(path + "/manage").get_data(as_text=True)
    mine = {c.display_name: c for c in connections_in(db, workspace.id)}
    assert len(mine) == 2
    ours = next(c for c in mine.values() if c.connected_via_link_id == link.id)
    theirs = next(c for c in mine.values() if c.connected_via_link_id == other_link.id)
    assert ours.display_name in html and theirs.display_name not in html
    assert "Working" in html and "Reconnect by" in html and f'action="{path}/connect/sandbox"' in html
    assert "access_token" not in html and "Bearer" not in html
    assert client.get(path).get_data(as_text=True).count(f'href="{path}/manage"') == 1  # linked from the page


def test_remove_revokes_at_the_platform_deletes_tokens_and_tells_the_agency(client, db, runtime, live_sandbox):
    member, workspace, link, path = setup_link(db, runtime.deps)
    # Deliveries are sent later by workers; the event in the outbox is what this test checks.
    webhooks.create_endpoint(db, runtime.deps, member.agency_id, "http://127.0.0.1:9/hooks", SYSTEM)
    db.commit()
    connect(client, path)
    connection = connections_in(db, workspace.id)[0]
    page = client.get(path + "/manage").get_data(as_text=True)
    before = live_sandbox.counters().get("revocations", 0)
    response = client.post(f"{path}/manage/{connection.id}/remove", data={"csrf_token": _csrf(page)})
    assert response.status_code == 303 and response.headers["Location"].endswith("/manage?removed=1")
    assert live_sandbox.counters()["revocations"] == before + 1
    assert connections_in(db, workspace.id) == []
    notice = db.scalar(select(Notification).where(Notification.agency_id == member.agency_id,
                                                  Notification.kind == "client_removed"))
    assert notice is not None and "removed" in notice.title
    assert db.scalar(select(WebhookEvent).where(WebhookEvent.type == "connection.deleted")) is not None
    after = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "access revoked" in after and "Nothing has been connected through this link yet." in after


def test_remove_needs_the_csrf_token(client, db, runtime):
    _, workspace, _, path = setup_link(db, runtime.deps)
    connect(client, path)
    connection = connections_in(db, workspace.id)[0]
    client.get(path + "/manage")
    assert client.post(f"{path}/manage/{connection.id}/remove").status_code == 400
    assert client.post(f"{path}/manage/{connection.id}/remove", data={"csrf_token": "forged"}).status_code == 400
    other_browser = client.application.test_client()  # a token from one session is worthless in another
    page = client.get(path + "/manage").get_data(as_text=True)
    assert other_browser.post(f"{path}/manage/{connection.id}/remove",
                              data={"csrf_token": _csrf(page)}).status_code == 400
    assert len(connections_in(db, workspace.id)) == 1


def test_a_link_cannot_remove_what_it_did_not_connect(client, db, runtime):
    _, workspace, _, path = setup_link(db, runtime.deps)
    _, other_workspace, _, other_agency_path = setup_link(db, runtime.deps)
    second_link, second_path = make_link(db, runtime.deps, workspace)
    connect(client, other_agency_path)  # another agency's connection
    connect(client, second_path, account="sbx-1002")  # same workspace, another link
    connect(client, path, account="sbx-1003")  # this link's own, so its page has a form (and a CSRF token)
    foreign = connections_in(db, other_workspace.id)[0]
    sibling = next(c for c in connections_in(db, workspace.id) if c.connected_via_link_id == second_link.id)
    token = _csrf(client.get(path + "/manage").get_data(as_text=True))
    for target in (foreign, sibling):
        assert client.post(f"{path}/manage/{target.id}/remove", data={"csrf_token": token}).status_code == 404
    assert fresh(db).get(Connection, foreign.id) is not None and db.get(Connection, sibling.id) is not None
    assert sibling.connected_via_link_id == second_link.id


def test_revoked_or_expired_link_shows_nothing(client, db, runtime):
    _, workspace, link, path = setup_link(db, runtime.deps)
    connect(client, path)
    name = connections_in(db, workspace.id)[0].display_name
    token = _csrf(client.get(path + "/manage").get_data(as_text=True))
    connection_id = connections_in(db, workspace.id)[0].id
    db.get(ConnectLink, link.id).revoked_at = runtime.deps.now()
    db.commit()
    response = client.get(path + "/manage")
    assert response.status_code == 410 and name not in response.get_data(as_text=True)
    assert client.post(f"{path}/manage/{connection_id}/remove", data={"csrf_token": token}).status_code == 410
    db.get(ConnectLink, link.id).revoked_at = None
    db.get(ConnectLink, link.id).expires_at = runtime.deps.now() - timedelta(seconds=1)
    db.commit()
    assert client.get(path + "/manage").status_code == 410
    assert client.get("/c/forged-token/manage").status_code == 404
    assert len(connections_in(db, workspace.id)) == 1


def test_manage_page_sends_no_referrer_and_no_store(client, db, runtime):
    *_, path = setup_link(db, runtime.deps)
    response = client.get(path + "/manage")
    assert response.headers["Cache-Control"] == "no-store" and response.headers["Referrer-Policy"] == "no-referrer"
