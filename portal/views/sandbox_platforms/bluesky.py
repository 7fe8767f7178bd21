"""Stand-in for Bluesky: the bsky.social entryway, PDS hosts and plc.directory (reference/platforms.md §11).

Real shapes: ``com.atproto.server.createSession`` (JSON identifier + password) → accessJwt, refreshJwt,
handle, did, didDoc, email, active, status; ``refreshSession`` and ``deleteSession`` with the refresh JWT
as Bearer; ``getSession``; ``app.bsky.actor.getProfile``; DID documents at plc.directory; XRPC errors
``{"error": "Name", "message": ...}`` (400 ExpiredToken / InvalidToken, 401 AuthenticationRequired or
AccountTakedown, 429 RateLimitExceeded with RateLimit-* headers). JWTs carry ``iat``/``exp`` (access
2 hours, refresh 90 days) and the opaque sandbox token as ``jti``.

Rotation is simplified: a refresh token dies when used (the reference PDS keeps it valid for a 2-hour
grace window). Sessions are bound to the host that issued them; the entryway's sessions are also
accepted by the account's own PDS, like bsky.social's. Demo people (app password ``DEMO_APP_PASSWORD``):
one on bsky.social itself, one behind the entryway on a bsky.network PDS, one on a self-hosted PDS.
``evil-pds.example`` is a hostile server: it signs anyone in as someone it does not host (a mix-up), or
as a did:web whose document points at the cloud metadata address. Sandbox-only control:
``POST /p/<host>/_sandbox/account`` JSON {did, status} sets an account ``takendown`` or ``deactivated``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from flask import current_app, jsonify, request

from portal.sandbox import ACCOUNTS_BY_ID, SandboxError
from portal.sandbox.data import platform_user_id
from portal.views.sandbox_platforms import bearer, no_store, route, server

DEMO_APP_PASSWORD = "demo-pass-word-1234"
ENTRYWAY = "bsky.social"
EVIL = "evil-pds.example"
ACCESS_LIFETIME = 7200
ACCESS_SCOPE, REFRESH_SCOPE = "com.atproto.appPass", "com.atproto.refresh"
_STATUS: dict[str, str] = {}  # did -> takendown | deactivated (process-local, sandbox control only)
_STATUS_LOCK = threading.Lock()


@dataclass(frozen=True)
class Person:
    account_id: str
    handle: str
    pds: str  # host of the account's home PDS

    @property
    def did(self) -> str:
        return platform_user_id("bluesky", ACCOUNTS_BY_ID[self.account_id])

    @property
    def email(self) -> str:
        return f"{ACCOUNTS_BY_ID[self.account_id].handle}@example.com"

    @property
    def name(self) -> str:
        return ACCOUNTS_BY_ID[self.account_id].name


PEOPLE = (Person("sbx-1001", "bluebottlebakery.bsky.social", ENTRYWAY),
          Person("sbx-1002", "northwind.bsky.social", "morel.us-east.host.bsky.network"),
          Person("sbx-1003", "casa-aurora.example", "pds.casa-aurora.example"))
BY_ACCOUNT = {person.account_id: person for person in PEOPLE}


def demo_logins() -> dict[str, Any]:
    """What the Bluesky form shows in sandbox mode, so a newcomer can click through."""
    return {"app_password": DEMO_APP_PASSWORD, "people": [
        {"handle": p.handle, "name": p.name, "server": "" if _signs_in(ENTRYWAY, p) else p.pds} for p in PEOPLE]}


def _host() -> str:
    return str((request.view_args or {}).get("host", "")).lower()


def _signs_in(host: str, person: Person) -> bool:
    """The entryway signs in the accounts of bsky.social's PDSes; any other server only its own."""
    if host == ENTRYWAY:
        return person.pds == ENTRYWAY or person.pds.endswith(".host.bsky.network")
    return person.pds == host


def _accepts(host: str, issuer: str, person: Person) -> bool:
    return issuer == host or (issuer == ENTRYWAY and person.pds == host)


def _error(status: int, name: str, message: str) -> Any:
    response = jsonify(error=name, message=message)
    response.status_code = status
    return response


def _failure(exc: SandboxError) -> Any:
    """A failure switch or a spent token, in XRPC's words."""
    if exc.status == 429:
        response = _error(429, "RateLimitExceeded", "Rate Limit Exceeded")
        reset = int(time.time()) + (exc.retry_after or 30)
        response.headers.update({"RateLimit-Limit": "30", "RateLimit-Remaining": "0", "RateLimit-Reset": str(reset),
                                 "RateLimit-Policy": "30;w=300"})
        return response
    if exc.status >= 500:
        return _error(500, "InternalServerError", "Internal Server Error")
    if exc.error == "invalid_grant":
        return _error(400, "ExpiredToken", "Token has expired")
    if exc.error == "invalid_client":
        return _error(401, "AuthenticationRequired", "Invalid identifier or password")
    return _error(400, "InvalidToken", "Token could not be verified")


# JWTs wrapping the sandbox's opaque tokens --------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _key() -> bytes:
    secret = current_app.extensions["easyconnect"].settings.sandbox_client_secret
    return hashlib.sha256(f"bluesky-stand-in|{secret}".encode()).digest()


def _jwt(opaque: str, did: str, scope: str, lifetime: int, host: str) -> str:
    now = int(time.time())
    head = _b64(json.dumps({"typ": "at+jwt" if scope == ACCESS_SCOPE else "refresh+jwt", "alg": "HS256"}).encode())
    body = _b64(json.dumps({"scope": scope, "sub": did, "aud": f"did:web:{host}", "iat": now,
                            "exp": now + lifetime, "jti": opaque}).encode())
    signature = _b64(hmac.new(_key(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{signature}"


def _opaque(token: str) -> str:
    """The sandbox token inside a JWT this stand-in signed ("" if it is not one)."""
    parts = token.split(".")
    if len(parts) != 3:
        return ""
    expected = _b64(hmac.new(_key(), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, parts[2]):
        return ""
    try:
        return str(json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))["jti"])
    except (ValueError, KeyError, TypeError):
        return ""


def _issue(host: str, account_id: str, did: str) -> tuple[str, str]:
    """A new session for the account, bound to the issuing host (code and exchange: one code, one session)."""
    client, redirect = f"atproto:{host}", server().redirect_prefix
    code = server().issue_code(client, redirect, account_id, ACCESS_SCOPE, None, platform="bluesky")
    issued = server().exchange_code(client, code, redirect, None, platform="bluesky", access_lifetime=ACCESS_LIFETIME)
    server().count("bluesky_sessions")
    return (_jwt(issued.access_token, did, ACCESS_SCOPE, ACCESS_LIFETIME, host),
            _jwt(issued.refresh_token, did, REFRESH_SCOPE, server().refresh_lifetime, host))


# Identity -------------------------------------------------------------------------------------------------

def did_document(did: str, handle: str, pds: str) -> dict[str, Any]:
    return {"@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
            "id": did, "alsoKnownAs": [f"at://{handle}"],
            "verificationMethod": [{"id": f"{did}#atproto", "type": "Multikey", "controller": did,
                                    "publicKeyMultibase": "zQ3shSandboxKeyNotARealKey"}],
            "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                         "serviceEndpoint": f"https://{pds}"}]}


def _session(person: Person, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    status = _status(person.did)
    body: dict[str, Any] = {"handle": person.handle, "did": person.did,
                            "didDoc": did_document(person.did, person.handle, person.pds), "active": status is None}
    if status:
        body["status"] = status
    return {**body, **(extra or {})}


def _status(did: str) -> str | None:
    with _STATUS_LOCK:
        return _STATUS.get(did)


def _find(identifier: str, host: str) -> Person | None:
    for person in PEOPLE:
        if identifier in (person.handle, person.did, person.email) and _signs_in(host, person):
            return person
    return None


@route("GET", "plc.directory", r"(?P<did>did:plc:[a-z0-9]+)")
def plc_document(did: str) -> Any:
    for person in PEOPLE:
        if person.did == did:
            return jsonify(did_document(did, person.handle, person.pds))
    return jsonify(message=f"DID not registered: {did}"), 404


@route("GET", EVIL, r"\.well-known/did\.json")
def evil_did_web() -> Any:
    return jsonify(did_document(f"did:web:{EVIL}", f"ssrf.{EVIL}", "169.254.169.254"))


# Sessions -------------------------------------------------------------------------------------------------

@route("POST", EVIL, r"xrpc/com\.atproto\.server\.createSession")
def evil_create_session() -> Any:
    """Signs anyone in, claiming an identity it does not host."""
    identifier = str((request.get_json(silent=True) or {}).get("identifier", "")).lower()
    victim = PEOPLE[0]
    access, refresh = _issue(EVIL, victim.account_id, victim.did)
    if identifier.startswith("ssrf."):
        did = f"did:web:{EVIL}"
        body = {"handle": identifier, "did": did, "didDoc": did_document(did, identifier, EVIL), "active": True}
    else:
        body = {"handle": victim.handle, "did": victim.did, "didDoc": did_document(victim.did, victim.handle, EVIL),
                "active": True}
    return no_store(jsonify(accessJwt=access, refreshJwt=refresh, **body))


@route("POST", "*", r"xrpc/com\.atproto\.server\.createSession")
def create_session() -> Any:
    host = _host()
    data = request.get_json(silent=True)
    data = data if isinstance(data, dict) else {}
    identifier = str(data.get("identifier", "")).strip().lower().removeprefix("@")
    password = str(data.get("password", ""))
    if not identifier or not password:
        return _error(400, "InvalidRequest", 'Input must have the property "identifier"')
    person = _find(identifier, host)
    if person is None or not hmac.compare_digest(password.encode(), DEMO_APP_PASSWORD.encode()):
        return _error(401, "AuthenticationRequired", "Invalid identifier or password")
    if _status(person.did) == "takendown":
        return _error(401, "AccountTakedown", "Account has been taken down")
    try:
        access, refresh = _issue(host, person.account_id, person.did)
    except SandboxError as exc:
        return _failure(exc)
    return no_store(jsonify(_session(person, {"accessJwt": access, "refreshJwt": refresh, "email": person.email,
                                              "emailConfirmed": True, "emailAuthFactor": False})))


@route("POST", "*", r"xrpc/com\.atproto\.server\.refreshSession")
def refresh_session() -> Any:
    host = _host()
    try:
        issued = server().refresh(f"atproto:{host}", _opaque(bearer()), platform="bluesky", rotate=True,
                                  access_lifetime=ACCESS_LIFETIME)
    except SandboxError as exc:
        return _failure(exc)
    person = BY_ACCOUNT[issued.account_id]
    if _status(person.did) == "takendown":
        return _error(400, "AccountTakedown", "Account has been taken down")
    return no_store(jsonify(_session(person, {
        "accessJwt": _jwt(issued.access_token, person.did, ACCESS_SCOPE, ACCESS_LIFETIME, host),
        "refreshJwt": _jwt(issued.refresh_token, person.did, REFRESH_SCOPE, server().refresh_lifetime, host)})))


def _authenticated(host: str) -> Person | Any:
    """The person behind a live access JWT this host accepts, or an XRPC error response."""
    try:
        row = server().lookup("bluesky", _opaque(bearer()))
    except SandboxError as exc:
        return _failure(exc)
    person = BY_ACCOUNT.get(row.account_id)
    if person is None or not _accepts(host, row.client_id.removeprefix("atproto:"), person):
        return _error(400, "InvalidToken", "Token could not be verified")
    return person


@route("GET", "*", r"xrpc/com\.atproto\.server\.getSession")
def get_session() -> Any:
    person = _authenticated(_host())
    if not isinstance(person, Person):
        return person
    server().count("bluesky_get_sessions")
    return jsonify(_session(person, {"email": person.email, "emailConfirmed": True}))


@route("POST", "*", r"xrpc/com\.atproto\.server\.deleteSession")
def delete_session() -> Any:
    opaque = _opaque(bearer())
    if not opaque:
        return _error(400, "InvalidToken", "Token could not be verified")
    server().revoke(f"atproto:{_host()}", opaque)
    return "", 200


@route("GET", "*", r"xrpc/app\.bsky\.actor\.getProfile")
def get_profile() -> Any:
    person = _authenticated(_host())
    if not isinstance(person, Person):
        return person
    account = ACCOUNTS_BY_ID[person.account_id]
    return jsonify(did=person.did, handle=person.handle, displayName=account.name,
                   avatar=f"{request.host_url.rstrip('/')}/sandbox/avatars/{account.id}.svg",
                   followersCount=210, followsCount=87, postsCount=342, description="")


@route("POST", "*", r"_sandbox/account")
def set_account_status() -> Any:
    """Sandbox-only: {"did": ..., "status": "takendown" | "deactivated" | ""}."""
    data = request.get_json(silent=True) or {}
    did, status = str(data.get("did", "")), str(data.get("status", ""))
    if status not in ("", "takendown", "deactivated"):
        return _error(400, "InvalidRequest", "unknown status")
    with _STATUS_LOCK:
        if status:
            _STATUS[did] = status
        else:
            _STATUS.pop(did, None)
    return jsonify(ok=True)
