"""Stand-in for the Telegram Bot API, and a page where a demo user plays the client in Telegram.

Real shapes (reference/platforms.md §13): ``api.telegram.org/bot<token>/<method>`` answering
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code", "description", "parameters"}``;
getUpdates with offset semantics (an offset confirms every update below it, without one the
earliest unconfirmed come first, updates older than 24 h are dropped, a second getUpdates
while one runs gets 409); privacy mode (a bot that is only a member of a group sees commands
addressed to it, ``/cmd@bot``; a channel's posts reach it only as an administrator). The one
sandbox bot's token is the sandbox app's client secret.

``/sandbox/telegram`` lists the demo people's channels and groups: post a message in one as
the client, or change what the bot is there (administrator, administrator without "Post
messages", plain member, removed, banned). State lives in the sandbox database: these two
tables are created with the others when the sandbox starts (``create_all``), so no schema
version bump is needed; they are disposable like the rest.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import jsonify, render_template_string, request
from sqlalchemy import JSON, Integer, String, delete, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from portal.db import utcnow
from portal.sandbox import DEMO_ACCOUNTS, SandboxBase, SandboxError
from portal.views.sandbox import bp
from portal.views.sandbox_platforms import no_store, route, server

HOST = "api.telegram.org"
BOT_ID = 7000000001
BOT_USERNAME = "EasyConnectSandboxBot"
BOT_USER = {"id": BOT_ID, "is_bot": True, "first_name": "EasyConnect Sandbox", "username": BOT_USERNAME}
ROLES = {"administrator": "Administrator (can post)", "administrator_no_post": "Administrator without “Post messages”",
         "member": "Plain member (not an admin)", "left": "Not in the chat", "kicked": "Removed and banned"}
MAX_LONG_POLL = 5  # seconds: the real API allows 50, the sandbox keeps tests quick
KEEP_UPDATES = timedelta(hours=24)
CONFLICT = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"


@dataclass(frozen=True)
class DemoChat:
    id: int
    type: str  # channel | supergroup
    title: str
    username: str  # public chats only
    owner: str  # the demo person who created it
    bot_role: str  # what the bot is there until changed on the sandbox page


CHATS = (
    DemoChat(-1001500001001, "channel", "Blue Bottle Bakery News", "bluebottlenews", "sbx-1001", "administrator"),
    DemoChat(-1001500001002, "supergroup", "Blue Bottle Regulars", "", "sbx-1001", "administrator"),
    DemoChat(-1001500002001, "channel", "Northwind Trail Notes", "northwindtrail", "sbx-1002",
             "administrator_no_post"),
    DemoChat(-1001500002002, "supergroup", "Northwind Hikers Chat", "", "sbx-1002", "member"),
    DemoChat(-1001500003001, "channel", "Casa Aurora Studio", "casaaurora", "sbx-1003", "administrator"),
    DemoChat(5_000_001_001, "private", f"Private chat with @{BOT_USERNAME}", "", "sbx-1001", "member"),
)
CHATS_BY_ID = {str(chat.id): chat for chat in CHATS}


class TelegramUpdate(SandboxBase):
    __tablename__ = "sandbox_telegram_updates"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused: offsets depend on it

    update_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20))  # message | channel_post
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column()


class TelegramState(SandboxBase):
    """Small facts: the confirmed offset, the running poll, each chat's bot role and message counter."""

    __tablename__ = "sandbox_telegram_state"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class TelegramError(Exception):
    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters


def _answer(body: dict[str, Any], status: int = 200) -> Any:
    response = jsonify(body)
    response.status_code = status
    return no_store(response)


def _error(exc: TelegramError) -> Any:
    body: dict[str, Any] = {"ok": False, "error_code": exc.code, "description": exc.description}
    if exc.parameters:
        body["parameters"] = exc.parameters
    return _answer(body, exc.code)


def _from_switch(exc: SandboxError) -> TelegramError:
    """The shared failure switches, in Telegram's words."""
    if exc.status == 429:
        wait = exc.retry_after or 30
        return TelegramError(429, f"Too Many Requests: retry after {wait}", {"retry_after": wait})
    if exc.status == 401:
        return TelegramError(401, "Unauthorized")
    if exc.status >= 500:
        return TelegramError(500, "Internal Server Error")
    return TelegramError(400, f"Bad Request: {exc.error}")


@route("GET", HOST, r"bot(?P<token>[^/]*)/(?P<method>[A-Za-z]+)")
@route("POST", HOST, r"bot(?P<token>[^/]*)/(?P<method>[A-Za-z]+)")
def bot_api(token: str, method: str) -> Any:
    try:
        server().check_secret(token)
        handler = _METHODS.get(method.lower())
        if handler is None:
            raise TelegramError(404, "Not Found")
        return _answer({"ok": True, "result": handler(_params())})
    except SandboxError as exc:
        return _error(_from_switch(exc) if exc.error != "invalid_client" else TelegramError(401, "Unauthorized"))
    except TelegramError as exc:
        return _error(exc)


def _params() -> dict[str, Any]:
    params: dict[str, Any] = dict(request.values.items())
    if request.is_json:
        body = request.get_json(silent=True)
        if isinstance(body, dict):
            params.update(body)
    return params


def _int(value: Any, default: int | None = None) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


# Methods -------------------------------------------------------------------------------------------

def get_me(params: dict[str, Any]) -> dict[str, Any]:
    server()._maybe_fail("userinfo")
    return {**BOT_USER, "can_join_groups": True, "can_read_all_group_messages": False,
            "supports_inline_queries": False}


def get_updates(params: dict[str, Any]) -> list[dict[str, Any]]:
    server()._maybe_fail("token")
    offset = _int(params.get("offset"))
    limit = min(max(_int(params.get("limit"), 100) or 100, 1), 100)
    timeout = min(max(_int(params.get("timeout"), 0) or 0, 0), MAX_LONG_POLL)
    allowed = _allowed(params.get("allowed_updates"))
    if not _begin_poll(timeout):
        server().count("telegram_conflicts")
        raise TelegramError(409, CONFLICT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            rows = _take(offset, limit, allowed)
            if rows or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
    finally:
        _set("polling", 0)
    server().count("telegram_get_updates")
    return rows


def _allowed(value: Any) -> list[str] | None:
    if isinstance(value, str) and value:
        try:
            value = json.loads(value)
        except ValueError:
            raise TelegramError(400, "Bad Request: can't parse allowed updates") from None
    return [str(kind) for kind in value] if isinstance(value, list) and value else None


def _begin_poll(timeout: int) -> bool:
    with server().sessions.begin() as db:
        running = db.get(TelegramState, "polling")
        if running is not None and isinstance(running.value, int | float) and running.value > time.time():
            return False
        db.merge(TelegramState(key="polling", value=time.time() + timeout + 5))
    return True


def _take(offset: int | None, limit: int, allowed: list[str] | None) -> list[dict[str, Any]]:
    """Confirm what the offset says is done and return what is left (Telegram's semantics)."""
    with server().sessions.begin() as db:
        db.execute(delete(TelegramUpdate).where(TelegramUpdate.created_at < utcnow() - KEEP_UPDATES))
        confirmed = _get(db, "confirmed", 0)
        query = select(TelegramUpdate)
        if allowed:
            query = query.where(TelegramUpdate.kind.in_(allowed))
        if offset is not None and offset < 0:  # the last -offset updates; everything before is forgotten
            rows = list(db.scalars(query.where(TelegramUpdate.update_id >= confirmed)
                                   .order_by(TelegramUpdate.update_id.desc()).limit(min(-offset, limit))))[::-1]
            confirmed = rows[0].update_id if rows else confirmed
        else:
            confirmed = max(confirmed, offset or 0)
            rows = list(db.scalars(query.where(TelegramUpdate.update_id >= confirmed)
                                   .order_by(TelegramUpdate.update_id).limit(limit)))
        db.merge(TelegramState(key="confirmed", value=confirmed))
        db.merge(TelegramState(key="last_offset", value=offset))
        return [{**row.payload, "update_id": row.update_id} for row in rows]


def get_chat(params: dict[str, Any]) -> dict[str, Any]:
    server()._maybe_fail("userinfo")
    chat = _visible_chat(params.get("chat_id"))
    result: dict[str, Any] = {**_chat_json(chat), "description": f"{chat.title} (sandbox)",
                              "photo": {"small_file_id": f"sbx-photo-s-{abs(chat.id)}",
                                        "small_file_unique_id": f"sbxs{abs(chat.id)}",
                                        "big_file_id": f"sbx-photo-b-{abs(chat.id)}",
                                        "big_file_unique_id": f"sbxb{abs(chat.id)}"}}
    return result


def get_chat_member(params: dict[str, Any]) -> dict[str, Any]:
    server()._maybe_fail("userinfo")
    chat = _visible_chat(params.get("chat_id"))
    user_id = _int(params.get("user_id"))
    if user_id is None:
        raise TelegramError(400, "Bad Request: invalid user_id specified")
    if user_id == BOT_ID:
        return _bot_member(chat, _role(chat))
    owner = _person_user(chat.owner)
    if user_id == owner["id"]:
        return {"status": "creator", "user": owner, "is_anonymous": False}
    return {"status": "left", "user": {"id": user_id, "is_bot": False, "first_name": "Someone"}}


def delete_message(params: dict[str, Any]) -> bool:
    chat = _visible_chat(params.get("chat_id"))
    if _role(chat) not in ("administrator", "administrator_no_post") or _int(params.get("message_id")) is None:
        raise TelegramError(400, "Bad Request: message can't be deleted")
    server().count("telegram_deleted_messages")
    return True


_METHODS = {"getme": get_me, "getupdates": get_updates, "getchat": get_chat, "getchatmember": get_chat_member,
            "deletemessage": delete_message}


def _visible_chat(chat_id: Any) -> DemoChat:
    value = str(chat_id or "")
    chat = CHATS_BY_ID.get(value) or next((c for c in CHATS if c.username and f"@{c.username}" == value), None)
    if chat is None:
        raise TelegramError(400, "Bad Request: chat not found")
    kind = "channel" if chat.type == "channel" else "supergroup"
    role = _role(chat)
    if role == "kicked":
        raise TelegramError(403, f"Forbidden: bot was kicked from the {kind} chat")
    if role == "left":
        raise TelegramError(403, f"Forbidden: bot is not a member of the {kind} chat")
    return chat


def _chat_json(chat: DemoChat) -> dict[str, Any]:
    if chat.type == "private":  # a private chat is the person: no title
        person = _person_user(chat.owner)
        return {"id": chat.id, "type": "private", "first_name": person["first_name"], "username": person["username"]}
    data: dict[str, Any] = {"id": chat.id, "type": chat.type, "title": chat.title}
    if chat.username:
        data["username"] = chat.username
    return data


def _bot_member(chat: DemoChat, role: str) -> dict[str, Any]:
    if role == "member":
        return {"status": "member", "user": BOT_USER}
    if role not in ("administrator", "administrator_no_post"):
        return {"status": "left", "user": BOT_USER}
    rights: dict[str, Any] = {"status": "administrator", "user": BOT_USER, "can_be_edited": False,
                              "is_anonymous": False, "can_manage_chat": True, "can_delete_messages": True,
                              "can_invite_users": True, "can_restrict_members": True, "can_promote_members": False,
                              "can_change_info": False}
    if chat.type == "channel":
        rights.update(can_post_messages=role == "administrator", can_edit_messages=role == "administrator")
    else:
        rights.update(can_pin_messages=True)
    return rights


def _person_user(account_id: str) -> dict[str, Any]:
    person = next(p for p in DEMO_ACCOUNTS if p.id == account_id)
    return {"id": 5_000_000_000 + int(account_id.removeprefix("sbx-")), "is_bot": False, "first_name": person.name,
            "username": person.handle.replace(".", "_")}


# State ----------------------------------------------------------------------------------------------

def _get(db: Session, key: str, default: Any) -> Any:
    row = db.get(TelegramState, key)
    return row.value if row is not None and row.value is not None else default


def _set(key: str, value: Any) -> None:
    with server().sessions.begin() as db:
        db.merge(TelegramState(key=key, value=value))


def _role(chat: DemoChat) -> str:
    with server().sessions() as db:
        role = _get(db, f"role:{chat.id}", chat.bot_role)
    return role if role in ROLES else chat.bot_role


def post_message(chat: DemoChat, text: str) -> str:
    """Post ``text`` in ``chat`` as its owner; the bot gets an update if it would see the message."""
    role = _role(chat)
    addressed = re.match(rf"/\w+@{BOT_USERNAME}\b", text, re.IGNORECASE) is not None
    if role in ("left", "kicked"):
        return "Posted, but the bot is not in this chat, so it did not see the message."
    if chat.type == "channel" and role == "member":
        return "Posted, but in a channel a bot sees posts only as an administrator."
    if chat.type not in ("channel", "private") and role == "member" and not addressed:
        return (f"Posted, but the bot did not see it: as a plain member (privacy mode) it only sees commands "
                f"addressed to it, like /connect@{BOT_USERNAME} CODE.")
    with server().sessions.begin() as db:
        message_id = _get(db, f"messages:{chat.id}", 0) + 1
        db.merge(TelegramState(key=f"messages:{chat.id}", value=message_id))
        message: dict[str, Any] = {"message_id": message_id, "date": int(time.time()), "chat": _chat_json(chat),
                                   "text": text}
        if text.startswith("/"):
            message["entities"] = [{"offset": 0, "length": len(text.split()[0]), "type": "bot_command"}]
        kind = "channel_post" if chat.type == "channel" else "message"
        if kind == "channel_post":
            message["sender_chat"] = _chat_json(chat)
        else:
            message["from"] = _person_user(chat.owner)
        db.add(TelegramUpdate(kind=kind, payload={kind: message}, created_at=utcnow()))
    server().count("telegram_posts")
    return "Posted. The bot received it."


# The sandbox page: play the client in Telegram ----------------------------------------------------------

@bp.get("/telegram")
def telegram_page() -> Any:
    return _page()


@bp.post("/telegram/post")
def telegram_post() -> Any:
    chat = CHATS_BY_ID.get(request.form.get("chat_id", ""))
    text = request.form.get("text", "").strip()
    if chat is None or not text or len(text) > 4096:
        return _page("Choose a chat and write a message (at most 4,096 characters).", 400)
    return _page(f"{chat.title}: {post_message(chat, text)}")


@bp.post("/telegram/role")
def telegram_role() -> Any:
    chat = CHATS_BY_ID.get(request.form.get("chat_id", ""))
    role = request.form.get("role", "")
    if chat is None or role not in ROLES:
        return _page("Choose a chat and what the bot should be there.", 400)
    _set(f"role:{chat.id}", role)
    return _page(f"{chat.title}: the bot is now “{ROLES[role]}”.")


@bp.get("/telegram/state")
def telegram_state() -> Any:
    """For tests and the curious: the confirmed offset and what is still unread."""
    with server().sessions() as db:
        confirmed = _get(db, "confirmed", 0)
        pending = db.scalar(select(func.count()).select_from(TelegramUpdate)
                            .where(TelegramUpdate.update_id >= confirmed))
        last = db.scalar(select(func.max(TelegramUpdate.update_id)))
        return no_store(jsonify(confirmed_offset=confirmed, last_offset=_get(db, "last_offset", None),
                                pending=pending or 0, last_update_id=last or 0))


def _page(notice: str | None = None, status: int = 200) -> Any:
    people = [(person, [(chat, _role(chat)) for chat in CHATS if chat.owner == person.id]) for person in DEMO_ACCOUNTS]
    html = render_template_string(_PAGE, people=people, roles=ROLES, bot=BOT_USERNAME, notice=notice,
                                  error=status >= 400)
    return html, status


_PAGE = """{% extends "base.html" %}
{% block title %}Sandbox · Telegram{% endblock %}
{% block referrer %}no-referrer{% endblock %}
{% block head %}<style nonce="{{ csp_nonce() }}">
  .tg-chat { border: 1px solid var(--line); border-radius: 10px; padding: .75rem; margin: .6rem 0;
    display: grid; gap: .5rem; }
  .tg-chat form { display: flex; gap: .5rem; flex-wrap: wrap; align-items: center; }
  .tg-chat input[type=text] { flex: 1; min-width: 14rem; }
</style>{% endblock %}
{% block body_class %}sandbox{% endblock %}
{% block body %}
<main class="client-card sandbox-card">
  <p class="sandbox-banner">Sandbox Telegram — a local stand-in. No real chat or account is used.</p>
  <h1>Post in a demo channel or group</h1>
  <p class="lead">Play the client: paste the <code>/connect …</code> message from the portal into the chat you want to
  connect and post it. The sandbox bot is <strong>@{{ bot }}</strong>; change what it is in a chat to see how the
  portal explains a missing right.</p>
  {% if notice %}<p class="flash{% if error %} flash-error{% endif %}" role="status">{{ notice }}</p>{% endif %}
  {% for person, chats in people %}
  <h2>{{ person.name }}</h2>
  {% for chat, role in chats %}
  <section class="tg-chat">
    <strong>{{ chat.title }}</strong>
    {% if chat.type == 'private' %}<small>A private chat: the bot sees everything, but only a channel or group
      can be connected.</small>{% else %}
    <small>{{ 'Channel' if chat.type == 'channel' else 'Group' }}
      · {% if chat.username %}@{{ chat.username }}{% else %}private{% endif %} · bot: {{ roles[role] }}</small>
    {% endif %}
    <form method="post" action="{{ url_for('sandbox.telegram_post') }}">
      <input type="hidden" name="chat_id" value="{{ chat.id }}">
      <input type="text" name="text" value="/connect " maxlength="4096"
             aria-label="Message to post in {{ chat.title }}">
      <button class="button button-primary" type="submit">Post</button>
    </form>
    {% if chat.type != 'private' %}
    <form method="post" action="{{ url_for('sandbox.telegram_role') }}">
      <input type="hidden" name="chat_id" value="{{ chat.id }}">
      <select name="role" aria-label="What the bot is in {{ chat.title }}">
        {% for key, label in roles.items() %}
        <option value="{{ key }}" {% if key == role %}selected{% endif %}>{{ label }}</option>
        {% endfor %}
      </select>
      <button class="button button-small" type="submit">Change</button>
    </form>
    {% endif %}
  </section>
  {% endfor %}
  {% endfor %}
</main>
{% endblock %}
"""
