"""Notifications: once per state change (never per failed attempt), with a reconnect link, mailed."""

from __future__ import annotations

import socketserver
import threading
from datetime import timedelta

from sqlalchemy import select, update

from portal.errors import PlatformError
from portal.models import Connection, Notification, OutboxEmail
from portal.services import notifications, sweeps, tokens
from tests.helpers import connect, connections_in, csrf_from, fresh, login, setup_link


def _connected(client, db, runtime, account="sbx-1001"):
    member, workspace, _, path = setup_link(db, runtime.deps)
    connect(client, path, account=account)
    [row] = connections_in(db, workspace.id)
    return member, path, row.id


def _fail(db, runtime, live_sandbox, cid, mode):
    live_sandbox.fail("token", mode)
    try:
        tokens.refresh_connection(db, runtime.deps, cid, force=True)
    except PlatformError:
        pass
    finally:
        live_sandbox.reset()


def test_one_notice_per_state_change_with_a_reconnect_link(client, db, runtime, live_sandbox):
    member, _, cid = _connected(client, db, runtime)
    for mode in ("server_error", "rate_limited", "server_error"):
        _fail(db, runtime, live_sandbox, cid, mode)
    assert fresh(db).scalars(select(Notification)).all() == []  # temporary trouble: retried quietly
    _fail(db, runtime, live_sandbox, cid, "invalid_grant")
    _fail(db, runtime, live_sandbox, cid, "invalid_grant")  # still broken: not told again
    [notice] = fresh(db).scalars(select(Notification)).all()
    assert notice.kind == "health_error" and notice.reconnect_link_id
    [mail] = db.scalars(select(OutboxEmail)).all()
    assert mail.to_address == member.email and "needs reconnecting" in mail.subject
    # the reconnect link is the client's credential: only in the email as sent, never stored in clear
    assert "/c/" in notifications.body_to_send(runtime.deps.cipher, mail) and "/c/" not in mail.body_text

    login(client, member.email)
    page = client.get("/admin/notifications").get_data(as_text=True)
    assert 'class="count">1<' in page and "needs reconnecting" in page and "Reconnect link" in page
    client.post("/admin/notifications/read", data={"csrf_token": csrf_from(client, "/admin/notifications")})
    assert 'class="count"' not in client.get("/admin/notifications").get_data(as_text=True)


def test_reconnecting_a_broken_connection_is_told_as_recovered(client, db, runtime, live_sandbox):
    _, path, cid = _connected(client, db, runtime)
    _fail(db, runtime, live_sandbox, cid, "invalid_grant")
    connect(client, path, account="sbx-1001")
    kinds = sorted(n.kind for n in fresh(db).scalars(select(Notification)))
    assert kinds == ["health_error", "recovered"]


def test_expiry_warnings_at_14_7_and_1_days_each_once(client, db, runtime):
    _, _, cid = _connected(client, db, runtime)
    now = runtime.deps.now()
    db.execute(update(Connection).where(Connection.id == cid).values(
        refresh_token_enc=None, refresh_due_at=None, token_expires_at=now + timedelta(days=5)))
    db.commit()
    assert sweeps.warn_expiring(db, runtime.deps, now) == 1
    db.commit()
    assert sweeps.warn_expiring(db, runtime.deps, now) == 0
    db.execute(update(Connection).where(Connection.id == cid).values(token_expires_at=now + timedelta(hours=20)))
    db.commit()
    assert sweeps.warn_expiring(db, runtime.deps, now) == 1
    db.commit()
    assert sorted(n.kind for n in fresh(db).scalars(select(Notification))) == ["expiring_1", "expiring_7"]


class _SMTPHandler(socketserver.StreamRequestHandler):
    received: list[bytes] = []

    def handle(self) -> None:
        self.wfile.write(b"220 test ready\r\n")
        data = False
        while line := self.rfile.readline():
            if data:
                if line == b".\r\n":
                    data = False
                    self.wfile.write(b"250 queued\r\n")
                else:
                    self.received.append(line)
                continue
            verb = line[:4].upper()
            if verb == b"DATA":
                data = True
                self.wfile.write(b"354 go on\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


def test_outbox_is_sent_over_smtp(client, db, runtime, live_sandbox):
    _, _, cid = _connected(client, db, runtime)
    _fail(db, runtime, live_sandbox, cid, "invalid_grant")
    server = socketserver.TCPServer(("127.0.0.1", 0), _SMTPHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        sent = notifications.send_outbox(fresh(db), f"smtp://127.0.0.1:{server.server_address[1]}",
                                         "Agency <no-reply@agency.example>", runtime.deps.now(),
                                         cipher=runtime.deps.cipher)
        db.commit()
    finally:
        server.shutdown()
        server.server_close()
    assert sent == 1
    assert b"needs reconnecting" in b"".join(_SMTPHandler.received)
    assert fresh(db).scalar(select(OutboxEmail)).sent_at is not None


def test_demo_controls_and_check_now_show_error_and_degraded(client, db, runtime, live_sandbox):
    member, _, cid = _connected(client, db, runtime)
    page = requests.get(live_sandbox.url + "/sandbox/controls", timeout=5)
    assert page.status_code == 200 and "Make the platforms misbehave" in page.text
    requests.post(live_sandbox.url + "/sandbox/controls", data={"endpoint": "userinfo", "mode": "server_error",
                                                                  "times": "5"}, timeout=5)
    login(client, member.email)
    token = csrf_from(client)
    try:
        page = client.post(f"/admin/connections/{cid}/check", data={"csrf_token": token},
                           follow_redirects=True).get_data(as_text=True)
    finally:
        requests.post(live_sandbox.url + "/sandbox/controls", data={"mode": "none"}, timeout=5)
    assert "Warning" in page and "having trouble" in page
    page = client.post(f"/admin/connections/{cid}/check", data={"csrf_token": token},
                       follow_redirects=True).get_data(as_text=True)
    assert "confirms the connection works" in page and "Healthy" in page


import requests  # noqa: E402


def test_daily_digest_replaces_one_email_per_change(client, db, runtime, live_sandbox):
    member, _, cid = _connected(client, db, runtime)
    login(client, member.email)
    client.post("/admin/notifications/digest", data={"digest": "1", "csrf_token": csrf_from(client)})
    _fail(db, runtime, live_sandbox, cid, "invalid_grant")
    assert fresh(db).scalars(select(OutboxEmail)).all() == []  # nothing per change
    assert notifications.send_digests(db, runtime.deps, runtime.deps.now()) == 1
    db.commit()
    [mail] = fresh(db).scalars(select(OutboxEmail)).all()
    assert "Daily connection report: 1 change" in mail.subject and "Reconnect link" in mail.body_text
    assert "/c/" not in mail.body_text and "/c/" in notifications.body_to_send(runtime.deps.cipher, mail)
    assert notifications.send_digests(db, runtime.deps, runtime.deps.now()) == 0  # once a day


# Mail that carries a secret: sealed in the outbox, opened only to send, redacted afterwards ------------------

def _smtp_capture():
    """A real SMTP server on a socket that keeps each message it receives, parsed."""
    import email
    from email import policy

    messages: list = []

    class Handler(_SMTPHandler):
        received: list[bytes] = []

        def handle(self) -> None:
            self.received = []
            super().handle()
            if self.received:
                messages.append(email.message_from_bytes(b"".join(self.received), policy=policy.default))

    server = socketserver.TCPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, messages


def test_an_invitation_is_delivered_by_smtp_and_only_its_redacted_copy_stays(app, client, db, runtime):
    import re

    from tests.helpers import make_member

    owner = make_member(db)
    login(client, owner.email)
    client.post("/admin/team/invites", data={"email": "newcomer@team.example", "role": "viewer",
                                             "csrf_token": csrf_from(client, "/admin/team")})
    server, messages = _smtp_capture()
    try:
        sent = notifications.send_outbox(fresh(db), f"smtp://127.0.0.1:{server.server_address[1]}",
                                         "Agency <no-reply@agency.example>", runtime.deps.now(),
                                         cipher=runtime.deps.cipher)
        db.commit()
    finally:
        server.shutdown()
        server.server_close()
    assert sent == 1
    [message] = messages
    token = re.search(r"/admin/invite/([A-Za-z0-9_-]+)", message.get_content()).group(1)
    mail = fresh(db).scalar(select(OutboxEmail))
    assert mail.sent_at is not None and not notifications.is_sealed(mail)
    assert token not in mail.body_text and notifications.HIDDEN_LINK in mail.body_text  # nothing left to decrypt
    page = client.get("/admin/notifications").get_data(as_text=True)
    assert token not in page and "You are invited" in page
    # the link that went out is the real one: the invitee joins with it
    browser = app.test_client()
    form = browser.get(f"/admin/invite/{token}").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    from tests.helpers import PASSWORD

    assert browser.post(f"/admin/invite/{token}", data={"password": PASSWORD, "csrf_token": csrf}).status_code == 302


def test_a_sealed_body_copied_to_another_row_is_never_sent(client, db, runtime):
    from tests.helpers import make_member

    owner = make_member(db)
    notifications.queue_email(db, runtime.deps, owner.agency_id, "invitee@team.example", "secret",
                              "Your link: https://portal.test/admin/invite/s3cret-token\n", secret=True)
    db.commit()
    original = fresh(db).scalar(select(OutboxEmail))
    assert "s3cret-token" not in original.body_text
    # an attacker who can write the outbox moves the sealed body to a row addressed to themselves
    db.add(OutboxEmail(agency_id=owner.agency_id, to_address="thief@evil.example", subject="copy",
                       body_text=original.body_text, created_at=original.created_at - timedelta(seconds=1)))
    db.commit()
    server, messages = _smtp_capture()
    try:
        sent = notifications.send_outbox(fresh(db), f"smtp://127.0.0.1:{server.server_address[1]}",
                                         "Agency <no-reply@agency.example>", runtime.deps.now(),
                                         cipher=runtime.deps.cipher)
        db.commit()
    finally:
        server.shutdown()
        server.server_close()
    assert sent == 1
    assert [str(m["To"]) for m in messages] == ["invitee@team.example"]
    assert "s3cret-token" in messages[0].get_content()
    copy = fresh(db).scalar(select(OutboxEmail).where(OutboxEmail.to_address == "thief@evil.example"))
    assert copy.sent_at is None and copy.attempts == notifications.MAX_SEND_ATTEMPTS
    assert copy.last_error == "sealed body does not decrypt"
    # once given up, later runs leave it alone
    assert notifications.send_outbox(fresh(db), "smtp://127.0.0.1:9", "x@agency.example", runtime.deps.now(),
                                     cipher=runtime.deps.cipher) == 0


def test_a_secret_email_without_the_cipher_is_refused():
    import pytest

    with pytest.raises(ValueError):
        notifications.queue_email(None, None, "agency", "a@x.example", "s", "https://x.example/secret",  # type: ignore[arg-type]
                                  secret=True)
