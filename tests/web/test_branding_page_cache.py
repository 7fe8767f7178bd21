"""The link page's render cache: every change the page shows is seen at once, each response has its own
CSP nonce, every visit is counted, and webhook agencies still get one link.opened event per visit."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from portal.models import Agency, ConnectLink, WebhookEvent, Workspace
from portal.services import branding, platforms, webhooks
from portal.services.audit import SYSTEM
from tests.helpers import connect, fresh, setup_link


def _nonces(response) -> tuple[set[str], str]:
    html = response.get_data(as_text=True)
    header = re.search(r"'nonce-([^']+)'", response.headers["Content-Security-Policy"]).group(1)
    return set(re.findall(r'nonce="([^"]+)"', html)), header


def test_cached_page_follows_every_change_it_shows(client, db, runtime):
    member, workspace, link, path = setup_link(db, runtime.deps)
    first = client.get(path).get_data(as_text=True)
    assert client.get(path).get_data(as_text=True).count("Acme Agency") == first.count("Acme Agency")
    db.get(Agency, member.agency_id).name = "Renamed Agency"
    db.commit()
    assert "Renamed Agency" in client.get(path).get_data(as_text=True)
    branding.save_workspace_branding(db, member.agency_id, workspace.id, {"headline": "Workspace says hi"}, SYSTEM)
    db.commit()
    assert "Workspace says hi" in client.get(path).get_data(as_text=True)
    branding.save_link_branding(db, member.agency_id, link.id, {"headline": "Link says hi"}, "de", SYSTEM)
    db.commit()
    page = client.get(path).get_data(as_text=True)
    assert "Link says hi" in page and '<html lang="de">' in page
    connect(client, path)
    assert "Verbunden: Blue Bottle Bakery" in client.get(path).get_data(as_text=True)  # the connection list
    spec = platforms.spec_for(runtime.deps.settings, "sandbox")
    platforms.save_agency_app(db, runtime.deps, member.agency_id, spec.credential_group, "own-id", "own-secret",
                              SYSTEM)
    db.commit()
    platforms.mark_app_invalid(db, member.agency_id, "sandbox", runtime.deps.now())  # the catalog view changes
    db.commit()
    assert 'action="' + path + '/connect/sandbox"' not in client.get(path).get_data(as_text=True)
    db.get(ConnectLink, link.id).revoked_at = runtime.deps.now()
    db.commit()
    assert client.get(path).status_code == 410
    db.get(ConnectLink, link.id).revoked_at = None
    fresh(db).get(Workspace, workspace.id).archived_at = runtime.deps.now()
    db.commit()
    assert client.get(path).status_code == 410


def test_each_response_has_its_own_nonce(client, db, runtime):
    *_, path = setup_link(db, runtime.deps)
    seen = set()
    for _ in range(3):
        in_page, in_header = _nonces(client.get(path))
        assert in_page == {in_header} and "csp-nonce-slot" not in in_header
        seen.add(in_header)
    assert len(seen) == 3


def test_every_visit_is_counted_and_webhook_agencies_get_each_event(client, db, runtime):
    member, _, link, path = setup_link(db, runtime.deps)
    for _ in range(4):
        assert client.get(path).status_code == 200
    runtime.view_counts.flush()  # views are written in batches
    assert fresh(db).get(ConnectLink, link.id).opened_count == 4
    webhooks.create_endpoint(db, runtime.deps, member.agency_id, "http://127.0.0.1:9/hooks", SYSTEM)
    db.commit()
    for _ in range(2):
        assert client.get(path).status_code == 200
    events = fresh(db).scalar(select(func.count()).select_from(WebhookEvent).where(WebhookEvent.type == "link.opened"))
    assert events == 2 and db.get(ConnectLink, link.id).opened_count == 6
    assert client.get(path + "x").status_code == 404
    runtime.view_counts.flush()
    assert fresh(db).get(ConnectLink, link.id).opened_count == 6
