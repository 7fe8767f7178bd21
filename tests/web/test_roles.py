"""Roles in the admin panel: every route (found in the URL map, not listed by hand) for every role."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from agency_admin import roles
from portal.models import ApiKey, Connection, ConnectLink, MemberInvite, Workspace
from portal.services import team
from tests.helpers import connect, connections_in, csrf_from, fresh, make_link, make_workspace
from tests.web.test_team import team_of

BOGUS = "0" * 32


def _admin_routes(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("agency_admin.") and rule.endpoint not in roles.PUBLIC:
            yield rule, sorted(rule.methods - {"HEAD", "OPTIONS"})


def test_every_admin_endpoint_has_an_explicit_role(app):
    endpoints = {rule.endpoint for rule, _ in _admin_routes(app)}
    assert endpoints - set(roles.REQUIRED) == set(), "classify these routes in agency_admin/roles.py"
    assert set(roles.REQUIRED) - endpoints == set(), "stale entries in agency_admin/roles.py"
    assert set(roles.REQUIRED.values()) <= set(team.ROLES)


def test_each_role_reaches_exactly_its_routes(app, client, db):
    members = team_of(app, client, db)
    checked = 0
    for role, (_, browser) in members.items():
        token = csrf_from(browser, "/admin/")
        for rule, methods in _admin_routes(app):
            if rule.endpoint == "agency_admin.logout":
                continue  # would end the session the loop needs; covered below
            url = rule.build({name: BOGUS for name in rule.arguments}, append_unknown=False)[1]
            for method in methods:
                # Bogus ids and empty forms: an allowed request fails validation or is a 404, never a 403,
                # and nothing changes; a refused one is a 403 before the view runs.
                response = browser.open(url, method=method, data={"csrf_token": token} if method == "POST" else None)
                expected_allowed = team.at_least(role, roles.REQUIRED[rule.endpoint])
                assert (response.status_code != 403) == expected_allowed, (role, method, url, response.status_code)
                checked += 1
    assert checked >= 3 * 50
    for _, browser in members.values():  # and everyone may log out
        assert browser.post("/admin/logout", data={"csrf_token": csrf_from(browser, "/admin/")}).status_code == 302


def test_a_viewer_reads_but_changes_nothing(app, client, db, runtime):
    members = team_of(app, client, db)
    owner, _ = members["owner"]
    _, viewer = members["viewer"]
    workspace = make_workspace(fresh(db), owner.agency_id)
    link, path = make_link(db, runtime.deps, workspace)
    connect(app.test_client(), path)
    [connection] = connections_in(db, workspace.id)
    token = csrf_from(viewer, "/admin/")
    for url in ("/admin/", f"/admin/workspaces/{workspace.id}", f"/admin/connections/{connection.id}",
                "/admin/connections", "/admin/links", "/admin/audit", "/admin/team", "/admin/notifications"):
        assert viewer.get(url).status_code == 200, url
    attempts = [
        ("/admin/links", {"workspace_id": workspace.id, "platforms": ["sandbox"], "lifetime_hours": "24"}),
        (f"/admin/connections/{connection.id}/reconnect-link", {}),
        (f"/admin/connections/{connection.id}/disconnect", {}),
        (f"/admin/connections/{connection.id}/refresh", {}),
        (f"/admin/connections/{connection.id}/active", {"active": "0"}),
        (f"/admin/links/{link.id}/revoke", {}),
        (f"/admin/workspaces/{workspace.id}/rename", {"name": "pwned"}),
        (f"/admin/workspaces/{workspace.id}/delete", {"confirm_name": workspace.name}),
        ("/admin/api-keys", {"name": "mine", "scope": "read"}),
        ("/admin/team/invites", {"email": "friend@team.example", "role": "owner"}),
        ("/admin/branding", {"name": "pwned", "color": "#000000"}),
        ("/admin/agency/delete", {"confirm_name": "Team Agency"}),
    ]
    for url, form in attempts:
        assert viewer.post(url, data={**form, "csrf_token": token}).status_code == 403, url
    page = viewer.get(f"/admin/connections/{connection.id}").get_data(as_text=True)
    assert "access_token" not in page
    nav = viewer.get("/admin/").get_data(as_text=True)
    assert "/admin/api-keys" not in nav and "/admin/branding" not in nav
    fresh(db)
    assert db.scalar(select(func.count()).select_from(ConnectLink)) == 1
    assert db.get(ConnectLink, link.id).revoked_at is None
    assert db.get(Connection, connection.id).active is True
    assert db.get(Workspace, workspace.id).name == "Client Co" and db.get(Workspace, workspace.id).deleted_at is None
    assert db.scalars(select(ApiKey)).all() == []
    assert db.scalar(select(MemberInvite).where(MemberInvite.email == "friend@team.example")) is None


def test_an_admin_manages_everything_but_the_team_and_the_agency(app, client, db, runtime):
    members = team_of(app, client, db)
    owner, _ = members["owner"]
    _, admin = members["admin"]
    viewer_member, _ = members["viewer"]
    token = csrf_from(admin, "/admin/")
    workspace = make_workspace(fresh(db), owner.agency_id)
    created = admin.post("/admin/links", data={"workspace_id": workspace.id, "platforms": ["sandbox"],
                                               "lifetime_hours": "24", "csrf_token": token})
    assert created.status_code == 302
    assert admin.post("/admin/api-keys", data={"name": "ci", "scope": "read_write", "csrf_token": token}
                      ).status_code == 201
    for url, form in ((f"/admin/team/members/{viewer_member.id}/role", {"role": "owner"}),
                      (f"/admin/team/members/{viewer_member.id}/remove", {}),
                      ("/admin/team/invites", {"email": "x@team.example", "role": "viewer"}),
                      ("/admin/agency/delete", {"confirm_name": "Team Agency"})):
        assert admin.post(url, data={**form, "csrf_token": token}).status_code == 403, url
    fresh(db)
    assert db.scalar(select(func.count()).select_from(ConnectLink)) == 1
    assert db.get(type(viewer_member), viewer_member.id).role == "viewer"


def test_role_changes_apply_to_the_next_request(app, client, db):
    members = team_of(app, client, db, roles=("admin",))
    admin_member, admin = members["admin"]
    assert admin.get("/admin/api-keys").status_code == 200
    client.post(f"/admin/team/members/{admin_member.id}/role", data={"role": "viewer",
                                                                     "csrf_token": csrf_from(client, "/admin/team")})
    assert admin.get("/admin/api-keys").status_code == 403
    assert admin.get("/admin/").status_code == 200


def test_viewer_cannot_create_api_keys_even_through_the_service(db, runtime):
    from portal.errors import ValidationFailed
    from portal.services import api_keys
    from portal.services.audit import SYSTEM
    from tests.helpers import make_member

    member = make_member(db)
    try:
        api_keys.create_key(db, member.agency_id, "x", "read", SYSTEM, runtime.deps.now() + timedelta(0),
                            creator_role="viewer")
    except ValidationFailed as exc:
        assert "Viewers" in exc.public_message
    else:
        raise AssertionError("a viewer created a key")
