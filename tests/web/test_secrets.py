"""No token in clear: not in the database, the logs, any page, an audit event or a repr."""

from __future__ import annotations

import logging

import sqlalchemy as sa

from portal.db import Base
from portal.services.connections import token_context
from tests.helpers import connect, connections_in, csrf_from, login, setup_link


def _plain_tokens(runtime, connection) -> list[str]:
    cipher = runtime.deps.cipher
    return [cipher.decrypt(connection.access_token_enc, token_context(connection, "access")),
            cipher.decrypt(connection.refresh_token_enc, token_context(connection, "refresh"))]


def test_tokens_never_appear_in_clear(client, db, runtime, caplog):
    caplog.set_level(logging.DEBUG)
    member, workspace, _, path = setup_link(db, runtime.deps)
    done = connect(client, path).headers["Location"]
    [connection] = connections_in(db, workspace.id)
    login(client, member.email)
    client.post(f"/admin/connections/{connection.id}/refresh", data={"csrf_token": csrf_from(client)})
    [connection] = connections_in(db, workspace.id)
    secrets = _plain_tokens(runtime, connection)
    assert all(len(s) > 20 for s in secrets)

    dump = []
    with runtime.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                dump.append(repr(tuple(row)))
    database_text = "\n".join(dump)
    pages = "\n".join(client.get(url).get_data(as_text=True) for url in (
        path, done, "/admin/", f"/admin/workspaces/{workspace.id}", f"/admin/connections/{connection.id}",
        "/admin/links", "/admin/audit"))
    logs = "\n".join(record.getMessage() for record in caplog.records)
    for secret in secrets:
        assert secret not in database_text
        assert secret not in pages
        assert secret not in logs
    assert repr(connection).count("token") == 0


def test_link_tokens_and_codes_are_redacted_from_access_logs(client, db, runtime, caplog):
    from portal.logsafe import redact

    *_, path = setup_link(db, runtime.deps)
    token = path.rsplit("/", 1)[1]
    line = f'"GET {path} HTTP/1.1" 200 - "GET /oauth/callback/sandbox?code=abc123&state=xyz HTTP/1.1"'
    cleaned = redact(line)
    assert token not in cleaned and "abc123" not in cleaned and "xyz" not in cleaned


def test_settings_and_grants_hide_secrets_in_repr(runtime):
    from portal.oauth import AppCredentials, TokenGrant

    text = repr(runtime.settings) + repr(runtime.deps.cipher)
    for key in runtime.settings.link_keys + runtime.settings.secret_keys:
        assert key not in text
    grant = TokenGrant("at-secret", "rt-secret", None, None, ())
    assert "secret" not in repr(grant) and "secret" not in repr(AppCredentials("id", "cs-secret"))
