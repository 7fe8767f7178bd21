"""Custom domains: validated, proven by DNS (tests/web/test_domain_verification.py), then unique; a proven
agency host renders its pages and links and (with its own app) its OAuth callbacks; another agency's link
there is a 404; Host headers trusted only per ProxyFix."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest

from portal.app import create_app
from portal.errors import ValidationFailed
from portal.models import Agency
from portal.services import branding, domains, links, platforms
from portal.services.audit import SYSTEM
from tests.helpers import csrf_from, fresh, login, make_member, setup_link

DOMAIN = "connect.acme.example"


@pytest.mark.parametrize("value", ["https://connect.acme.example", "connect.acme.example:8443",
                                   "connect.acme.example/path", "127.0.0.1", "10.0.0.1", "localhost",
                                   "portal.test", "evil.portal.test", "-bad.example", "a..example",
                                   "ex ample.com", "x" * 64 + ".example", "acme", "a.b.c.123",
                                   "connect.acme.example\x00.evil", "user@connect.acme.example"])
def test_hostile_domains_are_refused(db, value):
    member = make_member(db)
    with pytest.raises(ValidationFailed):
        branding.save_agency_settings(db, member.agency_id, SYSTEM, custom_domain=value, default_language="",
                                      portal_host="portal.test")


def test_domains_are_normalised_and_unique_once_proven(db, prove):
    first, second, third = make_member(db), make_member(db, "Second"), make_member(db, "Third")
    branding.save_agency_settings(db, first.agency_id, SYSTEM, custom_domain="Bücher.Example.", default_language="fr",
                                  portal_host="portal.test")
    db.commit()
    agency = fresh(db).get(Agency, first.agency_id)
    assert agency.custom_domain == "xn--bcher-kva.example" and agency.default_language == "fr"
    prove(second.agency_id, "xn--bcher-kva.example")  # an unproven claim blocks nobody
    with pytest.raises(ValidationFailed, match="already used"):
        branding.save_agency_settings(db, third.agency_id, SYSTEM, custom_domain="xn--bcher-kva.example",
                                      default_language="", portal_host="portal.test")
    db.rollback()
    with pytest.raises(ValidationFailed, match="Language must be"):
        branding.save_agency_settings(db, third.agency_id, SYSTEM, custom_domain="", default_language="klingon",
                                      portal_host="portal.test")


def test_admin_sets_and_proves_the_domain_and_links_use_it(db, runtime, domain_app, domain_admin, dns_records):
    member, workspace, link, _ = setup_link(db, runtime.deps)
    admin = domain_admin
    login(admin, member.email)
    saved = admin.post("/admin/branding/settings", data={"csrf_token": csrf_from(admin, "/admin/branding"),
                                                         "custom_domain": DOMAIN, "default_language": "de"},
                       follow_redirects=True)
    assert "Settings saved." in saved.get_data(as_text=True)
    on = domain_app.extensions["easyconnect"].deps
    assert links.link_url(on, fresh(db).get(type(link), link.id)).startswith("http://portal.test/c/")  # unproven
    record = domains.challenge_for(DOMAIN, fresh(db).get(Agency, member.agency_id).custom_domain_token)
    dns_records[record.name] = [record.value]
    verified = admin.post("/admin/branding/domain/verify", data={"csrf_token": csrf_from(admin, "/admin/branding")},
                          follow_redirects=True)
    assert f"{DOMAIN} is verified" in verified.get_data(as_text=True)
    url = links.link_url(on, fresh(db).get(type(link), link.id))
    assert url.startswith(f"http://{DOMAIN}/c/")
    assert links.link_url(runtime.deps, db.get(type(link), link.id)).startswith("http://portal.test/c/")  # feature off


def test_the_agencys_host_renders_its_links_and_refuses_anyone_elses(on_domain, db, runtime, prove):
    member, _, _, path = setup_link(db, runtime.deps)
    _, _, _, other_path = setup_link(db, runtime.deps)
    prove(member.agency_id, DOMAIN)
    db.get(Agency, member.agency_id).name = "Acme Social"
    db.commit()
    mine = on_domain.get(path, base_url=f"http://{DOMAIN}")
    assert mine.status_code == 200 and "Acme Social" in mine.get_data(as_text=True)
    assert on_domain.get(other_path, base_url=f"http://{DOMAIN}").status_code == 404  # agency B's link on A's host
    assert on_domain.post(other_path + "/connect/sandbox", base_url=f"http://{DOMAIN}").status_code == 404
    assert on_domain.get(other_path + "/manage", base_url=f"http://{DOMAIN}").status_code == 404
    assert on_domain.get("/admin/login", base_url=f"http://{DOMAIN}").status_code == 404  # client pages only
    assert on_domain.get(path, base_url="http://unknown.example").status_code == 404
    assert on_domain.get(path, base_url="http://portal.test").status_code == 200  # the portal's own host: all
    assert on_domain.get(other_path, base_url="http://portal.test").status_code == 200


def test_forwarded_host_is_not_trusted_without_a_configured_proxy(on_domain, db, runtime, prove):
    member, _, _, path = setup_link(db, runtime.deps)
    _, _, _, other_path = setup_link(db, runtime.deps)
    prove(member.agency_id, DOMAIN)
    spoofed = {"X-Forwarded-Host": DOMAIN}
    assert on_domain.get(path, base_url="http://unknown.example", headers=spoofed).status_code == 404
    assert on_domain.get(other_path, base_url="http://portal.test", headers=spoofed).status_code == 200


def test_forwarded_host_is_used_behind_a_trusted_proxy(settings, db, runtime, prove):
    app = create_app(replace(settings, custom_domains=True, trusted_proxies=1))
    try:
        member, _, _, path = setup_link(db, runtime.deps)
        _, _, _, other_path = setup_link(db, runtime.deps)
        prove(member.agency_id, DOMAIN)
        proxied = app.test_client()
        via = {"X-Forwarded-Host": DOMAIN}
        assert proxied.get(path, base_url="http://10.0.0.5", headers=via).status_code == 200
        assert proxied.get(other_path, base_url="http://10.0.0.5", headers=via).status_code == 404
    finally:
        app.extensions["easyconnect"].close()


def test_oauth_callbacks_use_the_domain_only_with_the_agencys_own_app(on_domain, db, runtime, prove):
    member, _, _, path = setup_link(db, runtime.deps)
    prove(member.agency_id, DOMAIN)
    started = on_domain.post(path + "/connect/sandbox", base_url=f"http://{DOMAIN}")
    assert started.status_code == 303
    redirect_uri = parse_qs(urlsplit(started.headers["Location"]).query)["redirect_uri"][0]
    assert redirect_uri == "http://portal.test/oauth/callback/sandbox"  # the operator's app knows only this one
    spec = platforms.spec_for(runtime.deps.settings, "sandbox")
    platforms.save_agency_app(db, runtime.deps, member.agency_id, spec.credential_group, "acme-own-app",
                              "acme-own-secret", SYSTEM)
    db.commit()
    started = on_domain.post(path + "/connect/sandbox", base_url=f"http://{DOMAIN}")
    query = parse_qs(urlsplit(started.headers["Location"]).query)
    assert query["redirect_uri"][0] == f"http://{DOMAIN}/oauth/callback/sandbox"
    assert query["client_id"][0] == "acme-own-app"
    # A callback on this domain for another agency's attempt is refused before anything is exchanged.
    _, _, _, other_path = setup_link(db, runtime.deps)
    foreign = on_domain.post(other_path + "/connect/sandbox", base_url="http://portal.test")
    state = parse_qs(urlsplit(foreign.headers["Location"]).query)["state"][0]
    answer = on_domain.get(f"/oauth/callback/sandbox?state={state}&code=x", base_url=f"http://{DOMAIN}")
    assert answer.status_code == 404
