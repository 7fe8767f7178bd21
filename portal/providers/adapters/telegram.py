"""Telegram: a bot the agency controls, made an administrator of the client's channel or group.

Nothing here is OAuth (reference/platforms.md §13). The credential is the bot token from
@BotFather — the app's ``client_secret`` (``client_id`` is the bot's username) — and it sits
in the path of every call: ``https://api.telegram.org/bot<token>/<method>``. So no URL of
this API, and no exception that could carry one, may reach a log, a page or a traceback:
every failure leaves this module as a fresh PlatformError without the transport error
chained to it. File URLs (``/file/bot<token>/...``) embed the token too, so chat photos are
never fetched or shown.

A connection has no token of its own: the bot token is the app's. ``can_refresh`` is False
and health is checked with :meth:`Telegram.check_chat` (getChat + getMe + getChatMember).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from portal.errors import PlatformError
from portal.oauth import AppCredentials
from portal.providers.adapters.base import Adapter
from portal.providers.spec import ProviderSpec

# A real token is "<bot id>:<35 url-safe characters>"; anything outside this alphabet could
# change the request path, so it is refused before any call.
_TOKEN = re.compile(r"[A-Za-z0-9_:\-]{1,200}")
_KICKED = ("bot was kicked", "bot is not a member", "not a member", "user not found", "bot was blocked",
           "have no rights", "not enough rights", "need administrator rights", "chat not found",
           "upgraded to a supergroup", "chat_write_forbidden")
UPDATE_KINDS = ["message", "channel_post"]


@dataclass(frozen=True)
class BotInfo:
    id: int
    username: str


@dataclass(frozen=True)
class ChatInfo:
    id: str
    type: str  # channel | supergroup | group | private
    title: str
    username: str  # public chats only, without "@"


@dataclass(frozen=True)
class ChatCheck:
    """What the bot may do in a chat; ``problem`` names the missing right (None: all good)."""

    chat: ChatInfo
    bot: BotInfo
    status: str
    problem: str | None


def classify_telegram_error(status: int, body: dict[str, Any], retry_after: str | None, what: str) -> PlatformError:
    """Bot API envelope {"ok": false, "error_code", "description", "parameters"} to a shared class.

    Telegram warns that error codes may change, so the description decides too."""
    code = body.get("error_code") if isinstance(body.get("error_code"), int) else status
    description = str(body.get("description") or "").lower()
    raw_parameters = body.get("parameters")
    parameters: dict[str, Any] = raw_parameters if isinstance(raw_parameters, dict) else {}
    if code == 429 or status == 429 or "too many requests" in description:
        wait = parameters.get("retry_after")
        seconds = float(wait) if isinstance(wait, int | float) else _seconds(retry_after)
        return PlatformError(PlatformError.RATE_LIMITED, f"Telegram asked us to wait ({what})",
                             retry_after=seconds if seconds is not None else 30.0, platform_code="429")
    if code == 401 or status == 401 or description.startswith("unauthorized"):
        return PlatformError(PlatformError.APP_MISCONFIGURED, f"Telegram rejected the bot token ({what})",
                             platform_code="401")
    if code == 409 or "conflict" in description:
        return PlatformError(PlatformError.TEMPORARY, f"another program is reading this bot's updates ({what})",
                             platform_code="409")
    if status >= 500 or (isinstance(code, int) and code >= 500):
        return PlatformError(PlatformError.TEMPORARY, f"Telegram had a temporary problem ({what})",
                             platform_code=str(code))
    if "migrate_to_chat_id" in parameters:
        return PlatformError(PlatformError.PERMISSION_LOST, f"the group became a supergroup with a new id ({what})",
                             platform_code="migrated")
    if code == 403 or any(part in description for part in _KICKED):
        return PlatformError(PlatformError.PERMISSION_LOST, f"the bot lost access to the chat ({what})",
                             platform_code=str(code))
    return PlatformError(PlatformError.TEMPORARY, f"Telegram failed the {what}", platform_code=str(code))


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def rights_problem(chat: ChatInfo, member: dict[str, Any]) -> str | None:
    """None when the bot may publish in the chat, else what is missing:
    ``not_member`` (left or kicked), ``not_admin``, or ``no_post_right`` (a channel admin without "Post messages")."""
    status = member.get("status")
    if status == "creator":
        return None
    if status == "administrator":
        if chat.type == "channel" and member.get("can_post_messages") is not True:
            return "no_post_right"
        return None
    if status in ("member", "restricted"):
        return "not_admin"
    return "not_member"


class Telegram(Adapter):
    """The Bot API calls the connect flow and the health check need."""

    def _call(self, spec: ProviderSpec, app: AppCredentials, method: str, what: str,
              params: dict[str, str] | None = None) -> Any:
        token = app.client_secret
        if not _TOKEN.fullmatch(token or ""):
            raise PlatformError(PlatformError.APP_MISCONFIGURED, "the Telegram bot token is not well-formed")
        try:
            body = self.oauth.call_json("POST", f"{spec.base_url}/bot{token}/{method}", what, data=params or {},
                                        classify=classify_telegram_error)
        except PlatformError as exc:
            # The transport error behind it may quote the URL, and so the token: never chain it.
            # Telegram has no per-connection token: a refused token is always the bot's.
            kind = PlatformError.APP_MISCONFIGURED if exc.kind == PlatformError.TOKEN_INVALID else exc.kind
            raise PlatformError(kind, str(exc), retry_after=exc.retry_after,
                                platform_code=exc.platform_code) from None
        if body.get("ok") is not True:
            raise classify_telegram_error(200, body, None, what)
        return body.get("result")

    def bot(self, spec: ProviderSpec, app: AppCredentials) -> BotInfo:
        """getMe: the bot's id and @username (which the client adds to their chat)."""
        result = self._call(spec, app, "getMe", "bot lookup")
        if not isinstance(result, dict) or not isinstance(result.get("id"), int) or not result.get("username"):
            raise PlatformError(PlatformError.TEMPORARY, "Telegram's getMe answer had an odd shape")
        return BotInfo(result["id"], str(result["username"])[:64])

    def updates(self, spec: ProviderSpec, app: AppCredentials, offset: int | None, timeout: int = 0,
                limit: int = 100) -> list[dict[str, Any]]:
        """getUpdates. Calling with ``offset`` confirms every update below it: Telegram then
        forgets them, so the offset to resume from is kept by Telegram itself."""
        params = {"timeout": str(timeout), "limit": str(limit), "allowed_updates": json.dumps(UPDATE_KINDS)}
        if offset is not None:
            params["offset"] = str(offset)
        result = self._call(spec, app, "getUpdates", "update check", params)
        if not isinstance(result, list):
            raise PlatformError(PlatformError.TEMPORARY, "Telegram's getUpdates answer had an odd shape")
        return [row for row in result if isinstance(row, dict) and isinstance(row.get("update_id"), int)]

    def chat(self, spec: ProviderSpec, app: AppCredentials, chat_id: str) -> ChatInfo:
        """getChat: title, type and public @username. The photo is left alone (its URL holds the token)."""
        result = self._call(spec, app, "getChat", "chat lookup", {"chat_id": chat_id})
        if not isinstance(result, dict) or result.get("id") in (None, ""):
            raise PlatformError(PlatformError.TEMPORARY, "Telegram's getChat answer had an odd shape")
        title = result.get("title") or " ".join(str(result.get(k) or "") for k in ("first_name", "last_name"))
        return ChatInfo(id=str(result["id"])[:255], type=str(result.get("type") or ""), title=str(title).strip()[:255],
                        username=str(result.get("username") or "")[:255])

    def member(self, spec: ProviderSpec, app: AppCredentials, chat_id: str, user_id: int) -> dict[str, Any]:
        result = self._call(spec, app, "getChatMember", "rights check", {"chat_id": chat_id, "user_id": str(user_id)})
        return result if isinstance(result, dict) else {}

    def check_chat(self, spec: ProviderSpec, app: AppCredentials, chat_id: str,
                   bot: BotInfo | None = None) -> ChatCheck:
        """The chat, the bot, and whether the bot may publish there (getMe unless ``bot`` is known,
        getChat, getChatMember)."""
        bot = bot or self.bot(spec, app)
        chat = self.chat(spec, app, chat_id)
        member = self.member(spec, app, chat_id, bot.id)
        return ChatCheck(chat, bot, str(member.get("status") or ""), rights_problem(chat, member))

    def delete_message(self, spec: ProviderSpec, app: AppCredentials, chat_id: str, message_id: int) -> None:
        self._call(spec, app, "deleteMessage", "message clean-up",
                   {"chat_id": chat_id, "message_id": str(message_id)})

    # Lifecycle: nothing per connection to refresh or revoke ------------------------------------------

    def can_refresh(self, spec: ProviderSpec, has_refresh_token: bool) -> bool:
        return False  # the bot token does not expire; BotFather /revoke replaces it for every chat at once

    def revoke(self, spec: ProviderSpec, app: AppCredentials, access_token: str | None,
               refresh_token: str | None) -> None:
        return  # there is no per-connection grant; the bot stays admin until the client removes it

    def check(self, spec: ProviderSpec, access_token: str | None, *, app: AppCredentials | None = None,
              external_id: str | None = None) -> None:
        """A chat holds no token: the bot (the app's token) must still see the chat and may publish there."""
        if app is None or external_id is None:
            raise PlatformError(PlatformError.APP_MISCONFIGURED, "a Telegram check needs the bot and the chat")
        checked = self.check_chat(spec, app, external_id)
        if checked.problem:
            raise PlatformError(PlatformError.PERMISSION_LOST, "the bot may no longer publish here "
                                f"({checked.problem})", platform_code=checked.problem)
