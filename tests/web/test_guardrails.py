"""Identity guardrails: links that expect given accounts, reconnect links that refuse a different account."""

from __future__ import annotations

from urllib.parse import urlsplit

from portal.services import links
from portal.services.audit import SYSTEM
from tests.helpers import (
    all_platforms_link,
    candidates_on,
    connect,
    connections_in,
    csrf_from,
    login,
    select,
    setup_link,
)


def test_link_expecting_an_account_refuses_another(client, db, runtime):
    _, workspace, _, path = setup_link(db, runtime.deps, expected_accounts=["@northwind"])
    refused = connect(client, path, account="sbx-1001")
    assert refused.status_code == 403
    assert "not one this link is for" in refused.get_data(as_text=True)
    assert connections_in(db, workspace.id) == []
    assert connect(client, path, account="sbx-1002").status_code == 303
    assert [c.handle for c in connections_in(db, workspace.id)] == ["northwind"]


def test_picker_disables_unexpected_sub_accounts_and_refuses_them(client, db, runtime):
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["facebook"], expected_accounts=["9001002"])
    select_path = connect(client, path, platform="facebook").headers["Location"]
    page = client.get(select_path).get_data(as_text=True)
    assert "Not one of the accounts this link is for" in page
    assert candidates_on(client, select_path) == ["9001001", "9001002"]
    assert client.post(select_path, data={"account": ["9001001"]}).status_code == 403
    assert connections_in(db, workspace.id) == []


def test_reconnect_link_refuses_a_different_account_and_updates_the_same_one(client, db, runtime):
    member, workspace, _, path = setup_link(db, runtime.deps)
    connect(client, path, account="sbx-1001")
    [original] = connections_in(db, workspace.id)
    original_id, original_token = original.id, original.access_token_enc
    login(client, member.email)
    page = client.post(f"/admin/connections/{original_id}/reconnect-link", data={"csrf_token": csrf_from(client)},
                       follow_redirects=True).get_data(as_text=True)
    assert "Reconnect link" in page
    import re

    reconnect_path = urlsplit(re.search(r'data-copy="(http://portal\.test/c/[^"]+)"', page).group(1)).path

    swapped = connect(client, reconnect_path, account="sbx-1002")
    html = swapped.get_data(as_text=True)
    assert swapped.status_code == 409
    assert "@bluebottlebakery" in html and "@northwind" in html and "Nothing was changed" in html
    [still] = connections_in(db, workspace.id)
    assert (still.id, still.external_id, still.access_token_enc) == (original_id, "sbx-1001", original_token)

    assert connect(client, reconnect_path, account="sbx-1001").status_code == 303
    [renewed] = connections_in(db, workspace.id)
    assert renewed.id == original_id and renewed.access_token_enc != original_token


def test_reconnect_link_is_single_use_and_scoped_to_the_platform(client, db, runtime):
    member, workspace, _, path = setup_link(db, runtime.deps)
    connect(client, path, account="sbx-1001")
    [connection] = connections_in(db, workspace.id)
    link = links.create_reconnect_link(db, runtime.deps, member.agency_id, connection.id, SYSTEM)
    db.commit()
    assert (link.allowed_platforms, link.max_uses, link.reconnect_connection_id) == (["sandbox"], 1, connection.id)
    reconnect_path = urlsplit(links.link_url(runtime.deps, link)).path
    assert connect(client, reconnect_path, account="sbx-1001").status_code == 303
    assert client.get(reconnect_path).status_code == 410


def test_expected_accounts_input_is_validated(client, db, runtime):
    import pytest

    from portal.errors import ValidationFailed

    with pytest.raises(ValidationFailed):
        setup_link(db, runtime.deps, expected_accounts=["two words"])
    db.rollback()
    _, workspace, _, path = all_platforms_link(db, runtime.deps, ["facebook"])
    select(client, connect(client, path, platform="facebook").headers["Location"], ["9001001"])
    assert len(connections_in(db, workspace.id)) == 1
