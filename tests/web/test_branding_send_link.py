"""Sending a link from the admin panel: a branded email in the link's language through the outbox (never
the URL in the audit log), rate-limited; a QR code served no-store; opened / completed / emailed counts."""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from sqlalchemy import select

from portal.models import AuditEvent, ConnectLink, OutboxEmail
from portal.services import branding, link_mail, notifications
from portal.services.audit import SYSTEM
from tests.helpers import connect, csrf_from, fresh, login, make_member, setup_link


def _email(client, link_id, address, token):
    return client.post(f"/admin/links/{link_id}/email", data={"csrf_token": token, "email": address},
                       follow_redirects=True)


def test_emailing_a_link_queues_a_branded_mail_in_the_links_language(client, db, runtime):
    member, workspace, link, path = setup_link(db, runtime.deps, language="es")
    branding.save_link_branding(db, member.agency_id, link.id, {"name": "Estudio Sol",
                                                                "support_url": "https://ayuda.example/"}, "es", SYSTEM)
    db.commit()
    login(client, member.email)
    token = csrf_from(client, f"/admin/workspaces/{workspace.id}")
    page = _email(client, link.id, "Client@Example.com", token).get_data(as_text=True)
    assert "The link was emailed to client@example.com." in page
    mail = fresh(db).scalar(select(OutboxEmail).where(OutboxEmail.to_address == "client@example.com"))
    assert mail.subject == "Estudio Sol: conecta tus cuentas"
    sent = notifications.body_to_send(runtime.deps.cipher, mail)
    assert "Abre este enlace para empezar:" in sent and "https://ayuda.example/" in sent
    assert "http://portal.test" + path in sent  # the link itself, only in what is sent
    assert path.rsplit("/", 1)[1] not in mail.body_text  # stored sealed: the outbox never holds it in clear
    assert db.get(ConnectLink, link.id).emailed_count == 1
    event = db.scalar(select(AuditEvent).where(AuditEvent.action == "link.emailed"))
    assert event.object_id == link.id and event.details["recipient"] == "client@example.com"
    token_part = path.rsplit("/", 1)[1]
    every_event = json.dumps([[e.details, e.object_id] for e in db.scalars(select(AuditEvent))])
    assert token_part not in every_event and link.token_id not in every_event
    # The list shows the counts.
    links_page = client.get("/admin/links").get_data(as_text=True)
    row = links_page[links_page.index(f'id="link-{link.id}"'):]
    assert re.search(r'class="count-emailed">1<', row) and re.search(r'class="count-opened">0<', row)


def test_bad_addresses_and_inactive_links_are_refused(client, db, runtime):
    member, workspace, link, _ = setup_link(db, runtime.deps)
    login(client, member.email)
    token = csrf_from(client, f"/admin/workspaces/{workspace.id}")
    for bad in ("not-an-email", "a@b", "x@example.com\r\nBcc: victim@example.com", ""):
        assert "Enter a valid email address." in _email(client, link.id, bad, token).get_data(as_text=True)
    client.post(f"/admin/links/{link.id}/revoke", data={"csrf_token": token})
    assert "Only an active link" in _email(client, link.id, "c@example.com", token).get_data(as_text=True)
    assert fresh(db).scalar(select(OutboxEmail)) is None and db.get(ConnectLink, link.id).emailed_count == 0


def test_emailing_is_rate_limited_per_link(client, db, runtime):
    member, workspace, link, _ = setup_link(db, runtime.deps)
    login(client, member.email)
    token = csrf_from(client, f"/admin/workspaces/{workspace.id}")
    for _ in range(link_mail.PER_LINK_PER_HOUR):
        assert "was emailed" in _email(client, link.id, "c@example.com", token).get_data(as_text=True)
    refused = _email(client, link.id, "c@example.com", token).get_data(as_text=True)
    assert "emailed 5 times in the last hour" in refused
    assert fresh(db).get(ConnectLink, link.id).emailed_count == link_mail.PER_LINK_PER_HOUR


def test_another_agency_cannot_email_or_draw_a_link(client, db, runtime):
    _, _, link, _ = setup_link(db, runtime.deps)
    intruder = make_member(db, "Intruder")
    login(client, intruder.email)
    token = csrf_from(client, "/admin/")
    assert client.post(f"/admin/links/{link.id}/email", data={"csrf_token": token, "email": "c@example.com"}
                       ).status_code == 404
    assert client.get(f"/admin/links/{link.id}/qr.svg").status_code == 404
    assert fresh(db).scalar(select(OutboxEmail)) is None


def test_email_without_csrf_is_refused(client, db, runtime):
    member, _, link, _ = setup_link(db, runtime.deps)
    login(client, member.email)
    assert client.post(f"/admin/links/{link.id}/email", data={"email": "c@example.com"}).status_code == 400
    assert fresh(db).scalar(select(OutboxEmail)) is None


def test_qr_code_is_an_svg_of_the_link_served_no_store(client, db, runtime):
    member, _, link, path = setup_link(db, runtime.deps)
    login(client, member.email)
    response = client.get(f"/admin/links/{link.id}/qr.svg")
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/svg+xml"
    assert response.headers["Cache-Control"] == "no-store"
    assert "sandbox" in response.headers["Content-Security-Policy"]
    svg = response.get_data(as_text=True)
    assert svg.startswith("<svg") and "<path" in svg and "<script" not in svg.lower()
    # The code encodes exactly the link's URL (segno's own encoder, compared module by module).
    import segno

    assert _same_matrix(svg, segno.make("http://portal.test" + path, error="m"))
    assert not _same_matrix(svg, segno.make("http://portal.test" + path + "x", error="m"))


def _same_matrix(svg: str, qr) -> bool:  # noqa: ANN001
    import io

    out = io.BytesIO()
    qr.save(out, kind="svg", scale=6, border=2, xmldecl=False, svgns=True, title="EasyConnect link")
    return out.getvalue().decode() == svg


def test_opened_and_completed_counts(client, db, runtime):
    member, workspace, link, path = setup_link(db, runtime.deps)
    client.get(path)
    connect(client, path)  # opens the page once more, then completes
    login(client, member.email)
    page = client.get(f"/admin/workspaces/{workspace.id}").get_data(as_text=True)
    row = page[page.index(f'id="link-{link.id}"'):]
    assert re.search(r'class="count-opened">2<', row) and re.search(r'class="count-completed">1 /', row)
    assert urlsplit("http://portal.test" + path).path in row
