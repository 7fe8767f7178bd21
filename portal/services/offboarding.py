"""Offboarding: deleting a workspace or a whole agency.

What happens, in order:

1. In the request's transaction (fast, no network): the typed confirmation is checked; every token
   is removed at once (the connections holding them are deleted, pending selections' encrypted
   tokens and PKCE verifiers are nulled); links are revoked (they answer 410); the workspace (or
   the agency and all its workspaces) is stamped ``deleted_at``. For an agency also: API keys are
   revoked, webhook endpoints (and their secrets) deleted, pending invitations revoked and every
   admin session ended, so nobody can log in, no key works and no webhook is sent; its custom domain
   is released (another agency may prove it at once).
2. The tokens to revoke at the platforms leave the transaction sealed (encrypted with the token
   keys, bound to this offboarding) and are revoked by a worker job after the commit
   (``revoke_sealed``): a slow or failing platform never holds the request or keeps a token in the
   database. The agency's own platform apps' secrets go right after (they are needed to revoke).
3. Everything else (the workspace or agency row, links, attempts, notifications, audit log, mail)
   is purged by the ``purge_offboarded`` sweep once ``deleted_at`` is older than the retention
   period (``Settings.offboarding_retention_days``, 30 days by default).

Only rows of the given agency are touched: every statement filters on its id.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from portal.db import Base
from portal.errors import NotFound, PortalError, ValidationFailed
from portal.models import (
    AdminSession,
    Agency,
    ApiKey,
    ConnectAttempt,
    Connection,
    ConnectLink,
    CustomPlatform,
    Member,
    MemberInvite,
    ProviderApp,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    Workspace,
)
from portal.services import Deps, audit, connections, platforms, webhooks
from portal.services.audit import Actor

log = logging.getLogger(__name__)
SEAL_CONTEXT = "offboarding:revocations:"


@dataclass(frozen=True)
class Offboarded:
    """The result: what was deleted, and the sealed tokens to revoke once the transaction commits
    (None when there is nothing to revoke). ``seal_id`` names the sealed bundle."""

    kind: str  # workspace | agency
    object_id: str
    connections_deleted: int
    seal_id: str
    sealed: str | None

    def __repr__(self) -> str:
        return f"Offboarded(kind={self.kind!r}, object_id={self.object_id!r}, n={self.connections_deleted})"


def _confirm(typed: str, name: str, what: str) -> None:
    if (typed or "").strip() != name.strip():
        raise ValidationFailed(f"Type the {what}'s name exactly to confirm the deletion.")


def delete_workspace(db: Session, deps: Deps, agency_id: str, workspace_id: str, typed_name: str,
                     actor: Actor, *, confirmed: bool = False) -> Offboarded:
    """Delete a workspace: its tokens and connections at once, the rest after the retention period.
    ``confirmed`` skips the typed name (the REST API, where the DELETE itself is the intent)."""
    workspace = db.scalar(select(Workspace).where(Workspace.id == workspace_id, Workspace.agency_id == agency_id,
                                                  Workspace.deleted_at.is_(None)))
    if workspace is None:
        raise NotFound("No such workspace.")
    if not confirmed:
        _confirm(typed_name, workspace.name, "workspace")
    now = deps.now()
    doomed = list(db.scalars(select(Connection).where(Connection.agency_id == agency_id,
                                                      Connection.workspace_id == workspace.id)))
    for connection in doomed:  # the agency lives on: its endpoints hear about each deleted connection
        webhooks.connection_changed(db, deps, connection, "connection.deleted", reason="workspace_deleted")
    seal_id, sealed, revocations = _take_tokens(db, deps, agency_id, doomed)
    link_ids = select(ConnectLink.id).where(ConnectLink.agency_id == agency_id,
                                            ConnectLink.workspace_id == workspace.id)
    _forget_attempt_secrets(db, agency_id, link_ids)
    db.execute(update(ConnectLink).where(ConnectLink.agency_id == agency_id, ConnectLink.workspace_id == workspace.id,
                                         ConnectLink.revoked_at.is_(None)).values(revoked_at=now)
               .execution_options(synchronize_session=False))
    workspace.archived_at = workspace.archived_at or now
    workspace.deleted_at = now
    audit.record(db, agency_id, actor, "workspace.deleted", "workspace", workspace.id, name=workspace.name,
                 connections=len(doomed), revocations=revocations)
    return Offboarded("workspace", workspace.id, len(doomed), seal_id, sealed)


def delete_agency(db: Session, deps: Deps, agency_id: str, typed_name: str, actor: Actor) -> Offboarded:
    """Delete the whole agency (owners only; the caller checks the role). From the commit on nobody can
    log in, its API keys and links stop working and no webhook is sent."""
    agency = db.get(Agency, agency_id, with_for_update=True)
    if agency is None or agency.deleted_at is not None:
        raise NotFound("No such agency.")
    _confirm(typed_name, agency.name, "agency")
    now = deps.now()
    doomed = list(db.scalars(select(Connection).where(Connection.agency_id == agency_id)))
    seal_id, sealed, revocations = _take_tokens(db, deps, agency_id, doomed)
    _forget_attempt_secrets(db, agency_id, select(ConnectLink.id).where(ConnectLink.agency_id == agency_id))
    for statement in (
        update(ConnectLink).where(ConnectLink.agency_id == agency_id, ConnectLink.revoked_at.is_(None))
        .values(revoked_at=now),
        update(Workspace).where(Workspace.agency_id == agency_id, Workspace.deleted_at.is_(None))
        .values(deleted_at=now),
        update(Workspace).where(Workspace.agency_id == agency_id, Workspace.archived_at.is_(None))
        .values(archived_at=now),
        update(ApiKey).where(ApiKey.agency_id == agency_id, ApiKey.revoked_at.is_(None)).values(revoked_at=now),
        update(MemberInvite).where(MemberInvite.agency_id == agency_id, MemberInvite.accepted_at.is_(None),
                                   MemberInvite.revoked_at.is_(None)).values(revoked_at=now),
        delete(WebhookDelivery).where(WebhookDelivery.endpoint_id.in_(
            select(WebhookEndpoint.id).where(WebhookEndpoint.agency_id == agency_id))),
        delete(WebhookEndpoint).where(WebhookEndpoint.agency_id == agency_id),
        delete(AdminSession).where(AdminSession.member_id.in_(select(Member.id).where(Member.agency_id == agency_id))),
    ):
        db.execute(statement.execution_options(synchronize_session=False))
    agency.deleted_at = now
    released_domain = agency.custom_domain
    # Its pages are gone: a proven domain must not stay blocked for its next owner until the purge.
    agency.custom_domain = agency.custom_domain_token = agency.custom_domain_verified_at = None
    audit.record(db, agency_id, actor, "agency.deleted", "agency", agency_id, connections=len(doomed),
                 revocations=revocations, released_domain=released_domain)
    return Offboarded("agency", agency_id, len(doomed), seal_id, sealed)


def _forget_attempt_secrets(db: Session, agency_id: str, link_ids: Any) -> None:
    """Unfinished account selections hold encrypted grants; attempts hold PKCE verifiers."""
    db.execute(update(ConnectAttempt).where(ConnectAttempt.agency_id == agency_id,
                                            ConnectAttempt.link_id.in_(link_ids))
               .values(pending_enc=None, verifier_enc=None, candidates=None)
               .execution_options(synchronize_session=False))


def _take_tokens(db: Session, deps: Deps, agency_id: str,
                 doomed: list[Connection]) -> tuple[str, str | None, int]:
    """Read the tokens to revoke (one per grant), then delete the connections holding them. Returns
    the bundle's id, the sealed bundle (None when nothing is revocable) and how many it holds."""
    seal_id = secrets.token_hex(16)
    items: list[dict[str, Any]] = []
    grants_seen: set[str] = set()
    doomed_ids = {c.id for c in doomed}
    for connection in doomed:
        if connection.grant_id is not None:
            if connection.grant_id in grants_seen or _grant_used_elsewhere(db, connection, doomed_ids):
                continue  # one revocation per grant; never cut off a surviving connection's grant
            grants_seen.add(connection.grant_id)
        try:
            access, refresh = connections.read_tokens(deps, connection)
        except Exception:  # noqa: BLE001 - an unreadable token cannot be revoked, but must still go
            log.warning("offboarding: tokens of connection %s unreadable; deleted without revocation", connection.id)
            continue
        if access or refresh:
            items.append({"platform": connection.platform, "instance": connection.instance,
                          "connection_id": connection.id, "access": access, "refresh": refresh})
    if doomed_ids:
        db.execute(delete(Connection).where(Connection.agency_id == agency_id, Connection.id.in_(doomed_ids))
                   .execution_options(synchronize_session=False))
        for connection in doomed:
            db.expunge(connection)
    sealed = deps.cipher.encrypt(json.dumps({"agency_id": agency_id, "items": items}),
                                 SEAL_CONTEXT + seal_id) if items else None
    return seal_id, sealed, len(items)


def _grant_used_elsewhere(db: Session, connection: Connection, doomed_ids: set[str]) -> bool:
    others = db.scalars(select(Connection.id).where(Connection.grant_id == connection.grant_id,
                                                    Connection.agency_id == connection.agency_id))
    return any(other not in doomed_ids for other in others)


def revoke_sealed(db: Session, deps: Deps, seal_id: str, sealed: str) -> dict[str, int]:
    """Revoke each sealed token at its platform (best effort: a failure is logged and counted, never
    retried into keeping anything), then drop a deleted agency's own app secrets. Network calls
    happen outside any transaction: the session is only read, and committed before each call."""
    bundle = json.loads(deps.cipher.decrypt(sealed, SEAL_CONTEXT + seal_id))
    agency_id = bundle["agency_id"]
    outcome = {"revoked": 0, "failed": 0}
    for item in bundle["items"]:
        try:
            spec, app = connections.spec_and_app(db, deps, agency_id, item["platform"], item["instance"])
            db.rollback()  # no transaction held through the platform call
            platforms.adapter_for(deps, spec).revoke(spec, app, item["access"], item["refresh"])
            outcome["revoked"] += 1
        except PortalError as exc:
            db.rollback()
            outcome["failed"] += 1
            log.warning("offboarding: revoking connection %s at %s failed: %s", item["connection_id"],
                        item["platform"], exc.code)
    agency = db.get(Agency, agency_id)
    if agency is not None and agency.deleted_at is not None:
        forget_app_secrets(db, agency_id)
    audit.record(db, agency_id, audit.WORKER, "offboarding.revoked", "agency", agency_id, **outcome)
    db.commit()
    return outcome


def forget_app_secrets(db: Session, agency_id: str) -> None:
    """A deleted agency's own OAuth apps and custom platforms (client secrets, bot tokens)."""
    db.execute(delete(ProviderApp).where(ProviderApp.agency_id == agency_id))
    db.execute(delete(CustomPlatform).where(CustomPlatform.agency_id == agency_id))


# The retention sweep -------------------------------------------------------------------------------

def purge_offboarded(db: Session, now: datetime, retention: timedelta, limit: int = 100) -> dict[str, int]:
    """Delete what is left of workspaces and agencies deleted longer than ``retention`` ago."""
    cutoff = now - retention
    counts = {"workspaces": 0, "agencies": 0}
    for agency_id in db.scalars(select(Agency.id).where(Agency.deleted_at.is_not(None), Agency.deleted_at <= cutoff)
                                .limit(limit)).all():
        _purge_agency(db, agency_id)
        counts["agencies"] += 1
    for agency_id, workspace_id in db.execute(select(Workspace.agency_id, Workspace.id).where(
            Workspace.deleted_at.is_not(None), Workspace.deleted_at <= cutoff).limit(limit)).all():
        _purge_workspace(db, agency_id, workspace_id)
        counts["workspaces"] += 1
    return counts


def _purge_workspace(db: Session, agency_id: str, workspace_id: str) -> None:
    links = select(ConnectLink.id).where(ConnectLink.agency_id == agency_id, ConnectLink.workspace_id == workspace_id)
    db.execute(delete(ConnectAttempt).where(ConnectAttempt.agency_id == agency_id, ConnectAttempt.link_id.in_(links)))
    db.execute(delete(Connection).where(Connection.agency_id == agency_id, Connection.workspace_id == workspace_id))
    db.execute(delete(ConnectLink).where(ConnectLink.agency_id == agency_id, ConnectLink.workspace_id == workspace_id))
    db.execute(delete(Workspace).where(Workspace.agency_id == agency_id, Workspace.id == workspace_id))


def _purge_agency(db: Session, agency_id: str) -> None:
    """Every row of the agency, children first (no reliance on cascades), then the agency itself."""
    db.execute(delete(WebhookDelivery).where(WebhookDelivery.event_id.in_(
        select(WebhookEvent.id).where(WebhookEvent.agency_id == agency_id))))
    db.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id.in_(
        select(WebhookEndpoint.id).where(WebhookEndpoint.agency_id == agency_id))))
    db.execute(delete(AdminSession).where(AdminSession.member_id.in_(
        select(Member.id).where(Member.agency_id == agency_id))))
    for table in reversed(Base.metadata.sorted_tables):
        if table.name != "agencies" and "agency_id" in table.c:
            db.execute(table.delete().where(table.c.agency_id == agency_id))
    db.execute(delete(Agency).where(Agency.id == agency_id))
