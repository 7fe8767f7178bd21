"""Team: invitations by email link (expired, reused, revoked, tampered, other agency), roles, last-owner
protection, and a removed member's session ending at once."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select, update

from portal.db import utcnow
from portal.models import AdminSession, ApiKey, AuditEvent, Member, MemberInvite, OutboxEmail
from portal.security.signing import hash_secret
from portal.services import notifications
from tests.api.support import make_key
from tests.helpers import PASSWORD, csrf_from, fresh, login, make_member

_INVITE_URL = re.compile(r"https?://\S+/admin/invite/([A-Za-z0-9_-]+)")


def invite(client, db, email: str, role: str) -> str:
    """As the logged-in owner, invite ``email``; returns the token from the queued email (opened as the
    sender opens it: the stored body is sealed)."""
    response = client.post("/admin/team/invites", data={"email": email, "role": role,
                                                         "csrf_token": csrf_from(client, "/admin/team")})
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    fresh(db)
    mail = db.scalars(select(OutboxEmail).where(OutboxEmail.to_address == email)
                      .order_by(OutboxEmail.created_at.desc())).first()
    assert mail is not None, "no invitation email queued"
    cipher = client.application.extensions["easyconnect"].deps.cipher
    return _INVITE_URL.search(notifications.body_to_send(cipher, mail)).group(1)


def accept(app, token: str, password: str = PASSWORD):
    """Open the invitation in a fresh browser and join; returns (client, response)."""
    browser = app.test_client()
    page = browser.get(f"/admin/invite/{token}")
    if page.status_code != 200:
        return browser, page
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    return browser, browser.post(f"/admin/invite/{token}", data={"password": password, "csrf_token": csrf})


def team_of(app, client, db, roles=("admin", "viewer")):
    """An owner (logged in on ``client``) and one joined member per role: {role: (member, client)}."""
    owner = make_member(db, "Team Agency")
    login(client, owner.email)
    members = {"owner": (owner, client)}
    for role in roles:
        email = f"{role}@team.example"
        browser, response = accept(app, invite(client, db, email, role))
        assert response.status_code == 302, response.get_data(as_text=True)[:300]
        members[role] = (fresh(db).scalar(select(Member).where(Member.email == email)), browser)
    return members


def test_invite_accept_join_with_role_and_argon2_password(app, client, db, runtime):
    members = team_of(app, client, db)
    owner, _ = members["owner"]
    admin, admin_client = members["admin"]
    assert admin.agency_id == owner.agency_id and admin.role == "admin"
    assert admin.password_hash.startswith("$argon2id$")
    assert "admin@team.example" in admin_client.get("/admin/").get_data(as_text=True)  # logged in on joining
    invite_row = db.scalar(select(MemberInvite).where(MemberInvite.email == "admin@team.example"))
    assert invite_row.accepted_at is not None and len(invite_row.token_hash) == 64
    mail = db.scalar(select(OutboxEmail).where(OutboxEmail.to_address == "admin@team.example"))
    token = _INVITE_URL.search(notifications.body_to_send(runtime.deps.cipher, mail)).group(1)
    assert invite_row.token_hash == hash_secret(token) and token not in str(invite_row.__dict__)
    actions = set(db.scalars(select(AuditEvent.action).where(AuditEvent.agency_id == owner.agency_id)))
    assert {"member.invited", "member.joined"} <= actions
    # the new member can log in with the password they chose
    other = app.test_client()
    assert login(other, "viewer@team.example").status_code == 302


def test_invite_is_single_use(app, client, db):
    owner = make_member(db)
    login(client, owner.email)
    token = invite(client, db, "once@team.example", "viewer")
    assert accept(app, token)[1].status_code == 302
    browser, again = accept(app, token, "another long password")
    assert again.status_code == 410 and "no longer valid" in again.get_data(as_text=True)
    assert len(fresh(db).scalars(select(Member).where(Member.email == "once@team.example")).all()) == 1


def test_expired_revoked_tampered_and_unknown_invites_are_refused(app, client, db):
    owner = make_member(db)
    login(client, owner.email)
    expired = invite(client, db, "late@team.example", "admin")
    db.execute(update(MemberInvite).where(MemberInvite.email == "late@team.example")
               .values(expires_at=utcnow() - timedelta(minutes=1)))
    db.commit()
    revoked = invite(client, db, "gone@team.example", "admin")
    row = db.scalar(select(MemberInvite).where(MemberInvite.email == "gone@team.example"))
    response = client.post(f"/admin/team/invites/{row.id}/revoke",
                           data={"csrf_token": csrf_from(client, "/admin/team")})
    assert response.status_code == 302
    good = invite(client, db, "good@team.example", "viewer")
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    for token in (expired, revoked, tampered, "x" * 43, "short"):
        browser = app.test_client()
        assert browser.get(f"/admin/invite/{token}").status_code == 410, token
        # posting directly (no page first) is refused as well, and joins nobody
        assert browser.post(f"/admin/invite/{token}", data={"password": PASSWORD}).status_code in (400, 410)
    fresh(db)
    emails = set(db.scalars(select(Member.email)))
    assert not emails & {"late@team.example", "gone@team.example"}
    assert accept(app, good)[1].status_code == 302  # the untampered one still works


def test_an_invite_of_another_agency_joins_that_agency_only_and_cannot_be_revoked_by_us(app, client, db):
    owner_a = make_member(db, "Agency A")
    login(client, owner_a.email)
    token = invite(client, db, "bob@team.example", "admin")
    row = fresh(db).scalar(select(MemberInvite).where(MemberInvite.email == "bob@team.example"))
    owner_b = make_member(db, "Agency B")
    rival = app.test_client()
    login(rival, owner_b.email)
    response = rival.post(f"/admin/team/invites/{row.id}/revoke", data={"csrf_token": csrf_from(rival, "/admin/team")})
    assert response.status_code == 404
    assert "bob@team.example" not in rival.get("/admin/team").get_data(as_text=True)
    assert fresh(db).get(MemberInvite, row.id).revoked_at is None
    accept(app, token)
    assert fresh(db).scalar(select(Member).where(Member.email == "bob@team.example")).agency_id == owner_a.agency_id


def test_an_email_with_an_account_cannot_be_invited_or_join(app, client, db):
    other = make_member(db, "Elsewhere", email="taken@team.example")
    owner = make_member(db)
    login(client, owner.email)
    response = client.post("/admin/team/invites", data={"email": "taken@team.example", "role": "viewer",
                                                         "csrf_token": csrf_from(client, "/admin/team")},
                           follow_redirects=True)
    assert "already has an EasyConnect account" in response.get_data(as_text=True)
    assert fresh(db).scalar(select(MemberInvite).where(MemberInvite.email == "taken@team.example")) is None
    # invited first, then the address signs up elsewhere before accepting: a clear message, nothing written
    token = invite(client, db, "race@team.example", "viewer")
    make_member(db, "Faster", email="race@team.example")
    _, response = accept(app, token)
    assert response.status_code == 400 and "already has an EasyConnect account" in response.get_data(as_text=True)
    fresh(db)
    assert db.scalar(select(Member).where(Member.email == "race@team.example")).agency_id != owner.agency_id
    assert db.scalar(select(MemberInvite).where(MemberInvite.email == "race@team.example")).accepted_at is None
    assert other.agency_id != owner.agency_id


def test_invite_validates_email_and_role(client, db):
    owner = make_member(db)
    login(client, owner.email)
    for email, role in (("not-an-email", "viewer"), ("x@team.example", "superuser"), ("x@team.example", "")):
        response = client.post("/admin/team/invites", data={"email": email, "role": role,
                                                             "csrf_token": csrf_from(client, "/admin/team")},
                               follow_redirects=True)
        assert "error" in response.get_data(as_text=True)
    assert fresh(db).scalars(select(MemberInvite)).all() == []


def test_the_last_owner_can_be_neither_demoted_nor_removed(app, client, db):
    members = team_of(app, client, db, roles=("admin",))
    owner, _ = members["owner"]
    token = csrf_from(client, "/admin/team")
    demote = client.post(f"/admin/team/members/{owner.id}/role", data={"role": "admin", "csrf_token": token},
                         follow_redirects=True)
    assert "at least one owner" in demote.get_data(as_text=True)
    remove = client.post(f"/admin/team/members/{owner.id}/remove", data={"csrf_token": token}, follow_redirects=True)
    assert "at least one owner" in remove.get_data(as_text=True)
    assert fresh(db).get(Member, owner.id).role == "owner"
    # with a second owner, the first may step down
    admin, _ = members["admin"]
    assert client.post(f"/admin/team/members/{admin.id}/role", data={"role": "owner", "csrf_token": token}
                       ).status_code == 302
    assert client.post(f"/admin/team/members/{owner.id}/role", data={"role": "viewer", "csrf_token": token}
                       ).status_code == 302
    fresh(db)
    assert (db.get(Member, owner.id).role, db.get(Member, admin.id).role) == ("viewer", "owner")
    actions = [e.details for e in db.scalars(select(AuditEvent).where(AuditEvent.action == "member.role_changed"))]
    assert {"previous_role": "owner", "role": "viewer", "email": owner.email} in actions


def test_a_removed_members_session_ends_at_once(app, client, db):
    members = team_of(app, client, db, roles=("admin",))
    admin, admin_client = members["admin"]
    admin_id = admin.id
    assert admin_client.get("/admin/").status_code == 200
    response = client.post(f"/admin/team/members/{admin_id}/remove",
                           data={"csrf_token": csrf_from(client, "/admin/team")})
    assert response.status_code == 302
    after = admin_client.get("/admin/")
    assert after.status_code == 302 and "/admin/login" in after.headers["Location"]
    fresh(db)
    assert db.get(Member, admin_id) is None
    assert db.scalars(select(AdminSession).where(AdminSession.member_id == admin_id)).all() == []
    assert db.scalar(select(AuditEvent).where(AuditEvent.action == "member.removed")).object_id == admin_id


def test_demoting_to_viewer_makes_the_members_api_keys_read_only(app, client, db, runtime):
    members = team_of(app, client, db, roles=("admin",))
    admin, admin_client = members["admin"]
    created = admin_client.post("/admin/api-keys", data={"name": "ci", "scope": "read_write",
                                                         "csrf_token": csrf_from(admin_client, "/admin/api-keys")})
    assert created.status_code == 201
    owners_key = make_key(fresh(db), runtime, admin.agency_id)  # made by someone else: untouched
    client.post(f"/admin/team/members/{admin.id}/role", data={"role": "viewer",
                                                              "csrf_token": csrf_from(client, "/admin/team")})
    fresh(db)
    scopes = {key.created_by: key.scope for key in db.scalars(select(ApiKey))}
    assert scopes[admin.id] == "read" and "read_write" in scopes.values()
    assert owners_key


def test_the_invite_token_stays_out_of_access_logs_and_the_audit_log(app, client, db, caplog):
    from portal.logsafe import redact

    owner = make_member(db)
    login(client, owner.email)
    token = invite(client, db, "quiet@team.example", "viewer")
    line = f'127.0.0.1 - - "GET /admin/invite/{token} HTTP/1.1" 200 -'
    assert token not in redact(line) and "/admin/invite/<redacted>" in redact(line)
    with caplog.at_level("DEBUG"):
        accept(app, token)
    assert token not in caplog.text
    details = " ".join(str(e.details) for e in fresh(db).scalars(select(AuditEvent)))
    assert token not in details and hash_secret(token) not in details


# Security review findings: a removed or demoted member keeps no power through keys or invitations ----------

def _member_key(db, runtime, member, scope="read_write", name="ci") -> str:
    """An API key created by ``member`` (as the admin panel does: created_by is the member)."""
    from portal.services import api_keys
    from portal.services.audit import Actor

    _, secret = api_keys.create_key(fresh(db), member.agency_id, name, scope, Actor("member", member.id),
                                    runtime.deps.now(), creator_role=member.role)
    db.commit()
    return secret


def _api_status(app, key: str) -> int:
    return app.test_client().get("/api/v1/workspaces", headers={"Authorization": f"Bearer {key}"}).status_code


def test_removing_a_member_revokes_the_api_keys_they_created(app, client, db, runtime):
    members = team_of(app, client, db, roles=("admin",))
    owner, _ = members["owner"]
    admin, _ = members["admin"]
    admin_id = admin.id
    admins_key, owners_key = _member_key(db, runtime, admin), _member_key(db, runtime, owner, name="owner's")
    assert _api_status(app, admins_key) == 200 and _api_status(app, owners_key) == 200
    response = client.post(f"/admin/team/members/{admin_id}/remove",
                           data={"csrf_token": csrf_from(client, "/admin/team")})
    assert response.status_code == 302
    assert _api_status(app, admins_key) == 401  # the attack: the ex-member's key must stop at once
    assert _api_status(app, owners_key) == 200  # someone else's key is untouched
    fresh(db)
    [revoked] = db.scalars(select(ApiKey).where(ApiKey.created_by == admin_id)).all()
    assert revoked.revoked_at is not None
    event = db.scalar(select(AuditEvent).where(AuditEvent.action == "api_key.revoked",
                                               AuditEvent.object_id == revoked.id))
    assert event is not None and event.details["reason"] == "member_removed"


def _second_owner(app, client, db):
    """A team with two owners: the first logged in on ``client``, the second (promoted admin) on its own client."""
    members = team_of(app, client, db, roles=("admin",))
    second, second_client = members["admin"]
    assert client.post(f"/admin/team/members/{second.id}/role",
                       data={"role": "owner", "csrf_token": csrf_from(client, "/admin/team")}).status_code == 302
    return members["owner"][0], second, second_client


def test_invitations_sent_by_a_removed_owner_stop_working(app, client, db):
    _, second, second_client = _second_owner(app, client, db)
    planted = invite(second_client, db, "accomplice@team.example", "owner")
    honest = invite(client, db, "colleague@team.example", "viewer")  # sent by the owner who stays
    assert client.post(f"/admin/team/members/{second.id}/remove",
                       data={"csrf_token": csrf_from(client, "/admin/team")}).status_code == 302
    _, response = accept(app, planted)
    assert response.status_code == 410  # the attack: joining through the removed owner's invitation
    assert fresh(db).scalar(select(Member).where(Member.email == "accomplice@team.example")) is None
    assert accept(app, honest)[1].status_code == 302
    row = db.scalar(select(MemberInvite).where(MemberInvite.email == "accomplice@team.example"))
    event = db.scalar(select(AuditEvent).where(AuditEvent.action == "member.invite_revoked",
                                               AuditEvent.object_id == row.id))
    assert event is not None and event.details["reason"] == "inviter_removed"


def test_a_demoted_owner_s_invitations_above_their_new_role_stop_working(app, client, db):
    _, second, second_client = _second_owner(app, client, db)
    as_owner = invite(second_client, db, "o@team.example", "owner")
    as_admin = invite(second_client, db, "a@team.example", "admin")
    as_viewer = invite(second_client, db, "v@team.example", "viewer")
    others = invite(client, db, "other@team.example", "owner")  # the first owner's: untouched
    token = csrf_from(client, "/admin/team")
    assert client.post(f"/admin/team/members/{second.id}/role", data={"role": "admin", "csrf_token": token}
                       ).status_code == 302
    states = {i.email: i.revoked_at is not None for i in fresh(db).scalars(select(MemberInvite))
              if i.email != "admin@team.example"}  # the accepted invitation that made the second owner
    assert states == {"o@team.example": True, "a@team.example": False, "v@team.example": False,
                      "other@team.example": False}
    assert client.post(f"/admin/team/members/{second.id}/role", data={"role": "viewer", "csrf_token": token}
                       ).status_code == 302
    assert accept(app, as_owner)[1].status_code == 410
    assert accept(app, as_admin)[1].status_code == 410
    assert accept(app, as_viewer)[1].status_code == 302  # no more than the inviter may still grant
    assert accept(app, others)[1].status_code == 302
    fresh(db)
    assert db.scalar(select(Member).where(Member.email == "o@team.example")) is None
    reasons = [e.details.get("reason") for e in db.scalars(select(AuditEvent).where(
        AuditEvent.action == "member.invite_revoked"))]
    assert reasons == ["inviter_demoted", "inviter_demoted"]


def test_the_invite_token_is_stored_encrypted_and_never_shown_in_the_admin_outbox(app, client, db, runtime):
    from portal.security.crypto import column_context

    owner = make_member(db)
    login(client, owner.email)
    token = invite(client, db, "sealed@team.example", "viewer")
    mail = fresh(db).scalar(select(OutboxEmail).where(OutboxEmail.to_address == "sealed@team.example"))
    assert token not in mail.body_text and "/admin/invite/" not in mail.body_text  # the attack: a database read
    page = client.get("/admin/notifications").get_data(as_text=True)
    assert "You are invited" in page and token not in page and "/admin/invite/" not in page
    assert "link hidden" in page  # the admin sees what the email says, with the secret redacted
    assert "no SMTP server is configured" in page  # the owner is told only SMTP can deliver it
    # the ciphertext is bound to its row: copied into another outbox row it does not decrypt
    copy = OutboxEmail(agency_id=owner.agency_id, to_address="thief@evil.example", subject="copy",
                       body_text=mail.body_text)
    db.add(copy)
    db.commit()
    import pytest

    from portal.security.crypto import DecryptionError
    from portal.services import notifications

    with pytest.raises(DecryptionError):
        notifications.body_to_send(runtime.deps.cipher, fresh(db).get(OutboxEmail, copy.id))
    assert column_context("outbox_emails", mail.id, "body") == f"outbox_emails:{mail.id}:body"
