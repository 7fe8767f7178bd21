"""Custom domains: real DNS servers on loopback (one answers, one never does), the portal asking them, and
a helper proving a domain the way its owner would."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy.orm import Session

from portal.app import create_app
from portal.config import Settings
from portal.models import Agency
from portal.services import branding, domains
from portal.services.audit import SYSTEM
from tests.helpers import DnsServer


@pytest.fixture(scope="session")
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer()
    yield server
    server.stop()


@pytest.fixture
def dns_records(dns_server: DnsServer) -> Iterator[dict[str, list[str]]]:
    """The answering server's TXT records for this test (emptied after it)."""
    yield dns_server.records
    dns_server.records.clear()
    dns_server.on_question = None


@pytest.fixture(scope="session")
def silent_dns() -> Iterator[DnsServer]:
    server = DnsServer(silent=True)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def domain_app(settings: Settings, dns_server: DnsServer) -> Iterator[Any]:
    """The portal with custom domains on, asking the test DNS server for proofs."""
    app = create_app(replace(settings, custom_domains=True, dns_nameservers=(dns_server.address,)))
    app.config["TESTING"] = True
    yield app
    app.extensions["easyconnect"].close()


@pytest.fixture
def on_domain(domain_app: Any, runtime: Any) -> Any:  # runtime: the shared app's tables are cleaned after each test
    return domain_app.test_client()


@pytest.fixture
def prove(db: Session, dns_records: dict[str, list[str]], domain_app: Any, runtime: Any) -> Callable[..., Agency]:
    """Claim a domain for an agency, publish its TXT record and verify it, as its owner would (runtime: the
    tables are emptied after the test, so no proof outlives it)."""
    on = domain_app.extensions["easyconnect"].deps

    def claim_and_prove(agency_id: str, domain: str) -> Agency:
        agency = branding.save_agency_settings(db, agency_id, SYSTEM, custom_domain=domain, default_language="",
                                               portal_host="portal.test")
        db.commit()
        record = domains.challenge_for(domain, str(agency.custom_domain_token))
        dns_records.setdefault(record.name, []).append(record.value)
        domains.verify(db, on.settings, agency_id, SYSTEM, on.now())
        db.commit()
        return agency

    return claim_and_prove


@pytest.fixture
def domain_admin(domain_app: Any, runtime: Any) -> Any:
    """A browser for the admin panel of ``domain_app``: on the portal's own host, the only one serving it."""
    browser = domain_app.test_client()
    open_page = browser.open

    def on_portal_host(*args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], str):  # not a redirect being followed (those carry their own host)
            kwargs.setdefault("base_url", "http://portal.test")
        return open_page(*args, **kwargs)

    browser.open = on_portal_host
    return browser
