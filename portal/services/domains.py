"""Custom domains are served only once the agency proves it controls them with a DNS TXT record.

Typing a domain is only a claim: anyone can claim a domain nobody has proven, so a squatter cannot
block its owner. The proof is a TXT record at ``_easyconnect-challenge.<domain>`` holding
``easyconnect-verify=<token>``; the token is random and new for every domain an agency saves, so a
record published for one claim never proves another. The first proof wins (a partial unique index
keeps one verified claim per domain) and removes every other agency's pending claim of that domain.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

import dns.exception
import dns.nameserver
import dns.resolver
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.config import Settings
from portal.errors import NotFound, ValidationFailed
from portal.models import Agency
from portal.services import audit
from portal.services.audit import Actor

CHALLENGE_LABEL = "_easyconnect-challenge"
VALUE_PREFIX = "easyconnect-verify="
# Long enough for a slow authoritative server, short enough for a request a person is waiting on.
LOOKUP_SECONDS = 3.0


@dataclass(frozen=True)
class Challenge:
    """The TXT record the agency must publish: ``name`` (the record's host) and ``value``."""

    name: str
    value: str


def new_token() -> str:
    return secrets.token_urlsafe(24)


def challenge_for(domain: str, token: str) -> Challenge:
    return Challenge(f"{CHALLENGE_LABEL}.{domain}", VALUE_PREFIX + token)


def claim(agency: Agency, domain: str | None) -> None:
    """Point the agency's claim at ``domain``: a different domain starts unproven with a fresh token;
    the same domain keeps its proof (and gets a token if an older claim has none)."""
    if domain != agency.custom_domain:
        agency.custom_domain = domain
        agency.custom_domain_token = new_token() if domain else None
        agency.custom_domain_verified_at = None
    elif domain and not agency.custom_domain_token:
        agency.custom_domain_token = new_token()


def pending_challenge(agency: Agency) -> Challenge | None:
    """The record to publish while the agency's domain is unproven (None when there is no domain, it is
    proven, or the claim has no token: migration 0016 gave every older claim one, and saving issues one)."""
    if not agency.custom_domain or agency.custom_domain_verified_at is not None or not agency.custom_domain_token:
        return None
    return challenge_for(agency.custom_domain, agency.custom_domain_token)


def verified_by_another(db: Session, agency_id: str, domain: str) -> bool:
    return db.scalar(select(Agency.id).where(Agency.custom_domain == domain, Agency.id != agency_id,
                                             Agency.custom_domain_verified_at.is_not(None))) is not None


def verify(db: Session, settings: Settings, agency_id: str, actor: Actor, now: datetime) -> Agency:
    """Look the agency's TXT record up now; on a match the domain is the agency's and is served."""
    agency = db.get(Agency, agency_id)
    if agency is None:
        raise NotFound()
    domain = agency.custom_domain
    if not domain:
        raise ValidationFailed("Set a custom domain first, then add its DNS record.")
    if agency.custom_domain_verified_at is not None:
        return agency
    if verified_by_another(db, agency_id, domain):
        raise ValidationFailed("This domain is already verified by another account.")
    if not agency.custom_domain_token:
        raise ValidationFailed("Save your domain again to get the DNS record to add, then verify.")
    token = agency.custom_domain_token
    expected = challenge_for(domain, token)
    db.commit()  # no transaction across the DNS lookup (db.py): it may take seconds
    found = _txt_values(settings, expected.name)
    if expected.value not in found:
        raise ValidationFailed(f"The TXT record at {expected.name} does not hold {expected.value} yet "
                               f"({len(found)} other value{'s' if len(found) != 1 else ''} found). Fix the "
                               "record, wait for DNS to update, then verify again.")
    db.refresh(agency)  # the agency may have saved another domain during the lookup
    if (agency.custom_domain, agency.custom_domain_token) != (domain, token):
        raise ValidationFailed("The domain was changed while it was being checked. Verify it again.")
    if agency.custom_domain_verified_at is not None:
        return agency
    agency.custom_domain_verified_at = now
    try:
        with db.begin_nested():
            db.flush()  # two agencies proving one domain at once: the partial unique index decides
    except IntegrityError:
        raise ValidationFailed("This domain is already verified by another account.") from None
    _drop_pending_claims(db, agency_id, domain, actor)
    audit.record(db, agency_id, actor, "agency.domain_verified", "agency", agency_id, custom_domain=domain)
    return agency


def _drop_pending_claims(db: Session, winner_id: str, domain: str, actor: Actor) -> None:
    """Other agencies' unproven claims of a proven domain can never succeed: clear them (and say so in
    their audit log, as they would otherwise wonder where their setting went)."""
    losers = list(db.scalars(select(Agency.id).where(Agency.custom_domain == domain, Agency.id != winner_id,
                                                     Agency.custom_domain_verified_at.is_(None))))
    if not losers:
        return
    db.execute(update(Agency).where(Agency.id.in_(losers), Agency.custom_domain_verified_at.is_(None))
               .values(custom_domain=None, custom_domain_token=None))
    for loser in losers:
        audit.record(db, loser, actor, "agency.domain_claim_dropped", "agency", loser, custom_domain=domain)


def _txt_values(settings: Settings, name: str) -> set[str]:
    """The TXT values at ``name`` (each record's strings joined, as a long value is split into several)."""
    try:
        resolver = _resolver(settings)
        answer = resolver.resolve(name, "TXT", search=False, lifetime=LOOKUP_SECONDS)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        raise ValidationFailed(f"No TXT record found at {name}. Add it at your DNS provider (changes can "
                               "take a few minutes to appear), then verify again.") from None
    except dns.exception.Timeout:
        raise ValidationFailed(f"The DNS lookup of {name} timed out. Try again in a minute.") from None
    except (dns.exception.DNSException, OSError):
        raise ValidationFailed(f"The DNS lookup of {name} failed (the domain's DNS servers did not answer "
                               "properly). Try again later.") from None
    return {b"".join(rdata.strings).decode("utf-8", "replace").strip() for rdata in answer}


def _resolver(settings: Settings) -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=not settings.dns_nameservers)
    if settings.dns_nameservers:
        resolver.nameservers = [dns.nameserver.Do53Nameserver(address, port)
                                for address, port in settings.dns_nameservers]
    resolver.timeout = resolver.lifetime = LOOKUP_SECONDS
    return resolver
