"""Team: roles, invitations and membership of an agency.

Roles, from most to least powerful (what each may do is decided here, once, and enforced by the
admin panel's permission table and the REST API's key scopes):

- ``owner``: everything, including the team (invite, change roles, remove members, revoke invites)
  and deleting the agency. An agency always keeps at least one owner.
- ``admin``: everything an owner can do except the team and deleting the agency: workspaces
  (including deleting one), links, connections, platforms, branding, API keys, webhooks.
- ``viewer``: reads workspaces, links, connections and their health, notifications, the audit log
  and the team list. Never reads a token, creates a link, or changes a setting; cannot create
  API keys, and when a member is demoted to viewer the keys they created become read-only.

Nobody keeps power through what they left behind: removing a member revokes the API keys they
created and the invitations they sent; demoting one revokes their pending invitations to a role
above their new one (in the same transaction, each in the audit log).

An invitation is a random token sent by email (the email is sealed in the outbox: see
``notifications.queue_email``); only its SHA-256 is stored. It is single-use,
expires after ``INVITE_LIFETIME`` and can be revoked. Accepting creates the member with a new
password (Argon2). Member emails are unique across the portal: an email that already has an
account cannot be invited (the inviter is told at once; the invitee sees a clear message too).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.errors import NotFound, PortalError, ValidationFailed
from portal.models import AdminSession, Agency, ApiKey, Member, MemberInvite
from portal.security import passwords
from portal.security.signing import constant_time_equals, hash_secret
from portal.services import Deps, audit, notifications
from portal.services.agencies import check_password, clean_email
from portal.services.audit import Actor

ROLES = ("owner", "admin", "viewer")
RANK = {"viewer": 1, "admin": 2, "owner": 3}
INVITE_LIFETIME = timedelta(days=7)
MAX_PENDING_INVITES = 50


class NotPermitted(PortalError):
    status = 403
    code = "forbidden"
    public_message = "Your role does not allow this."


class InviteInvalid(PortalError):
    """Unknown, used, revoked or expired: one message for all, so a guesser learns nothing."""

    status = 410
    code = "invite_invalid"
    public_message = "This invitation is no longer valid. Ask the agency to send a new one."


class LastOwner(PortalError):
    status = 409
    code = "last_owner"
    public_message = "An agency needs at least one owner: make someone else owner first."


def at_least(role: str | None, needed: str) -> bool:
    """Whether ``role`` includes everything ``needed`` may do (an unknown role includes nothing)."""
    return RANK.get(role or "", 0) >= RANK[needed]


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValidationFailed("Role must be owner, admin or viewer.")
    return role


# Members ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MemberRow:
    id: str
    email: str
    role: str
    created_at: datetime


def list_members(db: Session, agency_id: str) -> list[MemberRow]:
    rows = db.scalars(select(Member).where(Member.agency_id == agency_id).order_by(Member.created_at, Member.email))
    return [MemberRow(m.id, m.email, m.role, m.created_at) for m in rows]


def _member(db: Session, agency_id: str, member_id: str) -> Member:
    member = db.scalar(select(Member).where(Member.id == member_id, Member.agency_id == agency_id)
                       .with_for_update(of=Member).execution_options(populate_existing=True))
    if member is None:
        raise NotFound("No such member.")
    return member


def _lock_owners(db: Session, agency_id: str) -> int:
    """Lock the agency's owners (PostgreSQL; SQLite serialises writers anyway), in id order so two
    concurrent changes queue instead of deadlocking, and count them: two demotions at once can
    never leave no owner."""
    owners = db.scalars(select(Member.id).where(Member.agency_id == agency_id, Member.role == "owner")
                        .order_by(Member.id).with_for_update(of=Member)).all()
    return len(owners)


def _revoke_keys_of(db: Session, agency_id: str, member_id: str, actor: Actor, now: datetime, reason: str) -> None:
    keys = db.scalars(select(ApiKey).where(ApiKey.agency_id == agency_id, ApiKey.created_by == member_id,
                                           ApiKey.revoked_at.is_(None)).with_for_update(of=ApiKey))
    for key in keys:
        key.revoked_at = now
        audit.record(db, agency_id, actor, "api_key.revoked", "api_key", key.id, name=key.name, reason=reason)


def _revoke_invites_by(db: Session, agency_id: str, member_id: str, actor: Actor, now: datetime, reason: str,
                       roles: tuple[str, ...] = ROLES) -> None:
    """Revoke the pending invitations ``member_id`` sent for one of ``roles``. Locked, and ``accept``
    claims with a conditional update, so an invitation is either accepted before or dead after."""
    pending = db.scalars(select(MemberInvite).where(
        MemberInvite.agency_id == agency_id, MemberInvite.invited_by == member_id, MemberInvite.role.in_(roles),
        MemberInvite.accepted_at.is_(None), MemberInvite.revoked_at.is_(None), MemberInvite.expires_at > now)
        .order_by(MemberInvite.id).with_for_update(of=MemberInvite))
    for row in pending:
        row.revoked_at = now
        audit.record(db, agency_id, actor, "member.invite_revoked", "member_invite", row.id, email=row.email,
                     reason=reason)


def change_role(db: Session, agency_id: str, member_id: str, role: str, actor: Actor,
                now: datetime | None = None) -> Member:
    """Give a member another role. The last owner cannot be demoted; a member demoted to viewer keeps
    no read_write API key (their keys become read-only in the same transaction), and a demoted member's
    pending invitations to a role above the new one are revoked (nobody grants more than they have)."""
    check_role(role)
    now = now or utcnow()
    owners = _lock_owners(db, agency_id)
    member = _member(db, agency_id, member_id)
    if member.role == role:
        return member
    if member.role == "owner" and owners <= 1:
        raise LastOwner()
    previous, member.role = member.role, role
    if role == "viewer":
        db.execute(update(ApiKey).where(ApiKey.agency_id == agency_id, ApiKey.created_by == member.id,
                                        ApiKey.scope != "read").values(scope="read")
                   .execution_options(synchronize_session=False))
    if RANK[role] < RANK.get(previous, RANK["owner"]):  # a demotion (an unknown old role counts as owner)
        above = tuple(r for r in ROLES if RANK[r] > RANK[role])
        _revoke_invites_by(db, agency_id, member.id, actor, now, "inviter_demoted", above)
    audit.record(db, agency_id, actor, "member.role_changed", "member", member.id, email=member.email,
                 previous_role=previous, role=role)
    return member


def remove_member(db: Session, agency_id: str, member_id: str, actor: Actor, now: datetime | None = None) -> str:
    """Remove a member: their admin sessions end at once (the rows go with them), and in the same
    transaction the API keys they created and the invitations they sent are revoked (a removed
    member's key or accomplice must not outlive them). Returns their email."""
    now = now or utcnow()
    owners = _lock_owners(db, agency_id)
    member = _member(db, agency_id, member_id)
    if member.role == "owner" and owners <= 1:
        raise LastOwner("An agency needs at least one owner: the last owner cannot be removed.")
    email = member.email
    _revoke_keys_of(db, agency_id, member.id, actor, now, "member_removed")
    _revoke_invites_by(db, agency_id, member.id, actor, now, "inviter_removed")
    db.execute(delete(AdminSession).where(AdminSession.member_id == member.id))
    db.execute(delete(Member).where(Member.id == member.id, Member.agency_id == agency_id))
    audit.record(db, agency_id, actor, "member.removed", "member", member_id, email=email, role=member.role)
    return email


# Invitations --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InviteRow:
    id: str
    email: str
    role: str
    state: str  # pending | accepted | revoked | expired
    expires_at: datetime
    created_at: datetime


def _state(invite: MemberInvite, now: datetime) -> str:
    if invite.accepted_at is not None:
        return "accepted"
    if invite.revoked_at is not None:
        return "revoked"
    if invite.expires_at <= now:
        return "expired"
    return "pending"


def list_invites(db: Session, agency_id: str, now: datetime, limit: int = 100) -> list[InviteRow]:
    rows = db.scalars(select(MemberInvite).where(MemberInvite.agency_id == agency_id)
                      .order_by(MemberInvite.created_at.desc()).limit(limit))
    return [InviteRow(i.id, i.email, i.role, _state(i, now), i.expires_at, i.created_at) for i in rows]


def invite_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/admin/invite/{token}"


def invite(db: Session, deps: Deps, agency_id: str, email: str, role: str, actor: Actor) -> MemberInvite:
    """Invite ``email`` with ``role`` and queue the email carrying the link (the only place the token
    exists: the row keeps its hash, and the email is sealed until sent)."""
    now = deps.now()
    email = clean_email(email)
    check_role(role)
    if db.scalar(select(Member.id).where(Member.email == email)) is not None:
        raise ValidationFailed("This email already has an EasyConnect account; a person can belong to one "
                               "agency only. Ask them to use another address.")
    pending = db.scalar(select(func.count()).select_from(MemberInvite).where(
        MemberInvite.agency_id == agency_id, MemberInvite.accepted_at.is_(None), MemberInvite.revoked_at.is_(None),
        MemberInvite.expires_at > now)) or 0
    if pending >= MAX_PENDING_INVITES:
        raise ValidationFailed(f"At most {MAX_PENDING_INVITES} pending invitations; revoke some first.")
    token = secrets.token_urlsafe(32)
    row = MemberInvite(agency_id=agency_id, email=email, role=role, token_hash=hash_secret(token),
                       invited_by=actor.id, expires_at=now + INVITE_LIFETIME, created_at=now)
    db.add(row)
    db.flush()
    agency = db.get(Agency, agency_id)
    brand = agency.name if agency else "EasyConnect"
    url = invite_url(deps.settings.base_url, token)
    notifications.queue_email(
        db, deps, agency_id, email, f"[{brand}] You are invited to EasyConnect",
        f"{brand} invites you to its EasyConnect admin panel as {role}.\n\n"
        f"Open this link to choose your password and join (single use, valid for {INVITE_LIFETIME.days} days):\n"
        f"{url}\n\nIf you did not expect this, ignore this email.\n", secret=True, hide=(token,), now=now)
    audit.record(db, agency_id, actor, "member.invited", "member_invite", row.id, email=email, role=role)
    return row


def revoke_invite(db: Session, agency_id: str, invite_id: str, actor: Actor, now: datetime) -> MemberInvite:
    row = db.scalar(select(MemberInvite).where(MemberInvite.id == invite_id, MemberInvite.agency_id == agency_id))
    if row is None:
        raise NotFound("No such invitation.")
    if row.accepted_at is None and row.revoked_at is None:
        row.revoked_at = now
        audit.record(db, agency_id, actor, "member.invite_revoked", "member_invite", row.id, email=row.email)
    return row


@dataclass(frozen=True)
class PendingInvite:
    """What the acceptance page shows (no token, no ids an attacker could use)."""

    email: str
    role: str
    agency_name: str


def _usable(db: Session, token: str, now: datetime) -> MemberInvite:
    digest = hash_secret(token or "")
    row = db.scalar(select(MemberInvite).where(MemberInvite.token_hash == digest))
    if row is None or not constant_time_equals(row.token_hash, digest) or _state(row, now) != "pending":
        raise InviteInvalid()
    agency = db.get(Agency, row.agency_id)
    if agency is None or agency.deleted_at is not None:
        raise InviteInvalid()
    return row


def peek(db: Session, token: str, now: datetime) -> PendingInvite:
    row = _usable(db, token, now)
    agency = db.get(Agency, row.agency_id)
    return PendingInvite(row.email, row.role, agency.name if agency else "")


def accept(db: Session, token: str, password: str, now: datetime, ip: str | None) -> Member:
    """Use the invitation: a new member of its agency with its role and this password. Single use:
    the row is claimed with a conditional update, so two concurrent accepts make one member."""
    row = _usable(db, token, now)
    check_password(password)
    claimed = db.execute(update(MemberInvite).where(
        MemberInvite.id == row.id, MemberInvite.accepted_at.is_(None), MemberInvite.revoked_at.is_(None),
        MemberInvite.expires_at > now).values(accepted_at=now).execution_options(synchronize_session=False))
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise InviteInvalid()
    member = Member(agency_id=row.agency_id, email=row.email, role=row.role,
                    password_hash=passwords.hash_password(password), created_at=now)
    db.add(member)
    try:
        with db.begin_nested():
            db.flush()
    except IntegrityError:
        raise ValidationFailed("This email already has an EasyConnect account (a person can belong to one agency "
                               "only). Log in with it, or ask for an invitation to another address.") from None
    audit.record(db, row.agency_id, Actor("member", member.id, ip), "member.joined", "member", member.id,
                 email=member.email, role=member.role, invite_id=row.id)
    return member
