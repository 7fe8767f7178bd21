"""The agency admin panel: accounts, sessions, CSRF, workspaces, links, connections, audit."""

from __future__ import annotations

import re

from sqlalchemy import select

from portal.models import AdminSession, AuditEvent, ConnectLink, Workspace
from tests.helpers import (
    PASSWORD,
    connect,
    connections_in,
    csrf_from,
    fresh,
    login,
    make_member,
    make_workspace,
    setup_link,
)


def _session_cookie(client) -> str | None:
    cookie = client.get_cookie("easyconnect_admin")
    return cookie.value if cookie else None


def test_sign_up_creates_an_agency_and_logs_in(client, db):
    token = csrf_from(client, "/admin/signup")
    response = client.post("/admin/signup", data={"agency_name": "Northstar", "email": "Ana@Northstar.example",
                                                  "password": "a long passphrase", "csrf_token": token})
    assert response.status_code == 302
    dashboard = client.get("/admin/").get_data(as_text=True)
    assert "Northstar" in dashboard and "ana@northstar.example" in dashboard


def test_sign_up_validates_input(client, db):
    token = csrf_from(client, "/admin/signup")
    cases = [
        ({"agency_name": "", "email": "a@b.example", "password": "a long passphrase"}, "required"),
        ({"agency_name": "X", "email": "not-an-email", "password": "a long passphrase"}, "valid email"),
        ({"agency_name": "X", "email": "a@b.example", "password": "short"}, "at least 10"),
        ({"agency_name": "Bad\u202eName", "email": "a@b.example", "password": "a long passphrase"}, "not allowed"),
        ({"agency_name": "Nul\x00", "email": "a@b.example", "password": "a long passphrase"}, "not allowed"),
        ({"agency_name": "x" * 500, "email": "a@b.example", "password": "a long passphrase"}, "at most 120"),
    ]
    for form, message in cases:
        response = client.post("/admin/signup", data={**form, "csrf_token": token})
        assert response.status_code == 400, form
        assert message in response.get_data(as_text=True), form


def test_duplicate_email_is_refused_without_a_half_written_agency(client, db):
    member = make_member(db)
    token = csrf_from(client, "/admin/signup")
    response = client.post("/admin/signup", data={"agency_name": "Copycat", "email": member.email,
                                                  "password": "a long passphrase", "csrf_token": token})
    assert response.status_code == 400
    fresh(db)
    from portal.models import Agency

    assert [a.name for a in db.scalars(select(Agency))] == ["Acme Agency"]


def test_login_rotates_the_session_and_logout_invalidates_it(app, client, db):
    member = make_member(db)
    client.get("/admin/login")
    before = _session_cookie(client)
    assert login(client, member.email).status_code == 302
    after = _session_cookie(client)
    assert after and after != before
    assert client.get("/admin/").status_code == 200

    stolen = app.test_client()
    stolen.set_cookie("easyconnect_admin", after)
    assert stolen.get("/admin/").status_code == 200

    client.post("/admin/logout", data={"csrf_token": csrf_from(client)})
    assert client.get("/admin/").status_code == 302
    # The copied cookie dies with the server-side session.
    assert stolen.get("/admin/").status_code == 302
    fresh(db)
    assert db.scalars(select(AdminSession)).all() == []


def test_wrong_password_and_unknown_email_look_the_same(client, db):
    member = make_member(db)
    wrong = login(client, member.email, "wrong password!")
    unknown = login(client, "nobody@nowhere.example", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert "do not match" in wrong.get_data(as_text=True)


def test_admin_pages_need_login(client, db):
    for path in ("/admin/", "/admin/links", "/admin/branding", "/admin/audit"):
        response = client.get(path)
        assert response.status_code == 302 and "/admin/login" in response.headers["Location"]


def test_state_changing_post_without_csrf_token_is_refused(client, db):
    member = make_member(db)
    login(client, member.email)
    response = client.post("/admin/workspaces", data={"name": "Sneaky"})
    assert response.status_code == 400
    assert "form has expired" in response.get_data(as_text=True)
    response = client.post("/admin/workspaces", data={"name": "Sneaky", "csrf_token": "forged"})
    assert response.status_code == 400
    fresh(db)
    assert db.scalars(select(Workspace)).all() == []


def test_no_state_change_on_get(client, db, runtime):
    member, workspace, link, _ = setup_link(db, runtime.deps)
    login(client, member.email)
    for path in (f"/admin/links/{link.id}/revoke", f"/admin/workspaces/{workspace.id}/archive", "/admin/logout"):
        assert client.get(path).status_code == 405
    fresh(db)
    assert db.get(ConnectLink, link.id).revoked_at is None


def test_workspace_create_rename_archive(client, db):
    member = make_member(db)
    login(client, member.email)
    token = csrf_from(client)
    created = client.post("/admin/workspaces", data={"name": "Bakery", "csrf_token": token})
    workspace_id = created.headers["Location"].rsplit("/", 1)[1]
    client.post(f"/admin/workspaces/{workspace_id}/rename", data={"name": "Bakery & Co", "csrf_token": token})
    assert "Bakery &amp; Co" in client.get(f"/admin/workspaces/{workspace_id}").get_data(as_text=True)
    client.post(f"/admin/workspaces/{workspace_id}/archive", data={"csrf_token": token})
    assert "Bakery" not in client.get("/admin/").get_data(as_text=True)
    fresh(db)
    actions = [e.action for e in db.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert actions[-3:] == ["workspace.created", "workspace.renamed", "workspace.archived"]


def test_create_link_validates_and_lists_state(client, db, runtime):
    member = make_member(db)
    workspace = make_workspace(db, member.agency_id)
    login(client, member.email)
    token = csrf_from(client)
    base = {"workspace_id": workspace.id, "platforms": ["sandbox"], "csrf_token": token}
    bad = [
        ({"lifetime_hours": "0"}, "between 1 hour and 30 days"),
        ({"lifetime_hours": "721"}, "between 1 hour and 30 days"),
        ({"lifetime_hours": "9" * 30}, "between 1 hour and 30 days"),
        ({"lifetime_hours": "abc"}, "whole number"),
        ({"lifetime_hours": "24", "max_uses": "0"}, "Uses must be"),
        ({"lifetime_hours": "24", "platforms": []}, "at least one platform"),
        ({"lifetime_hours": "24", "platforms": ["myspace"]}, "not available"),
    ]
    for form, message in bad:
        response = client.post("/admin/links", data={**base, **form}, follow_redirects=True)
        assert message in response.get_data(as_text=True), form
    fresh(db)
    assert db.scalars(select(ConnectLink)).all() == []

    response = client.post("/admin/links", data={**base, "lifetime_hours": "24", "max_uses": "2",
                                                 "label": "March onboarding"}, follow_redirects=True)
    html = response.get_data(as_text=True)
    assert "March onboarding" in html and "Active" in html and "0 / 2" in html
    url = re.search(r'data-copy="(http://portal\.test/c/[^"]+)"', html).group(1)
    assert client.get(url.removeprefix("http://portal.test")).status_code == 200

    link_id = fresh(db).scalar(select(ConnectLink.id))
    client.post(f"/admin/links/{link_id}/revoke", data={"csrf_token": token})
    html = client.get("/admin/links").get_data(as_text=True)
    assert "Revoked" in html
    assert client.get(url.removeprefix("http://portal.test")).status_code == 410


def test_connection_detail_refresh_now_and_disconnect(client, db, runtime, live_sandbox):
    member, workspace, _, path = setup_link(db, runtime.deps)
    connect(client, path, account="sbx-1003")
    [connection] = connections_in(db, workspace.id)
    connection_id, version_before = connection.id, connection.token_version
    login(client, member.email)

    page = client.get(f"/admin/workspaces/{workspace.id}").get_data(as_text=True)
    assert "Casa Aurora Studio" in page and "@casa.aurora" in page and "Healthy" in page
    detail = client.get(f"/admin/connections/{connection.id}").get_data(as_text=True)
    assert "Valid" in detail and "profile publish" in detail

    refreshes = live_sandbox.counters().get("refreshes", 0)
    token = csrf_from(client)
    response = client.post(f"/admin/connections/{connection.id}/refresh", data={"csrf_token": token},
                           follow_redirects=True)
    assert "Connection refreshed." in response.get_data(as_text=True)
    assert live_sandbox.counters()["refreshes"] == refreshes + 1
    [refreshed] = connections_in(db, workspace.id)
    assert refreshed.last_refreshed_at is not None and refreshed.token_version == version_before + 1

    revocations = live_sandbox.counters().get("revocations", 0)
    client.post(f"/admin/connections/{connection_id}/disconnect", data={"csrf_token": token})
    assert connections_in(db, workspace.id) == []
    assert live_sandbox.counters()["revocations"] == revocations + 1
    assert client.get(f"/admin/connections/{connection_id}").status_code == 404


def test_branding_validates_colour_and_logo(client, db):
    member = make_member(db)
    login(client, member.email)
    token = csrf_from(client)
    bad = client.post("/admin/branding", data={"name": "Acme", "color": "red;}</style><script>", "csrf_token": token})
    assert "Colour must look like" in bad.get_data(as_text=True)
    import io

    fake_png = (io.BytesIO(b"<svg onload=alert(1)>"), "logo.png")
    bad_logo = client.post("/admin/branding", data={"name": "Acme", "color": "#112233", "logo": fake_png,
                                                    "csrf_token": token}, content_type="multipart/form-data")
    assert "must be a PNG, JPEG, GIF or WebP" in bad_logo.get_data(as_text=True)
    from portal.demo_assets import demo_logo_png

    ok = client.post("/admin/branding", data={"name": "Acme Social", "color": "#112233",
                                              "logo": (io.BytesIO(demo_logo_png()), "logo.png"), "csrf_token": token},
                     content_type="multipart/form-data", follow_redirects=True)
    assert "Branding saved." in ok.get_data(as_text=True)
    logo = client.get(f"/brand/{member.agency_id}/logo")
    assert logo.status_code == 200 and logo.headers["Content-Type"] == "image/png"
    assert logo.headers["X-Content-Type-Options"] == "nosniff"


def test_huge_form_is_refused_with_413(client, db):
    member = make_member(db)
    login(client, member.email)
    response = client.post("/admin/workspaces", data={"name": "x" * (3 * 1024 * 1024), "csrf_token": "x"})
    assert response.status_code == 413
    assert "too large" in response.get_data(as_text=True)


def test_admin_pages_refuse_framing(client, db):
    member = make_member(db)
    login(client, member.email)
    response = client.get("/admin/")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_login_is_rate_limited(settings, tmp_path):
    from dataclasses import replace

    from portal.app import create_app

    app = create_app(replace(settings, login_rate_limit="3 per minute"))
    try:
        client = app.test_client()
        statuses = [login(client, "nobody@nowhere.example", "wrong password!").status_code for _ in range(5)]
        assert statuses[:3] == [401, 401, 401] and statuses[3:] == [429, 429]
        refused = login(client, "nobody@nowhere.example", "wrong password!")
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "60"
    finally:
        app.extensions["easyconnect"].close()


def test_nul_bytes_get_a_clear_400(client, db):
    for path in ("/brand/%00/logo", "/c/abc%00def", "/admin/login?next=%00"):
        response = client.get(path)
        assert response.status_code == 400, path
        assert "not allowed" in response.get_data(as_text=True)
    response = client.post("/admin/login", data={"email": "a\x00@b.example", "password": "x"})
    assert response.status_code == 400


def test_database_outage_is_a_clear_503(settings, db, runtime):
    from dataclasses import replace

    from portal.app import create_app
    from tests.helpers import setup_link

    *_, path = setup_link(db, runtime.deps)
    down = replace(settings, database_url="postgresql+psycopg://postgres@127.0.0.1:1/none")
    app = create_app(down)
    try:
        client = app.test_client()
        response = client.get(path)
        assert response.status_code == 503
        assert "briefly unavailable" in response.get_data(as_text=True)
        assert client.get("/healthz").status_code == 503
    finally:
        app.extensions["easyconnect"].close()
