"""Key rotation rehearsed: every secret re-encrypted, the old key dropped, everything still readable."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select

from portal.config import new_token_key, parse_token_keys
from portal.models import Connection, ProviderApp
from portal.runtime import build_runtime
from portal.services import keys, platforms
from portal.services.audit import SYSTEM
from portal.services.connections import read_tokens
from tests.helpers import connect, connections_in, fresh, setup_link


def test_rotation_covers_every_secret_and_survives_dropping_the_old_key(client, db, runtime, settings):
    member, workspace, _, path = setup_link(db, runtime.deps)
    connect(client, path)
    platforms.save_agency_app(db, runtime.deps, member.agency_id, "x", "agency-x", "agency-x-secret", SYSTEM)
    db.commit()
    [connection] = connections_in(db, workspace.id)
    before = read_tokens(runtime.deps, connection)
    old_keys = settings.token_keys
    new_key = parse_token_keys(new_token_key())
    rotated_rt = build_runtime(replace(settings, token_keys=new_key + old_keys))
    only_new = build_runtime(replace(settings, token_keys=new_key))
    try:
        count = keys.rotate_all(rotated_rt.session_factory, rotated_rt.deps.cipher)
        assert count >= 3  # access token, refresh token, the agency's app secret
        assert keys.rotate_all(rotated_rt.session_factory, rotated_rt.deps.cipher) == 0  # idempotent
        fresh(db)
        row = db.get(Connection, connection.id)
        assert read_tokens(only_new.deps, row) == before
        app_row = db.scalar(select(ProviderApp))
        spec = platforms.spec_for(settings, "x")
        assert platforms.app_for(db, only_new.deps, member.agency_id, spec).client_secret == "agency-x-secret"
        assert app_row.client_secret_enc.startswith(f"v1.{only_new.deps.cipher.current_kid}.")
    finally:
        rotated_rt.close()
        only_new.close()


def test_rotation_never_overwrites_a_newer_token(client, db, runtime, settings):
    _, workspace, _, path = setup_link(db, runtime.deps)
    connect(client, path)
    [connection] = connections_in(db, workspace.id)
    stale = connection.access_token_enc
    # A refresh commits between rotation's read and write: the compare-and-swap must skip the row.
    from sqlalchemy import update

    rotated_rt = build_runtime(replace(settings, token_keys=parse_token_keys(new_token_key()) + settings.token_keys))
    try:
        with rotated_rt.session_factory() as other:
            other.execute(update(Connection).where(Connection.id == connection.id, Connection.access_token_enc == stale)
                          .values(access_token_enc=rotated_rt.deps.cipher.rotate(
                              stale, f"connections:{connection.id}:access_token")))
            other.commit()
        fresh(db)
        newer = db.get(Connection, connection.id).access_token_enc
        assert newer != stale
        keys.rotate_all(rotated_rt.session_factory, rotated_rt.deps.cipher)
        fresh(db)
        assert db.get(Connection, connection.id).access_token_enc == newer
    finally:
        rotated_rt.close()
