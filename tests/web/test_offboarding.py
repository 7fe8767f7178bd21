"""Offboarding: deleting a workspace (admin panel and API) or a whole agency. Tokens go at once and are
revoked at the (live) sandbox; links, logins, API keys and webhooks stop; another agency is untouched;
the rest is purged after the retention period."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import redis as redis_lib
from rq import Queue
from sqlalchemy import func, select

from portal.app import create_app
from portal.models import (
    Agency,
    ApiKey,
    AuditEvent,
    ConnectAttempt,
    Connection,
    ConnectLink,
    Member,
    WebhookEndpoint,
    WebhookEvent,
    Workspace,
)
from portal.queue import DEFAULT_QUEUE, SEALED_PREFIX
from portal.services import connections, offboarding, webhooks
from portal.services.audit import SYSTEM
from tests.api.support import auth, make_key
from tests.conftest import REDIS_URL
from tests.helpers import connect, connections_in, csrf_from, fresh, login, make_link, make_member, make_workspace


def _agency_with_connections(app, db, runtime, name: str, accounts=("sbx-1001", "sbx-1002")):
    """An owner, two workspaces (the first with ``accounts`` connected), a link in each, a read_write key
    and a webhook endpoint."""
    owner = make_member(db, name)
    first, second = make_workspace(db, owner.agency_id, "Client One"), make_workspace(db, owner.agency_id, "Client Two")
    link, path = make_link(db, runtime.deps, first)
    for account in accounts:
        connect(app.test_client(), path, account=account)
    other_link, other_path = make_link(db, runtime.deps, second)
    connect(app.test_client(), other_path, account="sbx-1003")
    webhooks.create_endpoint(fresh(db), runtime.deps, owner.agency_id, "http://127.0.0.1:9/hook", SYSTEM)
    db.commit()
    key = make_key(db, runtime, owner.agency_id)
    return owner, first, second, (link, path), (other_link, other_path), key


def _snapshot(db, agency_id):
    fresh(db)
    return sorted((c.id, c.access_token_enc, c.refresh_token_enc, c.token_version)
                  for c in db.scalars(select(Connection).where(Connection.agency_id == agency_id)))


def test_deleting_a_workspace_in_the_admin(app, client, db, runtime, live_sandbox):
    owner, first, second, (link, path), (_, other_path), key = _agency_with_connections(app, db, runtime, "Alpha")
    rival = _agency_with_connections(app, db, runtime, "Rival", accounts=("sbx-1001",))
    rival_before = _snapshot(db, rival[0].agency_id)
    kept = [c.id for c in connections_in(db, second.id)]
    doomed = connections_in(db, first.id)
    assert len(doomed) == 2
    login(client, owner.email)
    token = csrf_from(client, f"/admin/workspaces/{first.id}/delete")
    wrong = client.post(f"/admin/workspaces/{first.id}/delete", data={"confirm_name": "client one",
                                                                       "csrf_token": token})
    assert wrong.status_code == 400 and "Type the workspace" in wrong.get_data(as_text=True)
    assert len(connections_in(db, first.id)) == 2
    before = live_sandbox.counters().get("revocations", 0)
    done = client.post(f"/admin/workspaces/{first.id}/delete", data={"confirm_name": "Client One",
                                                                      "csrf_token": token})
    assert done.status_code == 302
    assert live_sandbox.counters().get("revocations", 0) == before + 2  # one per grant, at the platform
    fresh(db)
    assert connections_in(db, first.id) == []  # rows and tokens gone at once
    assert db.scalars(select(ConnectAttempt.pending_enc).join(ConnectLink, ConnectAttempt.link_id == ConnectLink.id)
                      .where(ConnectLink.workspace_id == first.id, ConnectAttempt.pending_enc.is_not(None))).all() == []
    workspace = db.get(Workspace, first.id)
    assert workspace.deleted_at is not None and db.get(ConnectLink, link.id).revoked_at is not None
    assert app.test_client().get(path).status_code == 410  # the client's link stops
    assert client.get(f"/admin/workspaces/{first.id}").status_code == 404
    assert "Client One" not in client.get("/admin/").get_data(as_text=True)
    assert app.test_client().get(other_path).status_code == 200  # the other workspace lives on
    assert [c.id for c in connections_in(db, second.id)] == kept
    assert _snapshot(db, rival[0].agency_id) == rival_before
    event = db.scalar(select(AuditEvent).where(AuditEvent.action == "workspace.deleted"))
    assert event.agency_id == owner.agency_id and event.details["connections"] == 2
    types = db.scalars(select(WebhookEvent.type).where(WebhookEvent.agency_id == owner.agency_id)).all()
    assert types.count("connection.deleted") == 2
    headers = auth(key)
    assert client.get(f"/api/v1/workspaces/{first.id}", headers=headers).status_code == 404
    assert first.id not in client.get("/api/v1/workspaces?archived=all", headers=headers).get_data(as_text=True)


def test_deleting_a_workspace_through_the_api(app, client, db, runtime, live_sandbox):
    owner, first, second, (link, path), _, key = _agency_with_connections(app, db, runtime, "Alpha")
    rival = make_member(db, "Rival")
    rival_key = make_key(db, runtime, rival.agency_id)
    read_key = make_key(db, runtime, owner.agency_id, "read")
    url = f"/api/v1/workspaces/{first.id}"
    assert client.delete(url, headers=auth(read_key)).status_code == 403
    assert client.delete(url, headers=auth(rival_key)).status_code == 404
    assert client.delete(url + "?confirm=1", headers=auth(key)).status_code == 400
    assert len(connections_in(db, first.id)) == 2
    before = live_sandbox.counters().get("revocations", 0)
    response = client.delete(url, headers=auth(key))
    assert response.status_code == 200
    assert response.get_json() == {"id": first.id, "object": "workspace", "deleted": True, "connections_deleted": 2,
                                   "purge_after_days": 30}
    assert live_sandbox.counters().get("revocations", 0) == before + 2
    assert connections_in(db, first.id) == [] and len(connections_in(db, second.id)) == 1
    assert client.delete(url, headers=auth(key)).status_code == 404
    assert client.get(url, headers=auth(key)).status_code == 404
    assert app.test_client().get(path).status_code == 410


def test_deleting_the_agency(app, client, db, runtime, live_sandbox):
    owner, first, _, (_, path), (_, other_path), key = _agency_with_connections(app, db, runtime, "Alpha")
    rival_owner, rival_ws, _, _, (_, rival_path), rival_key = _agency_with_connections(
        app, db, runtime, "Rival", accounts=("sbx-1001",))
    rival_before = _snapshot(db, rival_owner.agency_id)
    login(client, owner.email)
    token = csrf_from(client, "/admin/agency/delete")
    assert client.post("/admin/agency/delete", data={"confirm_name": "Rival", "csrf_token": token}).status_code == 400
    assert fresh(db).get(Agency, owner.agency_id).deleted_at is None
    before = live_sandbox.counters().get("revocations", 0)
    response = client.post("/admin/agency/delete", data={"confirm_name": "Alpha", "csrf_token": token})
    assert response.status_code == 302 and "/admin/login" in response.headers["Location"]
    assert live_sandbox.counters().get("revocations", 0) == before + 3
    fresh(db)
    assert db.get(Agency, owner.agency_id).deleted_at is not None
    assert db.scalars(select(Connection).where(Connection.agency_id == owner.agency_id)).all() == []
    # nobody logs in, no key works, no link opens, no webhook is sent
    assert client.get("/admin/").status_code == 302
    assert login(app.test_client(), owner.email).status_code == 401
    assert client.get("/api/v1/workspaces", headers=auth(key)).status_code == 401
    assert app.test_client().get(path).status_code == 410 and app.test_client().get(other_path).status_code == 410
    assert db.scalars(select(WebhookEndpoint).where(WebhookEndpoint.agency_id == owner.agency_id)).all() == []
    assert webhooks.record(db, owner.agency_id, "link.opened", {}) is None
    db.rollback()
    assert db.scalars(select(ApiKey.revoked_at).where(ApiKey.agency_id == owner.agency_id)).all() != [None]
    # the other agency is untouched
    assert _snapshot(db, rival_owner.agency_id) == rival_before
    assert app.test_client().get(rival_path).status_code == 200
    assert client.get("/api/v1/workspaces", headers=auth(rival_key)).status_code == 200
    rival_client = app.test_client()
    assert login(rival_client, rival_owner.email).status_code == 302
    assert rival_client.get(f"/admin/workspaces/{rival_ws.id}").status_code == 200
    assert len(db.scalars(select(WebhookEndpoint).where(WebhookEndpoint.agency_id == rival_owner.agency_id)).all()) == 1


def test_what_is_left_is_purged_after_the_retention_period_only(app, client, db, runtime, live_sandbox):
    owner, first, second, *_ = _agency_with_connections(app, db, runtime, "Alpha")
    gone, _, _, _, _, _ = _agency_with_connections(app, db, runtime, "Gone", accounts=("sbx-1001",))
    rival, *_ = _agency_with_connections(app, db, runtime, "Rival", accounts=("sbx-1002",))
    rival_before = _snapshot(db, rival.agency_id)
    gone_id, first_id, second_id, alpha_id = gone.agency_id, first.id, second.id, owner.agency_id
    fresh(db)
    result = offboarding.delete_workspace(db, runtime.deps, owner.agency_id, first.id, "Client One", SYSTEM)
    db.commit()
    offboarding.revoke_sealed(db, runtime.deps, result.seal_id, result.sealed)
    result = offboarding.delete_agency(db, runtime.deps, gone.agency_id, "Gone", SYSTEM)
    db.commit()
    retention = timedelta(days=30)
    now = runtime.deps.now()
    assert offboarding.purge_offboarded(db, now + timedelta(days=29), retention) == {"workspaces": 0, "agencies": 0}
    db.commit()
    assert fresh(db).get(Workspace, first_id) is not None and db.get(Agency, gone_id) is not None
    assert offboarding.purge_offboarded(db, now + timedelta(days=31), retention) == {"workspaces": 1, "agencies": 1}
    db.commit()
    fresh(db)
    assert db.get(Workspace, first_id) is None
    assert db.scalars(select(ConnectLink).where(ConnectLink.workspace_id == first_id)).all() == []
    assert db.get(Workspace, second_id) is not None and db.get(Agency, alpha_id).deleted_at is None
    assert db.get(Agency, gone_id) is None
    for model in (Member, Workspace, ConnectLink, Connection, AuditEvent, ApiKey, WebhookEvent):
        assert db.scalar(select(func.count()).select_from(model).where(model.agency_id == gone_id)) == 0
    assert _snapshot(db, rival.agency_id) == rival_before
    assert db.scalar(select(func.count()).select_from(WebhookEndpoint).where(
        WebhookEndpoint.agency_id == rival.agency_id)) == 1


def test_revocations_run_in_a_worker_job_with_only_an_id_and_ciphertext_in_redis(settings, db, live_sandbox):
    app = create_app(replace(settings, redis_url=REDIS_URL))
    rt = app.extensions["easyconnect"]
    redis = redis_lib.Redis.from_url(REDIS_URL)
    redis.flushdb()
    try:
        owner, first, _, _, _, key = _agency_with_connections(app, db, rt, "Alpha", accounts=("sbx-1001",))
        [connection] = connections_in(db, first.id)
        access, refresh = connections.read_tokens(rt.deps, connection)
        before = live_sandbox.counters().get("revocations", 0)
        response = app.test_client().delete(f"/api/v1/workspaces/{first.id}", headers=auth(key))
        assert response.status_code == 200
        assert connections_in(db, first.id) == []  # gone before any revocation ran
        assert live_sandbox.counters().get("revocations", 0) == before
        [job] = Queue(DEFAULT_QUEUE, connection=redis).get_jobs()
        assert job.func_name == "workers.jobs.revoke_offboarded"
        [seal_id] = job.args
        stashed = redis.get(SEALED_PREFIX + seal_id).decode()
        everything = b"".join(redis.dump(k) or b"" for k in redis.keys("*")).decode("latin-1")
        for secret in (access, refresh):
            assert secret and secret not in stashed and secret not in everything
        from workers import jobs

        assert jobs.revoke_offboarded(seal_id, runtime=rt) == {"revoked": 1, "failed": 0}
        assert live_sandbox.counters().get("revocations", 0) == before + 1
        assert redis.get(SEALED_PREFIX + seal_id) is None
        assert jobs.revoke_offboarded(seal_id, runtime=rt) == {}  # a retry finds nothing left to do
    finally:
        redis.flushdb()
        redis.close()
        with rt.engine.begin() as conn:
            from portal.db import Base

            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())
        rt.close()


def test_a_failing_platform_never_keeps_a_token(app, client, db, runtime, live_sandbox):
    owner, first, *_ = _agency_with_connections(app, db, runtime, "Alpha", accounts=("sbx-1001",))
    result = offboarding.delete_workspace(fresh(db), runtime.deps, owner.agency_id, first.id, "Client One", SYSTEM)
    db.commit()
    assert connections_in(db, first.id) == []  # gone before the platform is even asked
    # the platform is unreachable: the revocation fails, is logged and counted, and nothing comes back
    unreachable = replace(runtime.deps, settings=replace(runtime.settings, sandbox_url="http://127.0.0.1:9/sandbox"))
    before = live_sandbox.counters().get("revocations", 0)
    assert offboarding.revoke_sealed(db, unreachable, result.seal_id, result.sealed) == {"revoked": 0, "failed": 1}
    assert live_sandbox.counters().get("revocations", 0) == before
    assert connections_in(db, first.id) == []
    assert fresh(db).scalar(select(AuditEvent).where(AuditEvent.action == "offboarding.revoked")).details == {
        "revoked": 0, "failed": 1}


# A sealed bundle never outlives its job in Redis ------------------------------------------------------------

def test_a_sealed_bundle_is_dropped_when_its_job_cannot_be_enqueued(runtime, redis_client):
    from portal import queue

    rt = replace(runtime, redis=redis_client)
    redis_client.flushdb()
    try:
        # the queue's list is not a list: Redis refuses the push after the bundle was stashed
        redis_client.set("rq:queue:" + DEFAULT_QUEUE, "not a list")
        assert queue.enqueue_sealed(rt, "workers.jobs.revoke_offboarded", "seal-enqueue-fails", "v1.k.ciphertext") \
            is False
        assert redis_client.get(SEALED_PREFIX + "seal-enqueue-fails") is None  # the caller revokes inline instead
        redis_client.delete("rq:queue:" + DEFAULT_QUEUE)
        assert queue.enqueue_sealed(rt, "workers.jobs.revoke_offboarded", "seal-enqueued", "v1.k.ciphertext") is True
        assert redis_client.get(SEALED_PREFIX + "seal-enqueued") == b"v1.k.ciphertext"  # kept for its job
    finally:
        redis_client.flushdb()


def test_a_revocation_job_that_fails_drops_its_sealed_bundle(runtime, redis_client):
    import pytest

    from portal.security.crypto import DecryptionError
    from workers import jobs

    rt = replace(runtime, redis=redis_client)
    redis_client.flushdb()
    try:
        # sealed for another offboarding: it does not decrypt here, the job fails
        redis_client.set(SEALED_PREFIX + "seal-broken", runtime.deps.cipher.encrypt('{"items": []}', "elsewhere"))
        with pytest.raises(DecryptionError):
            jobs.revoke_offboarded("seal-broken", runtime=rt)
        assert redis_client.get(SEALED_PREFIX + "seal-broken") is None
    finally:
        redis_client.flushdb()
