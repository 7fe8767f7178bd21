"""The embeddable connect widget: embed origins, widget sessions, the event contract, phone hand-off.

A host page (one of the agency's ``embed_origins``) opens a link with ``?embed=<mode>&origin=<its
origin>&session=<random handle>``. The portal accepts the origin only when it is exactly one of the
agency's. When the client starts a platform (or asks for a hand-off code), never on a mere page view,
it records a *widget session*: a ConnectAttempt row in stage ``widget`` keyed by the hash of the
handle (the schema has no table of its own for it), bound to the link and carrying the origin and
the validated return URL; a link has at most MAX_LIVE_SESSIONS_PER_LINK live ones. Every platform
attempt started from that page is listed on the session, so the host page learns completion from the
server (the status endpoint), not only from a ``postMessage`` that a severed opener or a closed popup
would lose.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal import errors
from portal.errors import ValidationFailed
from portal.models import Agency, AttemptStage, ConnectAttempt, Connection, ConnectLink, new_id
from portal.security.crypto import column_context
from portal.security.signing import HandoffSigner, hash_secret, random_id
from portal.services import Deps, audit, connections
from portal.services.audit import Actor

EVENT_SOURCE = "easyconnect"
EVENT_VERSION = 1
# What each event may carry. Nothing else is ever sent: never a token, a code or a link token.
EVENT_FIELDS: dict[str, frozenset[str]] = {
    "ready": frozenset({"session", "mode"}),
    "platform_selected": frozenset({"session", "platform"}),
    "popup_blocked": frozenset({"session"}),
    "success": frozenset({"session", "attempt", "platform", "account", "connections"}),
    "error": frozenset({"session", "attempt", "code", "message"}),
    "exit": frozenset({"session", "reason"}),
}
CONNECTION_FIELDS = ("id", "platform", "account")
MODES = ("popup", "iframe", "redirect")
HANDOFF = "handoff"  # a phone that scanned the "continue on your phone" code joins the session
SESSION_STAGE = "widget"
SESSION_LIFETIME = timedelta(hours=1)
# Seconds a hand-off code lives. It is also single-use (see issue_handoff): a photo of the screen taken after
# the phone scanned it opens nothing; one taken before and used first wins the session, within this time only.
HANDOFF_MAX_AGE = 10 * 60
MAX_EMBED_ORIGINS = 10
MAX_LIVE_SESSIONS_PER_LINK = 20  # open widgets of one link at once (a team onboarding together)
MAX_ORIGIN_LENGTH = 255
MAX_RETURN_URL_LENGTH = 2048
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
DEFAULT_PORTS = {"https": 443, "http": 80}
_HANDLE = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_IN_PROGRESS = (AttemptStage.STARTED, AttemptStage.AUTHORIZED, AttemptStage.SELECTING, AttemptStage.STORING)
# Substrings of in-app browsers' user agents (webviews where sign-in pages and popups often fail).
IN_APP_BROWSERS = (("Instagram", "Instagram"), ("FBAN/", "Facebook"), ("FBAV/", "Facebook"), ("FB_IAB", "Facebook"),
                   ("FBIOS", "Facebook"), (" Line/", "LINE"), ("musical_ly", "TikTok"),
                   ("BytedanceWebview", "TikTok"), ("TikTok", "TikTok"))


# The event contract ------------------------------------------------------------------------------

def event(kind: str, **fields: Any) -> dict[str, Any]:
    """One message of the versioned contract ``{source, version, type, ...}``; unknown types or fields raise."""
    allowed = EVENT_FIELDS.get(kind)
    if allowed is None:
        raise ValueError(f"unknown widget event type {kind!r}")
    extra = set(fields) - allowed
    if extra:
        raise ValueError(f"widget event {kind!r} cannot carry {sorted(extra)}")
    return {"source": EVENT_SOURCE, "version": EVENT_VERSION, "type": kind, **fields}


def success_event(handle: str, attempt: ConnectAttempt, stored: list[Connection]) -> dict[str, Any]:
    """Connection ids, platform and account names of a finished attempt: never a token."""
    items = [{"id": c.id, "platform": c.platform, "account": _account_name(c)} for c in stored]
    return event("success", session=handle, attempt=attempt.id, platform=attempt.platform,
                 account=items[0]["account"] if items else "", connections=items)


def error_event(handle: str, attempt: ConnectAttempt) -> dict[str, Any]:
    code = attempt.error_code or "error"
    return event("error", session=handle, attempt=attempt.id, code=code, message=error_message(code))


def _account_name(connection: Connection) -> str:
    return f"@{connection.handle.lstrip('@')}" if connection.handle else (connection.display_name or "")


def error_message(code: str) -> str:
    """The plain-text message of a typed error code (the default one of its error class)."""
    pending: list[type[errors.PortalError]] = [errors.PortalError]
    while pending:
        cls = pending.pop()
        if cls.code == code and cls.__dict__.get("public_message"):
            return str(cls.public_message)
        pending.extend(cls.__subclasses__())
    return "Something went wrong while connecting. Please try again."


# Origins ---------------------------------------------------------------------------------------------

def normalise_origin(value: str, allow_local_http: bool) -> str:
    """``scheme://host[:port]`` as browsers write ``event.origin``: lower case, default port dropped.
    https only; http just for localhost and 127.0.0.1 when ``allow_local_http`` (never in production)."""
    text = (value or "").strip()
    if not text:
        raise ValidationFailed("Enter an origin such as https://www.agency.example.")
    _refuse_odd_characters(text, MAX_ORIGIN_LENGTH, "That is not a valid origin.")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValidationFailed("That is not a valid origin.") from exc
    scheme, host = parts.scheme.lower(), parts.hostname or ""
    if scheme not in DEFAULT_PORTS or not parts.netloc:
        raise ValidationFailed("An origin starts with https:// followed by a host name.")
    if "@" in parts.netloc:
        raise ValidationFailed("An origin cannot contain a user name or password.")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValidationFailed("An origin is only a scheme, a host and a port: no path, query or fragment.")
    host_text = _checked_host(host)
    if scheme == "http" and not (allow_local_http and host in LOCAL_HOSTS):
        raise ValidationFailed("Use https:// (http:// is allowed only for localhost and 127.0.0.1 outside "
                               "production).")
    if port is not None and port == 0:
        raise ValidationFailed("That is not a valid port.")
    suffix = f":{port}" if port is not None and port != DEFAULT_PORTS[scheme] else ""
    return f"{scheme}://{host_text}{suffix}"


def _refuse_odd_characters(text: str, max_length: int, message: str) -> None:
    if len(text) > max_length:
        raise ValidationFailed(f"That is too long (at most {max_length} characters).")
    if not text.isascii():
        raise ValidationFailed("Use the ASCII form of the address (xn--… for international domain names).")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 or ch == "\\" for ch in text):
        raise ValidationFailed(message)


def _checked_host(host: str) -> str:
    """The host as it appears in an origin; refuses anything that is not a DNS name or an IP address."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        return f"[{address.compressed}]" if address.version == 6 else address.compressed
    labels = host.split(".")
    if not host or any(not _LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise ValidationFailed("That is not a valid host name.")
    return host


def origin_allowed(agency: Agency, origin: str | None) -> bool:
    """Exact comparison, no normalising: the browser's ``location.origin`` is already canonical."""
    return bool(origin) and origin in (agency.embed_origins or [])


def validate_return_url(value: str, origin: str) -> str:
    """A URL on the host page's own origin (itself an allowed embed origin): http(s), no credentials."""
    text = value or ""  # not stripped: the host page sends location.href, exactly
    _refuse_odd_characters(text, MAX_RETURN_URL_LENGTH, "The return address is not valid.")
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise ValidationFailed("The return address is not valid.") from exc
    if parts.scheme.lower() not in DEFAULT_PORTS or "@" in parts.netloc:
        raise ValidationFailed("The return address is not valid.")
    if normalise_origin(f"{parts.scheme}://{parts.netloc}", allow_local_http=True) != origin:
        raise ValidationFailed("The return address must be on the site that opened this page.")
    return text


# Embed origins in the admin panel --------------------------------------------------------------------

def add_embed_origin(db: Session, agency: Agency, value: str, actor: Actor, production: bool) -> str:
    origin = normalise_origin(value, allow_local_http=not production)
    current = list(agency.embed_origins or [])
    if origin in current:
        raise ValidationFailed(f"{origin} is already allowed.")
    if len(current) >= MAX_EMBED_ORIGINS:
        raise ValidationFailed(f"At most {MAX_EMBED_ORIGINS} origins can be allowed. Remove one first.")
    agency.embed_origins = [*current, origin]  # a new list: SQLAlchemy does not see in-place JSON changes
    audit.record(db, agency.id, actor, "agency.embed_origin_added", "agency", agency.id, origin=origin)
    return origin


def remove_embed_origin(db: Session, agency: Agency, origin: str, actor: Actor) -> None:
    current = list(agency.embed_origins or [])
    if origin not in current:
        raise ValidationFailed("That origin is not in the list.")
    agency.embed_origins = [o for o in current if o != origin]
    audit.record(db, agency.id, actor, "agency.embed_origin_removed", "agency", agency.id, origin=origin)


def snippet(base_url: str, link_url: str | None = None) -> str:
    """What an agency pastes into its page: the versioned script and a button."""
    url = link_url or "PASTE AN EASYCONNECT LINK HERE"
    return (f'<script src="{base_url}/widget/v1/connect.js" defer></script>\n'
            '<button id="connect-accounts" type="button">Connect your accounts</button>\n'
            "<script>\n"
            '  document.addEventListener("DOMContentLoaded", function () {\n'
            '    EasyConnect.button(document.getElementById("connect-accounts"), {\n'
            f'      url: "{url}",\n'
            '      mode: "popup",  // or "iframe" (with container: an element) or "redirect"\n'
            "      onSuccess: function (event) { console.log(\"connected\", event.connections); },\n"
            "      onEvent: function (event) { console.log(event.type, event); }\n"
            "    });\n"
            "  });\n"
            "</script>")


# Widget sessions -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WidgetSession:
    handle: str
    mode: str
    origin: str
    return_url: str | None
    frame_ancestors: tuple[str, ...]


def open_session(db: Session, deps: Deps, link: ConnectLink, agency: Agency, mode: str, origin: str | None,
                 handle: str | None, return_url: str | None = None, join: str | None = None) -> WidgetSession:
    """Check a host page's embed request (or a phone joining by hand-off). Writes nothing: the session row
    is only recorded when a platform is started or a hand-off code is asked for (``ensure_session``), so a
    page view costs no row. Refuses an origin that is not exactly one of the agency's (now), a handle
    bound to something else, and a hand-off page without the ticket of a consumed hand-off code."""
    if mode not in (*MODES, HANDOFF):
        raise ValidationFailed("Unknown embedding mode.")
    if not handle or not _HANDLE.match(handle):
        raise ValidationFailed("This embedded page is missing its session. Please start again.")
    row = _session_row(db, handle)
    if mode == HANDOFF:
        if (row is None or row.link_id != link.id or row.expires_at <= deps.now() or not join
                or not _HANDLE.match(join) or row.connect_code_hash != _joined_hash(join)
                or not origin_allowed(agency, row.widget_origin)):
            raise ValidationFailed("This code has expired. Scan a new one.")
        return _session_of(row, handle, agency, HANDOFF)
    if not origin_allowed(agency, origin):
        raise ValidationFailed("This site is not allowed to embed this page. The agency can allow it in its "
                               "admin panel, under Embed.")
    assert origin is not None
    back = validate_return_url(return_url, origin) if return_url and mode == "redirect" else None
    if row is not None and (row.link_id != link.id or row.widget_origin != origin or row.expires_at <= deps.now()):
        raise ValidationFailed("This embedded page is out of date. Please start again.")
    if row is not None:
        return _session_of(row, handle, agency, mode)
    return WidgetSession(handle, mode, origin, back, tuple(agency.embed_origins or []))


def ensure_session(db: Session, deps: Deps, link: ConnectLink, agency: Agency, mode: str, origin: str | None,
                   handle: str | None, return_url: str | None = None) -> ConnectAttempt:
    """The session's row, recorded now if it is new (same checks as ``open_session``). A link keeps at most
    ``MAX_LIVE_SESSIONS_PER_LINK`` live sessions: a new one evicts the oldest, so whoever holds a link
    cannot grow the table without bound."""
    if mode == HANDOFF:
        raise ValidationFailed("This code has expired. Scan a new one.")
    session = open_session(db, deps, link, agency, mode, origin, handle, return_url)
    assert handle is not None
    row = _session_row(db, handle)
    if row is not None:
        return row
    _evict_oldest_sessions(db, deps, link)
    return _create_session(db, deps, link, mode, session.origin, handle, session.return_url)


def _evict_oldest_sessions(db: Session, deps: Deps, link: ConnectLink) -> None:
    live = list(db.scalars(select(ConnectAttempt).where(
        ConnectAttempt.link_id == link.id, ConnectAttempt.stage == SESSION_STAGE,
        ConnectAttempt.expires_at > deps.now()).order_by(ConnectAttempt.created_at.desc(), ConnectAttempt.id)))
    for row in live[MAX_LIVE_SESSIONS_PER_LINK - 1:]:
        db.delete(row)  # its host page's status becomes a 404: the widget reports the window closed
    db.flush()


def _create_session(db: Session, deps: Deps, link: ConnectLink, mode: str, origin: str, handle: str,
                    return_url: str | None) -> ConnectAttempt:
    now = deps.now()
    row = ConnectAttempt(id=new_id(), agency_id=link.agency_id, link_id=link.id, platform=f"widget:{mode}",
                         state_hash=_handle_hash(handle), stage=SESSION_STAGE, expires_at=now + SESSION_LIFETIME,
                         created_at=now, widget_origin=origin, return_url=return_url, candidates=[])
    try:
        with db.begin_nested():
            db.add(row)
            db.flush()
    except IntegrityError:  # the same handle arrived twice at once: use the row that won
        existing = _session_row(db, handle)
        if existing is None:
            raise
        return existing
    return row


def _session_of(row: ConnectAttempt, handle: str, agency: Agency, mode: str) -> WidgetSession:
    return WidgetSession(handle, mode, row.widget_origin or "", row.return_url, tuple(agency.embed_origins or []))


def valid_handle(handle: str | None) -> bool:
    return bool(handle) and bool(_HANDLE.match(handle or ""))


def _handle_hash(handle: str) -> str:
    # Its own prefix: a widget handle can never be mistaken for an OAuth `state` in the same column.
    return hash_secret("widget-session:" + handle)


def _session_row(db: Session, handle: str | None) -> ConnectAttempt | None:
    if not handle or not _HANDLE.match(handle):
        return None
    return db.scalar(select(ConnectAttempt).where(ConnectAttempt.state_hash == _handle_hash(handle),
                                                  ConnectAttempt.stage == SESSION_STAGE))


def _live_for(row: ConnectAttempt | None, deps: Deps, link: ConnectLink, agency: Agency) -> bool:
    """A session that may still take attempts: this link's, unexpired, and its origin still allowed
    (removing an origin in the admin panel ends the sessions bound to it)."""
    return (row is not None and row.link_id == link.id and row.agency_id == link.agency_id
            and row.expires_at > deps.now() and origin_allowed(agency, row.widget_origin))


def attach_attempt(db: Session, deps: Deps, link: ConnectLink, agency: Agency, attempt: ConnectAttempt,
                   handle: str | None, mode: str | None = None, origin: str | None = None,
                   return_url: str | None = None) -> bool:
    """List a new platform attempt on its widget session (recorded now if new; only a live one of the same
    link and a still allowed origin), so the host page learns its outcome. An unknown, foreign or refused
    session attaches nothing: the client's own flow goes on regardless."""
    row = _row_for_form(db, deps, link, agency, handle, mode, origin, return_url)
    if row is None:
        return False
    _list_attempt(row, attempt)
    return True


def _row_for_form(db: Session, deps: Deps, link: ConnectLink, agency: Agency, handle: str | None,
                  mode: str | None, origin: str | None, return_url: str | None) -> ConnectAttempt | None:
    """The live session a Connect form names (recorded now if new), or None when it may take no attempt."""
    if not valid_handle(handle):
        return None
    row = _session_row(db, handle)
    if row is None:
        try:
            row = ensure_session(db, deps, link, agency, mode or "", origin, handle, return_url)
        except ValidationFailed:
            return None
    if not _live_for(row, deps, link, agency) or row.widget_origin != origin:  # a handle keeps its origin
        return None
    return row


def _list_attempt(row: ConnectAttempt, attempt: ConnectAttempt) -> None:
    attempt.widget_origin = row.widget_origin
    attempt.return_url = row.return_url
    row.candidates = [*(row.candidates or []), {"attempt": attempt.id}][-50:]


# Flows with a page of their own (Bluesky, Mastodon, Telegram) -------------------------------------------------

def carry_into_flow(db: Session, deps: Deps, link: ConnectLink, agency: Agency, platform: str,
                    browser_secret: str, handle: str | None, mode: str | None, origin: str | None,
                    return_url: str | None) -> bool:
    """The client chose a platform whose first step is a page of ours, where the attempt is created later.
    Note on the session that this browser (its flow cookie, hashed) is on its way to that platform, so
    the attempt is listed when it exists (``attach_carried``)."""
    row = _row_for_form(db, deps, link, agency, handle, mode, origin, return_url)
    if row is None:
        return False
    note = {"pending": platform, "browser": hash_secret("widget-flow:" + browser_secret)}
    row.candidates = [*[c for c in row.candidates or [] if c != note], note][-50:]
    return True


def attach_carried(db: Session, deps: Deps, link: ConnectLink, agency: Agency, attempt: ConnectAttempt,
                   browser_secret: str | None) -> bool:
    """List the attempt of such a flow on the newest live session of this link that this browser carried
    into it; the note is used up, so one choice reports exactly one attempt."""
    if not browser_secret:
        return False
    note = {"pending": attempt.platform, "browser": hash_secret("widget-flow:" + browser_secret)}
    rows = db.scalars(select(ConnectAttempt).where(
        ConnectAttempt.link_id == link.id, ConnectAttempt.stage == SESSION_STAGE,
        ConnectAttempt.expires_at > deps.now()).order_by(ConnectAttempt.created_at.desc()))
    for row in rows:
        if note in (row.candidates or []) and _live_for(row, deps, link, agency):
            row.candidates = [c for c in row.candidates or [] if c != note]
            _list_attempt(row, attempt)
            return True
    return False


def session_status(db: Session, deps: Deps, handle: str) -> tuple[str, dict[str, Any]] | None:
    """(the host origin to answer, the status) of a widget session, or None if there is no such session
    or its origin is no longer allowed. ``state``: waiting (nothing started), in_progress, done (every
    attempt ended) or expired."""
    row = _session_row(db, handle)
    if row is None or not row.widget_origin:
        return None
    agency = db.get(Agency, row.agency_id)
    if agency is None or not origin_allowed(agency, row.widget_origin):
        return None
    now = deps.now()
    ids = [str(item.get("attempt")) for item in row.candidates or [] if isinstance(item, dict) and "attempt" in item]
    attempts = list(db.scalars(select(ConnectAttempt).where(
        ConnectAttempt.id.in_(ids), ConnectAttempt.link_id == row.link_id,
        ConnectAttempt.agency_id == row.agency_id).order_by(ConnectAttempt.created_at))) if ids else []
    events = [_outcome(db, handle, a) for a in attempts if a.stage in (AttemptStage.CONNECTED, AttemptStage.FAILED)]
    running = any(a.stage in _IN_PROGRESS and _open_until(a) > now for a in attempts)
    state = ("expired" if row.expires_at <= now and not running else
             "in_progress" if running else "done" if events else "waiting")
    return row.widget_origin, {"source": EVENT_SOURCE, "version": EVENT_VERSION, "session": handle,
                               "state": state, "events": events}


def _open_until(attempt: ConnectAttempt) -> Any:
    if attempt.stage == AttemptStage.SELECTING and attempt.selection_expires_at:
        return attempt.selection_expires_at
    return attempt.expires_at


def _outcome(db: Session, handle: str, attempt: ConnectAttempt) -> dict[str, Any]:
    if attempt.stage == AttemptStage.FAILED:
        return error_event(handle, attempt)
    ids = attempt.connection_ids or ([attempt.connection_id] if attempt.connection_id else [])
    return success_event(handle, attempt, connections.connections_by_ids(db, attempt.agency_id, ids))


# Continue on your phone ---------------------------------------------------------------------------------
#
# The QR code carries a signed, single-use nonce, never the session handle: the nonce's hash is kept on the
# session row (connect_code_hash, unused by widget sessions otherwise) and the handle itself, encrypted, in
# pending_enc, for the phone's page. Opening the code swaps the nonce for a join ticket that only the phone
# receives, and the link page's hand-off mode requires it: a photographed code that was already used, a
# code older than HANDOFF_MAX_AGE, or a bare handle opens nothing.

def issue_handoff(db: Session, deps: Deps, link: ConnectLink, agency: Agency, mode: str, origin: str | None,
                  handle: str | None, return_url: str | None = None) -> str:
    """A fresh hand-off URL for the session (recorded now if new); the previous code stops working."""
    row = ensure_session(db, deps, link, agency, mode, origin, handle, return_url)
    if not _live_for(row, deps, link, agency):
        raise ValidationFailed("This embedded page is out of date. Please start again.")
    assert handle is not None
    nonce = random_id(24)
    row.connect_code_hash = _nonce_hash(nonce)
    row.pending_enc = deps.cipher.encrypt(handle, column_context("connect_attempts", row.id, "widget_handle"))
    token = HandoffSigner(deps.settings.link_keys).sign({"l": link.token_id, "n": nonce},
                                                        issued_at=int(deps.now().timestamp()))
    return f"{deps.settings.base_url}/widget/v1/handoff/{token}"


def consume_handoff(db: Session, deps: Deps, token: str) -> tuple[ConnectLink, str, str] | None:
    """(the link, the session handle, the phone's join ticket) of a fresh, unused hand-off URL, or None.
    Used up here: the same URL opened again finds nothing."""
    payload = HandoffSigner(deps.settings.link_keys).unsign(token, int(deps.now().timestamp()), HANDOFF_MAX_AGE)
    if not payload or not payload.get("l") or not _HANDLE.match(payload.get("n", "")):
        return None
    row = db.scalar(select(ConnectAttempt).where(ConnectAttempt.connect_code_hash == _nonce_hash(payload["n"]),
                                                 ConnectAttempt.stage == SESSION_STAGE).with_for_update())
    link = db.get(ConnectLink, row.link_id) if row is not None else None
    agency = db.get(Agency, row.agency_id) if row is not None else None
    if row is None or link is None or agency is None or link.token_id != payload["l"] or not row.pending_enc:
        return None
    if not _live_for(row, deps, link, agency):
        return None
    handle = deps.cipher.decrypt(row.pending_enc, column_context("connect_attempts", row.id, "widget_handle"))
    ticket = random_id(24)
    row.connect_code_hash = _joined_hash(ticket)
    db.flush()
    return link, handle, ticket


def _nonce_hash(nonce: str) -> str:
    return hash_secret("widget-handoff:" + nonce)


def _joined_hash(ticket: str) -> str:
    return hash_secret("widget-joined:" + ticket)


def qr_code_data_uri(url: str) -> str:
    """An SVG QR code as a data: URI (allowed by the CSP's img-src), drawn here, fetched from nobody."""
    import segno

    return str(segno.make(url, error="m").svg_data_uri(scale=4, border=2))


def embed_query(mode: str, origin: str, handle: str, return_url: str | None = None) -> str:
    params = {"embed": mode, "origin": origin, "session": handle}
    if return_url:
        params["return_url"] = return_url
    return urlencode(params)


def in_app_browser(user_agent: str | None) -> str | None:
    """The app whose webview this is (Instagram, Facebook, LINE, TikTok), or None for a real browser."""
    text = (user_agent or "")[:1000]
    for marker, app in IN_APP_BROWSERS:
        if marker in text:
            return app
    return None
