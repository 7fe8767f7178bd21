"""Helpers for the REST API tests: tenants with keys, auth headers, connected accounts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from portal.services import api_keys
from portal.services.audit import SYSTEM
from tests.helpers import connect, connections_in, make_link, make_member, make_workspace


@dataclass
class Tenant:
    member: Any
    workspace: Any
    key: str  # read_write
    read_key: str
    agency_id: str


def make_key(db: Any, runtime: Any, agency_id: str, scope: str = "read_write", name: str = "server") -> str:
    _, secret = api_keys.create_key(db, agency_id, name, scope, SYSTEM, runtime.deps.now())
    db.commit()
    return secret


def make_tenant(db: Any, runtime: Any, name: str = "Acme Agency") -> Tenant:
    member = make_member(db, name)
    workspace = make_workspace(db, member.agency_id)
    return Tenant(member, workspace, make_key(db, runtime, member.agency_id),
                  make_key(db, runtime, member.agency_id, "read", "dashboard"), member.agency_id)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def connected(client: Any, db: Any, runtime: Any, tenant: Tenant | None = None, account: str = "sbx-1001") -> Any:
    """A tenant (made if not given) with one sandbox connection, through the real connect flow."""
    if tenant is None:
        tenant = make_tenant(db, runtime)
    _, path = make_link(db, runtime.deps, tenant.workspace)
    connect(client, path, account=account)
    rows = connections_in(db, tenant.workspace.id)
    return tenant, [row for row in rows if row.external_id == account][0]

