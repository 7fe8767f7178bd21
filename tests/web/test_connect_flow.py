"""The EasyConnect link end to end: Authlib's real HTTP client against the live sandbox."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from portal.models import AuditEvent, ConnectAttempt, ConnectLink, Health
from tests.helpers import connect, connections_in, consent, fresh, local_path, setup_link, start_flow


def test_full_flow_stores_an_encrypted_healthy_connection(client, db, runtime, live_sandbox):
    _, workspace, link, path = setup_link(db, runtime.deps)
    before = live_sandbox.counters().get("code_exchanges", 0)

    response = connect(client, path, account="sbx-1002")

    assert response.status_code == 303
    done = client.get(response.headers["Location"])
    assert done.status_code == 200
    assert "Northwind Outfitters" in done.get_data(as_text=True)
    [connection] = connections_in(db, workspace.id)
    assert (connection.external_id, connection.display_name, connection.handle) == (
        "sbx-1002", "Northwind Outfitters", "northwind")
    assert connection.health == Health.HEALTHY
    assert connection.access_token_enc.startswith("v1.") and connection.refresh_token_enc.startswith("v1.")
    assert connection.token_expires_at is not None and connection.scopes == "profile publish"
    assert connection.avatar_url.endswith("/sandbox/avatars/sbx-1002.svg")
    assert live_sandbox.counters()["code_exchanges"] == before + 1
    fresh(db)
    assert db.get(ConnectLink, link.id).uses == 1
    actions = set(db.scalars(select(AuditEvent.action)))
    assert "connection.created" in actions


def test_authorize_request_uses_pkce_s256_and_exact_redirect(client, db, runtime):
    *_, path = setup_link(db, runtime.deps)
    url = start_flow(client, path)
    assert "code_challenge_method=S256" in url and "code_challenge=" in url
    assert "redirect_uri=http%3A%2F%2Fportal.test%2Foauth%2Fcallback%2Fsandbox" in url
    assert "code_verifier" not in url
    attempt = db.scalar(select(ConnectAttempt))
    assert attempt.verifier_enc.startswith("v1.")  # the verifier is stored encrypted, server side


def test_connecting_the_same_account_again_updates_the_same_row(client, db, runtime):
    _, workspace, _, path = setup_link(db, runtime.deps)
    connect(client, path, account="sbx-1001")
    [first] = connections_in(db, workspace.id)
    first_id, first_version, first_token = first.id, first.token_version, first.access_token_enc
    connect(client, path, account="sbx-1001")
    [again] = connections_in(db, workspace.id)
    assert again.id == first_id
    assert again.token_version > first_version
    assert again.access_token_enc != first_token


def test_two_accounts_give_two_connections(client, db, runtime):
    _, workspace, _, path = setup_link(db, runtime.deps)
    connect(client, path, account="sbx-1001")
    connect(client, path, account="sbx-1003")
    assert sorted(c.external_id for c in connections_in(db, workspace.id)) == ["sbx-1001", "sbx-1003"]


def test_link_page_shows_branding_and_sets_privacy_headers(client, db, runtime):
    *_, path = setup_link(db, runtime.deps)
    response = client.get(path)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "Acme Agency" in html and "Sandbox" in html
    assert "--brand: #4f46e5" in html


def test_opening_the_page_never_consumes_a_use(client, db, runtime):
    _, _, link, path = setup_link(db, runtime.deps, max_uses=1)
    for _ in range(5):
        assert client.get(path).status_code == 200
    runtime.view_counts.flush()  # views are written in batches
    fresh(db)
    row = db.get(ConnectLink, link.id)
    assert (row.uses, row.opened_count) == (0, 5)


def test_tampered_and_unknown_links_are_404(client, db, runtime):
    *_, path = setup_link(db, runtime.deps)
    token = path.rsplit("/", 1)[1]
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for bad in (f"/c/{tampered}", "/c/not-a-token", "/c/" + "x" * 5000):
        response = client.get(bad)
        assert response.status_code == 404
        assert "Traceback" not in response.get_data(as_text=True)
    signed_unknown = runtime.deps.signer.sign("no-such-token-id")
    assert client.get(f"/c/{signed_unknown}").status_code == 404


def test_link_signed_with_another_purpose_key_is_refused(client, db, runtime):
    *_, path = setup_link(db, runtime.deps)
    from itsdangerous import URLSafeSerializer

    token_id = runtime.deps.signer.unsign(path.rsplit("/", 1)[1])
    forged = URLSafeSerializer(runtime.settings.secret_keys[0]).dumps(token_id)  # session key, no link salt
    assert client.get(f"/c/{forged}").status_code == 404


def test_expired_revoked_and_used_up_links_get_a_branded_410(client, db, runtime):
    _, _, link, path = setup_link(db, runtime.deps, max_uses=1)
    connect(client, path)
    used_up = client.get(path)
    assert used_up.status_code == 410 and "Acme Agency" in used_up.get_data(as_text=True)

    _, _, link2, path2 = setup_link(db, runtime.deps)
    db.get(ConnectLink, link2.id).expires_at = runtime.deps.now() - timedelta(seconds=1)
    db.commit()
    expired = client.get(path2)
    assert expired.status_code == 410 and "expired" in expired.get_data(as_text=True)

    _, _, link3, path3 = setup_link(db, runtime.deps)
    db.get(ConnectLink, link3.id).revoked_at = runtime.deps.now()
    db.commit()
    revoked = client.get(path3)
    assert revoked.status_code == 410 and "turned off" in revoked.get_data(as_text=True)
    assert client.post(path3 + "/connect/sandbox").status_code == 410


def test_link_revoked_between_start_and_callback_stores_nothing(client, db, runtime):
    _, workspace, link, path = setup_link(db, runtime.deps)
    callback = consent(start_flow(client, path))
    db.get(ConnectLink, link.id).revoked_at = runtime.deps.now()
    db.commit()
    response = client.get(local_path(callback))
    assert response.status_code == 410
    assert connections_in(db, workspace.id) == []


def test_platform_not_on_the_link_is_refused(client, db, runtime):
    *_, path = setup_link(db, runtime.deps)
    assert client.post(path + "/connect/facebook").status_code == 404
    assert client.get(path + "/connect/sandbox").status_code == 405  # starting is never a GET


def test_done_page_needs_the_right_link(client, db, runtime):
    _, _, _, path = setup_link(db, runtime.deps)
    done_url = connect(client, path).headers["Location"]
    attempt_id = done_url.rsplit("/", 1)[1]
    *_, other_path = setup_link(db, runtime.deps)
    assert client.get(f"{other_path}/done/{attempt_id}").status_code == 404
