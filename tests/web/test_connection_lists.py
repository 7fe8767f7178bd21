"""The admin's connection list: token-status, platform and workspace filters; active toggle; audit filters."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from portal.models import Connection, Health
from tests.helpers import connect, connections_in, csrf_from, fresh, login, setup_link


def _three(client, db, runtime):
    member, workspace, _, path = setup_link(db, runtime.deps)
    for account in ("sbx-1001", "sbx-1002", "sbx-1003"):
        connect(client, path, account=account)
    rows = {c.external_id: c.id for c in connections_in(db, workspace.id)}
    now = runtime.deps.now()
    db.execute(update(Connection).where(Connection.id == rows["sbx-1002"])
               .values(refresh_expires_at=now + timedelta(days=10)))  # must reconnect within 30 days
    db.execute(update(Connection).where(Connection.id == rows["sbx-1003"]).values(health=Health.ERROR))
    db.commit()
    return member, workspace, rows


def _names(client, query):
    html = client.get("/admin/connections" + query).get_data(as_text=True)
    return {name for name in ("Blue Bottle Bakery", "Northwind Outfitters", "Casa Aurora Studio") if name in html}


def test_status_filters(client, db, runtime):
    member, workspace, _ = _three(client, db, runtime)
    login(client, member.email)
    assert _names(client, "") == {"Blue Bottle Bakery", "Northwind Outfitters", "Casa Aurora Studio"}
    assert _names(client, "?status=expired") == {"Casa Aurora Studio"}
    assert _names(client, "?status=expiring") == {"Northwind Outfitters"}
    assert _names(client, "?status=valid") == {"Blue Bottle Bakery", "Northwind Outfitters"}
    assert _names(client, "?platform=x") == set()
    assert _names(client, f"?platform=sandbox&workspace={workspace.id}&status=valid") == {
        "Blue Bottle Bakery", "Northwind Outfitters"}
    assert client.get("/admin/connections?status=' OR 1=1 --").status_code == 400
    dashboard = client.get("/admin/").get_data(as_text=True)
    assert "Expiring in 30 days" in dashboard


def test_active_toggle_is_audited(client, db, runtime):
    member, _, rows = _three(client, db, runtime)
    login(client, member.email)
    token = csrf_from(client)
    client.post(f"/admin/connections/{rows['sbx-1001']}/active", data={"active": "0", "csrf_token": token})
    assert fresh(db).get(Connection, rows["sbx-1001"]).active is False
    audit = client.get("/admin/audit?category=health").get_data(as_text=True)
    assert "connection.deactivated" in audit and "connection.created" not in audit
    assert "connection.created" in client.get("/admin/audit?category=connects").get_data(as_text=True)
    assert client.get("/admin/audit?category=nonsense").status_code == 400
