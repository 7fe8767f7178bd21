"""Telegram's connect flow: the client makes the agency's bot an admin and posts a one-time code.

Stages of a Telegram ConnectAttempt: started (a code was shown; only its hash is stored, in
``connect_code_hash``, and it dies with the attempt) → authorized (the code was seen in a
chat: ``candidates[0]`` holds that chat's id, type, title and message id) → connected, or
failed. While authorized, a check verifies the bot's rights there; a missing right leaves the
attempt authorized, so the client fixes the right and checks again without posting anew.

Reading updates (getUpdates; a webhook would need a public URL and excludes getUpdates):

- Offset. A getUpdates call with ``offset`` confirms every update below it and Telegram
  forgets them. A poll reads a batch, records every ``/connect`` in it — for any pending
  attempt of any agency using the same bot, not only the one being checked, since the batch
  is gone for everyone once confirmed — commits, then calls again with the last id + 1, which
  confirms the batch. The resume point thus lives at Telegram, shared by every process; a
  crash before confirming only means the batch is read again, and recording is idempotent.
- One poller per bot. Telegram answers 409 to a second concurrent getUpdates. Every poll runs
  under the lock ``telegram-updates:<bot>`` (Redis across processes; process-local without
  Redis), and a check that finds it taken only reads what the current poller recorded. Two
  checks finishing the same attempt are serialised by claiming it (``callback_at``).
- Production: run :func:`poll_bots` in one worker every few seconds (or in a loop with a long
  poll ``timeout``); it takes the same lock, so web checks never clash with it, and it finishes
  fresh matches even when the client closed the page. The bot must be dedicated to EasyConnect:
  any other program reading its updates would clash (409) and consume the codes.

Services commit here, like ``complete_callback``: no transaction is held across a Telegram call.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from portal.errors import AttemptInvalid, NotFound, PlatformError, PlatformNotAllowed, PortalError
from portal.models import AttemptStage, ConnectAttempt, Connection, ConnectLink, ProviderApp
from portal.oauth import AccountInfo, AppCredentials, TokenGrant
from portal.providers import ProviderSpec
from portal.providers.adapters import Authorized
from portal.providers.adapters.telegram import BotInfo, ChatCheck, Telegram
from portal.security.crypto import column_context
from portal.security.signing import constant_time_equals, hash_secret
from portal.services import Deps, connections, links, platforms
from portal.services.audit import Actor
from portal.text import Text

log = logging.getLogger(__name__)
PLATFORM = "telegram"
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U to misread
CODE_LENGTH = 10  # 50 bits
CLAIM_TIMEOUT = timedelta(seconds=60)  # a check that died mid-way frees its attempt after this
POLL_LOCK_SECONDS = 30
MAX_PAGES = 5  # at most 500 updates per poll; the rest waits, unconfirmed, for the next one
MAX_LONG_POLL = 10  # seconds; below the platform client's 15-second read timeout
_COMMAND = re.compile(r"/connect(?:@[A-Za-z0-9_]{1,64})?\s+([A-Za-z0-9 \-]{1,40})", re.IGNORECASE)
_LOOKALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})

WAITING = Text("Waiting for your /connect message in Telegram. This page checks by itself.")
PRIVATE_CHAT = Text("We saw your code in a private chat with the bot. Post it in the channel or group you want to "
                    "connect instead.")
BOT_BROKEN = Text("This portal's Telegram bot is not working right now, so nothing can be connected. "
                  "Please tell the sender.")
CONNECTED = Text("Connected.")
CHECKING = Text("We found your message and are checking the bot's rights…")
SLOW = Text("Telegram is slow to answer; we will check again shortly.")
SLOW_DOWN = Text("Telegram asked us to slow down; we will check again shortly.")


class BotUnavailable(PortalError):
    """The bot token was refused (or the bot is unreachable): the operator's or agency's problem, not the client's."""

    status = 503
    code = "bot_unavailable"
    public_message = "The Telegram bot is not available right now. Please try again in a few minutes."


@dataclass(frozen=True)
class BotCodePage:
    attempt: ConnectAttempt
    code: str  # shown to the client; never stored
    bot_username: str
    sandboxed: bool


@dataclass(frozen=True)
class Status:
    state: str  # waiting | action_needed | connected | expired | failed | unavailable
    message: Text | str  # shown translated (portal.i18n.translate)
    retry_after: float | None = None

    @property
    def final(self) -> bool:
        return self.state in ("connected", "expired", "failed")


# The one-time code -----------------------------------------------------------------------------------

def new_code() -> str:
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


def normalize_code(text: str) -> str | None:
    """The code as typed (any case, dashes, spaces, O for 0, I or L for 1) to its canonical form."""
    value = text.upper().replace("-", "").replace(" ", "").translate(_LOOKALIKES)
    if len(value) != CODE_LENGTH or any(ch not in CODE_ALPHABET for ch in value):
        return None
    return value


def code_hash(code: str) -> str:
    return hash_secret(f"telegram-connect:{normalize_code(code) or code}")


def parse_command(text: Any) -> str | None:
    """The code in ``/connect CODE`` or ``/connect@BotName CODE`` (groups), else None."""
    if not isinstance(text, str) or len(text) > 200:
        return None
    match = _COMMAND.fullmatch(text.strip())
    return normalize_code(match.group(1)) if match else None


# The page --------------------------------------------------------------------------------------------

def start(db: Session, deps: Deps, link: ConnectLink) -> BotCodePage:
    """A new attempt and code for the link, and the bot to add. Commits before calling Telegram."""
    spec = connections.offered_spec(db, deps, link, PLATFORM)
    if spec.auth_kind != "bot_code":
        raise PlatformNotAllowed()
    app = platforms.app_for(db, deps, link.agency_id, spec)
    db.commit()
    bot = _bot_for_page(deps, spec, app)
    attempt, _state = connections.create_attempt(db, deps, link, PLATFORM)
    code = new_code()
    attempt.connect_code_hash = code_hash(code)
    db.flush()
    return BotCodePage(attempt, code, bot.username, spec.sandboxed)


def resume(db: Session, deps: Deps, link: ConnectLink, attempt_id: str, code: str) -> BotCodePage:
    """The same page again (after a "check now" without JavaScript): the client sends the code back."""
    attempt = attempt_of(db, link, attempt_id)
    if not attempt.connect_code_hash or not constant_time_equals(code_hash(code[:40]), attempt.connect_code_hash):
        raise AttemptInvalid("This code does not belong to this page. Please start again from your link.")
    spec, app = connections.spec_and_app(db, deps, link.agency_id, PLATFORM, None)
    db.commit()
    bot = _bot_for_page(deps, spec, app)
    value = normalize_code(code) or ""
    return BotCodePage(attempt, f"{value[:5]}-{value[5:]}", bot.username, spec.sandboxed)


def _bot_for_page(deps: Deps, spec: ProviderSpec, app: AppCredentials) -> BotInfo:
    try:
        return adapter(deps, spec).bot(spec, app)
    except PlatformError as exc:
        log.warning("telegram getMe failed: %s (%s)", exc.kind, exc.platform_code or "-")
        if exc.kind == PlatformError.APP_MISCONFIGURED:
            raise BotUnavailable("This portal's Telegram bot is not set up correctly, so nothing can be connected "
                                 "right now. Please tell the sender.") from None
        raise BotUnavailable() from None


def attempt_of(db: Session, link: ConnectLink, attempt_id: str) -> ConnectAttempt:
    """The link's own Telegram attempt; any other id (another link's included) is a 404."""
    attempt = connections.attempt_for(db, link.id, attempt_id)
    if attempt.platform != PLATFORM:
        raise NotFound()
    return attempt


def adapter(deps: Deps, spec: ProviderSpec) -> Telegram:
    found = platforms.adapter_for(deps, spec)
    assert isinstance(found, Telegram)
    return found


# Checking ----------------------------------------------------------------------------------------------

def check(db: Session, deps: Deps, link: ConnectLink, attempt_id: str, ip: str | None) -> Status:
    """Has the code arrived? Read the bot's updates (unless another poller is at it), then verify
    the bot's rights in the chat and store the connection. Commits."""
    attempt = attempt_of(db, link, attempt_id)
    settled = _settled(deps, attempt)
    if settled is not None:
        return settled
    spec, app = connections.spec_and_app(db, deps, link.agency_id, PLATFORM, None)
    db.commit()
    trouble = _poll_quietly(db, deps, spec, app)
    db.refresh(attempt)
    if attempt.stage == AttemptStage.AUTHORIZED and attempt.expires_at > deps.now():
        return _finish(db, deps, link, attempt, spec, app, Actor("client", link.id, ip))
    settled = _settled(deps, attempt)
    if settled is not None:
        return settled
    if trouble is not None:
        return trouble
    return Status("waiting", PRIVATE_CHAT if attempt.error_code == "private_chat" else WAITING)


def _settled(deps: Deps, attempt: ConnectAttempt) -> Status | None:
    if attempt.stage == AttemptStage.CONNECTED:
        return Status("connected", CONNECTED)
    if attempt.stage == AttemptStage.FAILED:
        return Status("failed", Text("This attempt could not be finished, so nothing was connected. Please start "
                                     "again from your link."))
    if attempt.expires_at <= deps.now():
        return Status("expired", Text("This code has expired. Get a new code and post that one instead."))
    return None


def _poll_quietly(db: Session, deps: Deps, spec: ProviderSpec, app: AppCredentials) -> Status | None:
    """Poll; a temporary failure (409 from another poller, 5xx, timeouts) only means "not yet"."""
    try:
        poll_updates(db, deps, spec, app)
    except PlatformError as exc:
        db.rollback()
        log.warning("telegram update check failed: %s (%s)", exc.kind, exc.platform_code or "-")
        if exc.kind == PlatformError.APP_MISCONFIGURED:
            return Status("unavailable", BOT_BROKEN)
        if exc.kind == PlatformError.RATE_LIMITED:
            return Status("waiting", SLOW_DOWN, retry_after=exc.retry_after)
    return None


def poll_updates(db: Session, deps: Deps, spec: ProviderSpec, app: AppCredentials, *, timeout: int = 0,
                 lock_wait: float = 0.0) -> bool:
    """Read and confirm the bot's pending updates, recording every /connect code seen. Commits
    after each batch, before confirming it. False when another poller holds the bot's lock."""
    telegram = adapter(deps, spec)
    timeout = max(0, min(timeout, MAX_LONG_POLL))
    with deps.locks.hold(f"telegram-updates:{bot_key(app)}", ttl=timeout + POLL_LOCK_SECONDS,
                         wait=lock_wait) as owned:
        if not owned:
            return False
        offset: int | None = None
        for _ in range(MAX_PAGES):
            batch = telegram.updates(spec, app, offset, timeout if offset is None else 0)
            if not batch:
                break
            for item in batch:
                _record(db, deps, spec, app, item)
            db.commit()
            offset = max(int(item["update_id"]) for item in batch) + 1  # the next call confirms this batch
    return True


def bot_key(app: AppCredentials) -> str:
    """A name for the bot that does not reveal its token (lock names, comparisons)."""
    return hash_secret(f"telegram-bot:{app.client_secret}")[:24]


def _record(db: Session, deps: Deps, spec: ProviderSpec, app: AppCredentials, item: dict[str, Any]) -> None:
    message = item.get("channel_post") or item.get("message")
    if not isinstance(message, dict) or not isinstance(message.get("chat"), dict):
        return
    code = parse_command(message.get("text"))
    chat = message["chat"]
    if code is None or chat.get("id") in (None, ""):
        return
    attempt = db.scalar(select(ConnectAttempt).where(ConnectAttempt.connect_code_hash == code_hash(code)))
    if attempt is None or attempt.platform != PLATFORM or attempt.expires_at <= deps.now():
        return
    if not _uses_bot(db, deps, spec, attempt.agency_id, app):
        return  # the code was posted where another agency's bot reads it: not this attempt's bot
    _bind(db, deps, attempt, message, chat)


def _uses_bot(db: Session, deps: Deps, spec: ProviderSpec, agency_id: str, app: AppCredentials) -> bool:
    try:
        own = platforms.app_for(db, deps, agency_id, spec)
    except PortalError:
        return False
    return constant_time_equals(bot_key(own), bot_key(app))


def _unclaimed(deps: Deps) -> Any:
    return or_(ConnectAttempt.callback_at.is_(None), ConnectAttempt.callback_at < deps.now() - CLAIM_TIMEOUT)


def _bind(db: Session, deps: Deps, attempt: ConnectAttempt, message: dict[str, Any], chat: dict[str, Any]) -> None:
    """Tie a pending attempt to the chat its code was posted in (the latest post wins until connected)."""
    if chat.get("type") == "private":
        db.execute(update(ConnectAttempt)
                   .where(ConnectAttempt.id == attempt.id, ConnectAttempt.stage == AttemptStage.STARTED)
                   .values(error_code="private_chat").execution_options(synchronize_session=False))
        return
    message_id = message.get("message_id")
    match = {"chat_id": str(chat["id"])[:64], "type": str(chat.get("type") or "")[:20],
             "title": str(chat.get("title") or "")[:255],
             "message_id": message_id if isinstance(message_id, int) else None}
    db.execute(update(ConnectAttempt)
               .where(ConnectAttempt.id == attempt.id,
                      ConnectAttempt.stage.in_([AttemptStage.STARTED, AttemptStage.AUTHORIZED]), _unclaimed(deps))
               .values(stage=AttemptStage.AUTHORIZED, candidates=[match], error_code=None)
               .execution_options(synchronize_session=False))


# Finishing ---------------------------------------------------------------------------------------------

def _finish(db: Session, deps: Deps, link: ConnectLink, attempt: ConnectAttempt, spec: ProviderSpec,
            app: AppCredentials, actor: Actor) -> Status:
    """Claim the matched attempt, verify the bot's rights in the chat, store the connection."""
    claimed = db.execute(update(ConnectAttempt)
                         .where(ConnectAttempt.id == attempt.id, ConnectAttempt.stage == AttemptStage.AUTHORIZED,
                                _unclaimed(deps))
                         .values(callback_at=deps.now()).execution_options(synchronize_session=False))
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        db.rollback()
        return Status("waiting", CHECKING)
    db.commit()
    db.refresh(attempt)
    match = (attempt.candidates or [{}])[0]
    telegram = adapter(deps, spec)
    bot: BotInfo | None = None
    try:
        bot = telegram.bot(spec, app)
        checked = telegram.check_chat(spec, app, str(match.get("chat_id") or ""), bot)
    except PlatformError as exc:
        return _release_after_error(db, attempt, match, bot, exc)
    if checked.problem:
        _release(db, attempt, checked.problem)
        return Status("action_needed", rights_message(checked.problem, checked.chat.title, checked.bot.username,
                                                      checked.chat.type))
    try:
        _store(db, deps, link, attempt, spec, checked, actor)
    except PortalError as exc:
        return Status("failed", exc.public_message)
    if isinstance(match.get("message_id"), int):
        _delete_quietly(telegram, spec, app, checked.chat.id, match["message_id"])
    return Status("connected", CONNECTED)


def _store(db: Session, deps: Deps, link: ConnectLink, attempt: ConnectAttempt, spec: ProviderSpec,
           checked: ChatCheck, actor: Actor) -> None:
    chat = checked.chat
    # No per-connection token exists: the bot token is the app's credential, so the grant is empty.
    grant = TokenGrant("", None, None, None, ())
    authorized = Authorized(grant, AccountInfo(chat.id, chat.title or chat.id, chat.username, None), (), None)
    with connections.failing_attempt(db, attempt):
        links.check_usable(link, deps.now())  # revoked, expired or archived while the client was in Telegram
        connections.finish_authorization(db, deps, attempt, link, spec, authorized, actor)
    connection = db.get(Connection, attempt.connection_id)
    if connection is not None:
        connection.extra = {"chat_type": chat.type, "bot_id": str(checked.bot.id),
                            "bot_username": checked.bot.username}
        db.commit()


def _release(db: Session, attempt: ConnectAttempt, problem: str | None) -> None:
    db.execute(update(ConnectAttempt).where(ConnectAttempt.id == attempt.id)
               .values(callback_at=None, error_code=problem).execution_options(synchronize_session=False))
    db.commit()


def _release_after_error(db: Session, attempt: ConnectAttempt, match: dict[str, Any], bot: BotInfo | None,
                         exc: PlatformError) -> Status:
    log.warning("telegram rights check failed: %s (%s)", exc.kind, exc.platform_code or "-")
    db.rollback()
    if exc.kind == PlatformError.PERMISSION_LOST:
        _release(db, attempt, "not_member")
        return Status("action_needed", rights_message("not_member", str(match.get("title") or ""),
                                                      bot.username if bot else "", str(match.get("type") or "")))
    _release(db, attempt, None)
    if exc.kind == PlatformError.APP_MISCONFIGURED:
        return Status("unavailable", BOT_BROKEN)
    return Status("waiting", SLOW, retry_after=exc.retry_after)


_AGAIN = " then press “Check now”. You don't need to post the code again."
RIGHTS = {
    "no_post_right": Text("%(bot)s is an administrator of %(where)s but may not post there. Turn on its “Post "
                          "messages” right," + _AGAIN),
    "not_admin_channel": Text("%(bot)s is in %(where)s but is not an administrator. Make it an administrator with "
                              "the “Post messages” right," + _AGAIN),
    "not_admin": Text("%(bot)s is in %(where)s but is not an administrator. Make it an administrator," + _AGAIN),
    "not_member": Text("%(bot)s is not in %(where)s. Add it as an administrator," + _AGAIN),
}


def rights_message(problem: str, title: str, bot_username: str, chat_type: str) -> Text:
    """What the client must fix, in plain words (translated where it is shown)."""
    bot: str | Text = f"@{bot_username}" if bot_username else Text("The bot")
    where = Text("“%(title)s”", {"title": title}) if title else Text("that chat")
    if problem == "not_admin" and chat_type == "channel":
        problem = "not_admin_channel"
    template = RIGHTS.get(problem, RIGHTS["not_member"])
    return Text(template.template, {"bot": bot, "where": where})


def _delete_quietly(telegram: Telegram, spec: ProviderSpec, app: AppCredentials, chat_id: str,
                    message_id: int) -> None:
    """Remove the /connect message from the chat; best effort (a channel admin may lack the right)."""
    try:
        telegram.delete_message(spec, app, chat_id, message_id)
    except PlatformError as exc:
        log.info("telegram could not delete the /connect message: %s (%s)", exc.kind, exc.platform_code or "-")


# Workers and health ------------------------------------------------------------------------------------

def poll_bots(db: Session, deps: Deps, *, timeout: int = 0, lock_wait: float = 0.0) -> int:
    """For a worker: poll every bot in use (the operator's and the agencies' own), then finish
    attempts whose code just arrived. Returns how many connections were stored."""
    spec = platforms.spec_for(deps.settings, PLATFORM)
    for app in bots(db, deps, spec):
        try:
            poll_updates(db, deps, spec, app, timeout=timeout, lock_wait=lock_wait)
        except PlatformError as exc:
            db.rollback()
            log.warning("telegram update poll failed: %s (%s)", exc.kind, exc.platform_code or "-")
    fresh = db.scalars(select(ConnectAttempt).where(
        ConnectAttempt.platform == PLATFORM, ConnectAttempt.stage == AttemptStage.AUTHORIZED,
        ConnectAttempt.error_code.is_(None), ConnectAttempt.callback_at.is_(None),
        ConnectAttempt.expires_at > deps.now())).all()
    stored = 0
    for attempt in fresh:
        try:
            link = links.get_link(db, attempt.agency_id, attempt.link_id)
            app = platforms.app_for(db, deps, attempt.agency_id, spec)
        except PortalError:
            continue  # the link or the agency's app went away meanwhile: the attempt just expires
        db.commit()
        status = _finish(db, deps, link, attempt, spec, app, Actor("client", link.id, None))
        stored += status.state == "connected"
    return stored


def bots(db: Session, deps: Deps, spec: ProviderSpec) -> list[AppCredentials]:
    """Every distinct bot in use: the operator's default and each agency's own."""
    found: dict[str, AppCredentials] = {}
    operator = platforms.operator_app(deps.settings, spec)
    if operator is not None:
        found[bot_key(operator)] = operator
    rows = db.scalars(select(ProviderApp).where(ProviderApp.platform == spec.credential_group,
                                                ProviderApp.invalid_since.is_(None)))
    for row in rows:
        secret = deps.cipher.decrypt(row.client_secret_enc, column_context("provider_apps", row.id, "client_secret"))
        app = AppCredentials(row.client_id, secret)
        found.setdefault(bot_key(app), app)
    return list(found.values())


def check_connection(db: Session, deps: Deps, connection: Connection) -> ChatCheck:
    """Health: the bot can still see the chat and publish there (getMe, getChat, getChatMember).
    Raises PlatformError (PERMISSION_LOST when a right is gone, APP_MISCONFIGURED for the bot token)."""
    spec, app = connections.spec_and_app(db, deps, connection.agency_id, PLATFORM, None)
    checked = adapter(deps, spec).check_chat(spec, app, connection.external_id)
    if checked.problem:
        raise PlatformError(PlatformError.PERMISSION_LOST, f"the bot may no longer publish here ({checked.problem})",
                            platform_code=checked.problem)
    return checked
