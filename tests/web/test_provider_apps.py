"""Provider apps: an agency's own OAuth app (white-label consent), encrypted, never shown again."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select

from portal.models import ProviderApp
from portal.services import Deps, platforms
from tests.helpers import all_platforms_link, csrf_from, fresh, login, make_member


def test_agency_app_is_used_on_the_consent_screen_and_its_secret_never_shown(client, db, runtime):
    member, _, _, path = all_platforms_link(db, runtime.deps, ["x"])
    login(client, member.email)
    token = csrf_from(client, "/admin/platforms")
    page = client.get("/admin/platforms").get_data(as_text=True)
    assert "http://portal.test/oauth/callback/x" in page  # the exact redirect URI to register

    saved = client.post("/admin/platforms/x", data={"client_id": "acme-x-app", "client_secret": "acme-x-secret-123",
                                                    "csrf_token": token}, follow_redirects=True)
    assert "will not be shown again" in saved.get_data(as_text=True)
    assert "acme-x-secret-123" not in client.get("/admin/platforms").get_data(as_text=True)
    fresh(db)
    row = db.scalar(select(ProviderApp))
    assert row.client_id == "acme-x-app" and "acme-x-secret-123" not in row.client_secret_enc

    start = client.post(path + "/connect/x")
    assert "client_id=acme-x-app" in start.headers["Location"]

    client.post("/admin/platforms/x/remove", data={"csrf_token": token})
    start = client.post(path + "/connect/x")
    assert "client_id=easyconnect-demo" in start.headers["Location"]


def test_platform_without_any_app_is_not_offered_and_the_admin_says_why(db, runtime):
    member = make_member(db)
    real = Deps(**{**runtime.deps.__dict__, "settings": replace(runtime.settings, sandbox_platforms=False,
                                                                   operator_apps={"x": ("op-id", "op-secret")})})
    statuses = {s.spec.name: s for s in platforms.availability(db, real, member.agency_id)}
    assert statuses["x"].source == "operator"
    assert statuses["facebook"].source is None and "No app is set up" in statuses["facebook"].reason
    assert statuses["bluesky"].source == "operator"  # app passwords need no app
    offered = platforms.offered(db, real, member.agency_id)
    assert "x" in offered and "facebook" not in offered
    assert offered["x"].token_url == "https://api.x.com/2/oauth2/token"  # real URLs when not sandboxed


def test_saving_an_app_validates_input_and_is_tenant_scoped(app, client, db, runtime):
    member = make_member(db)
    login(client, member.email)
    token = csrf_from(client)
    for form in ({"client_id": "", "client_secret": "s"}, {"client_id": "has space", "client_secret": "s"},
                 {"client_id": "id", "client_secret": ""}):
        page = client.post("/admin/platforms/x", data={**form, "csrf_token": token}, follow_redirects=True)
        assert "flash-error" in page.get_data(as_text=True)
    assert client.post("/admin/platforms/myspace", data={"client_id": "a", "client_secret": "b",
                                                         "csrf_token": token}, follow_redirects=True).status_code == 200
    fresh(db)
    assert db.scalars(select(ProviderApp)).all() == []
    client.post("/admin/platforms/x", data={"client_id": "mine", "client_secret": "s", "csrf_token": token})
    rival = make_member(fresh(db), "Rival")
    other = app.test_client()
    login(other, rival.email)
    other.post("/admin/platforms/x/remove", data={"csrf_token": csrf_from(other)})
    fresh(db)
    assert [r.client_id for r in db.scalars(select(ProviderApp))] == ["mine"]
