"""Custom domains are served only after a DNS TXT proof, looked up on a real DNS server on loopback: an
unproven claim serves nothing and blocks nobody; the first proof wins and clears the other claims."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import select

from portal.db import make_session_factory
from portal.errors import ValidationFailed
from portal.models import Agency, AuditEvent, ConnectLink
from portal.services import branding, domains, links, offboarding
from portal.services.audit import SYSTEM
from tests.helpers import csrf_from, fresh, login, make_member, setup_link
from tests.web.test_team import team_of

DOMAIN = "connect.acme.example"
RECORD = f"_easyconnect-challenge.{DOMAIN}"


@pytest.fixture(autouse=True)
def _cleaned(runtime):
    """Asking for the runtime empties the tables after each test: a proof left behind would block the next."""


def _save(db, agency_id, domain=DOMAIN):
    agency = branding.save_agency_settings(db, agency_id, SYSTEM, custom_domain=domain, default_language="",
                                           portal_host="portal.test")
    db.commit()
    return agency


def _verify(db, domain_app, agency_id):
    on = domain_app.extensions["easyconnect"].deps
    try:
        agency = domains.verify(db, on.settings, agency_id, SYSTEM, on.now())
    except ValidationFailed:
        db.rollback()
        raise
    db.commit()
    return agency


def _record_of(db, agency_id):
    agency = fresh(db).get(Agency, agency_id)
    return domains.challenge_for(agency.custom_domain, agency.custom_domain_token)


def test_an_unproven_domain_serves_nothing_and_links_stay_on_the_portal(on_domain, db, runtime, domain_app):
    member, _, link, path = setup_link(db, runtime.deps)
    _save(db, member.agency_id)
    assert on_domain.get(path, base_url=f"http://{DOMAIN}").status_code == 404
    assert on_domain.get(path, base_url="http://portal.test").status_code == 200
    on = domain_app.extensions["easyconnect"].deps
    assert links.link_url(on, fresh(db).get(ConnectLink, link.id)).startswith("http://portal.test/c/")


def test_the_challenge_is_random_per_claim(db):
    first, second = make_member(db), make_member(db, "Second")
    one, two = _save(db, first.agency_id), _save(db, second.agency_id)
    assert one.custom_domain_token and two.custom_domain_token and one.custom_domain_token != two.custom_domain_token
    record = _record_of(db, first.agency_id)
    assert record.name == RECORD and record.value == f"easyconnect-verify={one.custom_domain_token}"


@pytest.mark.parametrize(("published", "message"), [
    (None, f"No TXT record found at {RECORD}"),
    ([], f"No TXT record found at {RECORD}"),  # the name exists, without a TXT record
    (["easyconnect-verify=someone-elses-token", "v=spf1 -all"], "does not hold easyconnect-verify="),
])
def test_a_missing_or_wrong_record_is_refused_clearly(db, domain_app, dns_records, published, message):
    member = make_member(db)
    _save(db, member.agency_id)
    if published is not None:
        dns_records[RECORD] = published
    with pytest.raises(ValidationFailed, match=message):
        _verify(db, domain_app, member.agency_id)
    assert fresh(db).get(Agency, member.agency_id).custom_domain_verified_at is None


def test_a_dns_timeout_is_a_clear_message(db, domain_app, silent_dns):
    member = make_member(db)
    _save(db, member.agency_id)
    on = domain_app.extensions["easyconnect"].deps
    silent = replace(on.settings, dns_nameservers=(silent_dns.address,))
    with pytest.raises(ValidationFailed, match=f"DNS lookup of {RECORD} timed out"):
        domains.verify(db, silent, member.agency_id, SYSTEM, on.now())
    db.rollback()
    assert fresh(db).get(Agency, member.agency_id).custom_domain_verified_at is None


def test_a_proven_domain_serves_the_agency_and_links_use_it(on_domain, db, runtime, domain_app, dns_records):
    member, _, link, path = setup_link(db, runtime.deps)
    _save(db, member.agency_id)
    record = _record_of(db, member.agency_id)
    dns_records[RECORD] = ["v=spf1 -all", record.value]  # other TXT values beside ours are fine
    _verify(db, domain_app, member.agency_id)
    agency = fresh(db).get(Agency, member.agency_id)
    assert agency.custom_domain_verified_at is not None
    assert on_domain.get(path, base_url=f"http://{DOMAIN}").status_code == 200
    on = domain_app.extensions["easyconnect"].deps
    assert links.link_url(on, fresh(db).get(ConnectLink, link.id)).startswith(f"http://{DOMAIN}/c/")
    audited = fresh(db).scalars(select(AuditEvent).where(AuditEvent.agency_id == member.agency_id,
                                                        AuditEvent.action == "agency.domain_verified")).all()
    assert [event.details["custom_domain"] for event in audited] == [DOMAIN]


def test_changing_the_domain_needs_a_new_proof(on_domain, db, runtime, prove, dns_records, domain_app):
    member, _, _, path = setup_link(db, runtime.deps)
    proven = prove(member.agency_id, DOMAIN)
    old_token, verified_at = proven.custom_domain_token, proven.custom_domain_verified_at
    kept = _save(db, member.agency_id, DOMAIN.upper())  # the same domain: proof and token kept
    assert (kept.custom_domain_token, kept.custom_domain_verified_at) == (old_token, verified_at)
    moved = _save(db, member.agency_id, "portal.acme.example")
    assert moved.custom_domain_verified_at is None and moved.custom_domain_token != old_token
    assert on_domain.get(path, base_url="http://portal.acme.example").status_code == 404
    assert on_domain.get(path, base_url=f"http://{DOMAIN}").status_code == 404  # the old domain is let go too
    dns_records["_easyconnect-challenge.portal.acme.example"] = [f"easyconnect-verify={old_token}"]
    with pytest.raises(ValidationFailed, match="does not hold"):  # the old domain's record proves nothing here
        _verify(db, domain_app, member.agency_id)
    dns_records["_easyconnect-challenge.portal.acme.example"] = [_record_of(db, member.agency_id).value]
    _verify(db, domain_app, member.agency_id)
    assert on_domain.get(path, base_url="http://portal.acme.example").status_code == 200


def test_a_squatters_claim_does_not_block_the_owner_whose_proof_removes_it(db, prove, domain_app):
    squatter, owner = make_member(db, "Squatter"), make_member(db, "Owner")
    _save(db, squatter.agency_id)
    prove(owner.agency_id, DOMAIN)
    assert fresh(db).get(Agency, squatter.agency_id).custom_domain is None
    dropped = fresh(db).scalars(select(AuditEvent.action).where(AuditEvent.agency_id == squatter.agency_id)).all()
    assert "agency.domain_claim_dropped" in dropped
    with pytest.raises(ValidationFailed, match="already used by another account"):
        _save(db, squatter.agency_id)
    db.rollback()
    with pytest.raises(ValidationFailed, match="Set a custom domain first"):
        _verify(db, domain_app, squatter.agency_id)


def test_two_claims_with_both_records_published_the_first_proof_wins(db, domain_app, dns_records):
    first, second = make_member(db, "First"), make_member(db, "Second")
    _save(db, first.agency_id)
    _save(db, second.agency_id)
    dns_records[RECORD] = [_record_of(db, first.agency_id).value, _record_of(db, second.agency_id).value]
    _verify(db, domain_app, first.agency_id)
    with pytest.raises(ValidationFailed, match="Set a custom domain first"):  # the losing claim was cleared
        _verify(db, domain_app, second.agency_id)
    assert fresh(db).get(Agency, first.agency_id).custom_domain_verified_at is not None


def test_the_admin_page_shows_the_record_to_add_and_verifies(db, runtime, domain_admin, dns_records):
    member, _, _, _ = setup_link(db, runtime.deps)
    admin = domain_admin
    login(admin, member.email)
    assert "Custom domain: not set." in admin.get("/admin/branding").get_data(as_text=True)
    _save(db, member.agency_id)
    record = _record_of(db, member.agency_id)
    page = admin.get("/admin/branding").get_data(as_text=True)
    assert "waiting for DNS proof" in page
    assert f"<code>{record.name}</code>" in page and f'data-copy="{record.value}"' in page
    assert "to <code>portal.test</code>" in page and "Verify now" in page
    failed = admin.post("/admin/branding/domain/verify", data={"csrf_token": csrf_from(admin, "/admin/branding")},
                        follow_redirects=True).get_data(as_text=True)
    assert f"No TXT record found at {RECORD}" in failed
    assert admin.post("/admin/branding/domain/verify").status_code == 400  # CSRF like every form
    dns_records[RECORD] = [record.value]
    admin.post("/admin/branding/domain/verify", data={"csrf_token": csrf_from(admin, "/admin/branding")})
    page = admin.get("/admin/branding").get_data(as_text=True)
    assert "verified on" in page and record.value not in page


def test_a_viewer_cannot_verify(app, client, db):
    members = team_of(app, client, db)
    _save(db, members["owner"][0].agency_id)
    _, viewer = members["viewer"]
    answer = viewer.post("/admin/branding/domain/verify", data={"csrf_token": csrf_from(viewer, "/admin/")})
    assert answer.status_code == 403


def test_a_claim_saved_before_proofs_existed_gets_its_record_when_saved_again(db, domain_app):
    member = make_member(db)
    _save(db, member.agency_id).custom_domain_token = None  # as the migration leaves an older claim
    db.commit()
    assert domains.pending_challenge(fresh(db).get(Agency, member.agency_id)) is None
    with pytest.raises(ValidationFailed, match="Save your domain again"):
        _verify(db, domain_app, member.agency_id)
    assert _save(db, member.agency_id).custom_domain_token


def test_a_domain_changed_during_the_lookup_is_not_verified(db, domain_app, dns_records, dns_server, inspect_engine):
    member = make_member(db)
    _save(db, member.agency_id)
    dns_records[RECORD] = [_record_of(db, member.agency_id).value]
    elsewhere = make_session_factory(inspect_engine)()  # no transaction is held during the lookup: this can write
    dns_server.on_question = lambda name: (_save(elsewhere, member.agency_id, "other.acme.example"), elsewhere.close())
    with pytest.raises(ValidationFailed, match="changed while it was being checked"):
        _verify(db, domain_app, member.agency_id)
    agency = fresh(db).get(Agency, member.agency_id)
    assert agency.custom_domain == "other.acme.example" and agency.custom_domain_verified_at is None


def test_a_proof_landing_during_the_lookup_wins_and_the_slower_one_is_refused(
        db, domain_app, dns_records, dns_server, inspect_engine, runtime):
    slower, faster = make_member(db, "Slower"), make_member(db, "Faster")
    _save(db, slower.agency_id)
    dns_records[RECORD] = [_record_of(db, slower.agency_id).value]
    elsewhere = make_session_factory(inspect_engine)()

    def faster_proof_lands(name):  # as if the other agency's verify committed while this lookup waited
        agency = elsewhere.get(Agency, faster.agency_id)
        agency.custom_domain, agency.custom_domain_verified_at = DOMAIN, runtime.deps.now()
        elsewhere.commit()
        elsewhere.close()

    dns_server.on_question = faster_proof_lands
    portal_db = domain_app.extensions["easyconnect"].session_factory()  # the portal's own: writes start at once
    try:
        with pytest.raises(ValidationFailed, match="already verified by another account"):
            _verify(portal_db, domain_app, slower.agency_id)  # the unique index refuses the second proof
    finally:
        portal_db.close()
    assert fresh(db).get(Agency, slower.agency_id).custom_domain_verified_at is None
    assert fresh(db).get(Agency, faster.agency_id).custom_domain_verified_at is not None


def test_deleting_an_agency_releases_its_proven_domain_at_once(db, prove, runtime):
    gone, next_owner = make_member(db, "Gone"), make_member(db, "Next")
    prove(gone.agency_id, DOMAIN)
    offboarding.delete_agency(db, runtime.deps, gone.agency_id, "Gone", SYSTEM)
    db.commit()
    agency = fresh(db).get(Agency, gone.agency_id)
    assert (agency.custom_domain, agency.custom_domain_token, agency.custom_domain_verified_at) == (None, None, None)
    deleted = fresh(db).scalars(select(AuditEvent.details).where(AuditEvent.agency_id == gone.agency_id,
                                                                 AuditEvent.action == "agency.deleted")).one()
    assert DOMAIN in str(deleted)  # the record of what it had stays in its audit log until the purge
    assert prove(next_owner.agency_id, DOMAIN).custom_domain_verified_at is not None
