"""Races on completion: a single-use link and a duplicate account, completed at the same moment."""

from __future__ import annotations

import threading

from portal.models import ConnectLink
from tests.helpers import connections_in, consent, fresh, local_path, setup_link, start_flow


def _complete_together(app, callbacks: list[str], browser) -> list[int]:
    """Each callback from its own client, all carrying the starting browser's flow cookie."""
    barrier = threading.Barrier(len(callbacks))
    statuses: list[int] = []
    cookie = browser.get_cookie("easyconnect_flow").value

    def run(url: str) -> None:
        client = app.test_client()
        client.set_cookie("easyconnect_flow", cookie)
        barrier.wait()
        statuses.append(client.get(url).status_code)

    threads = [threading.Thread(target=run, args=(url,)) for url in callbacks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return sorted(statuses)


def test_concurrent_completions_of_a_single_use_link_give_one_connection(app, client, db, runtime):
    _, workspace, link, path = setup_link(db, runtime.deps, max_uses=1)
    callbacks = [local_path(consent(start_flow(client, path), account=account))
                 for account in ("sbx-1001", "sbx-1002", "sbx-1003")]

    statuses = _complete_together(app, callbacks, client)

    assert statuses == [303, 410, 410]
    assert len(connections_in(db, workspace.id)) == 1
    fresh(db)
    assert db.get(ConnectLink, link.id).uses == 1


def test_concurrent_connects_of_the_same_account_collapse_into_one_row(app, client, db, runtime):
    _, workspace, link, path = setup_link(db, runtime.deps)
    callbacks = [local_path(consent(start_flow(client, path), account="sbx-1002")) for _ in range(3)]

    statuses = _complete_together(app, callbacks, client)

    assert statuses == [303, 303, 303]
    [connection] = connections_in(db, workspace.id)
    assert connection.external_id == "sbx-1002"
    fresh(db)
    assert db.get(ConnectLink, link.id).uses == 3
