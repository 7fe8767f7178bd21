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
    assert mail.to_address == member.email and "/c/" in mail.body_text and "needs reconnecting" in mail.subject

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
                                         "Agency <no-reply@agency.example>", runtime.deps.now())
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
    assert notifications.send_digests(db, runtime.deps, runtime.deps.now()) == 0  # once a day
