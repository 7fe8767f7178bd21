"""Telegram end to end against the sandbox's Bot API stand-in: the bot is made an admin of a channel
or group, the client posts a one-time /connect code there, and the page learns of it by itself."""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import replace
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select

from portal.app import create_app
from portal.errors import PlatformError
from portal.models import AttemptStage, AuditEvent, ConnectAttempt
from portal.oauth import AppCredentials
from portal.providers.adapters.telegram import classify_telegram_error
from portal.services import connections, platforms, telegram, tokens
from portal.services.audit import SYSTEM
from portal.services.tokens import RefreshResult
from tests.conftest import REDIS_URL, SANDBOX_SECRET
from tests.helpers import all_platforms_link, connections_in, fresh

BOT = "EasyConnectSandboxBot"
NEWS = "-1001500001001"  # Blue Bottle Bakery News: a public channel, bot admin with "Post messages"
REGULARS = "-1001500001002"  # Blue Bottle Regulars: a private supergroup, bot admin
TRAIL = "-1001500002001"  # Northwind Trail Notes: a channel, bot admin WITHOUT "Post messages"
HIKERS = "-1001500002002"  # Northwind Hikers Chat: a group where the bot is a plain member
DIRECT = "5000001001"  # Blue Bottle's private chat with the bot
DEFAULT_ROLES = {NEWS: "administrator", REGULARS: "administrator", TRAIL: "administrator_no_post",
                 HIKERS: "member", "-1001500003001": "administrator"}


@pytest.fixture(autouse=True)
def _sandbox_chats(live_sandbox):
    """Every test starts with the demo chats as shipped and no failure switch on."""
    live_sandbox.reset()
    for chat_id, role in DEFAULT_ROLES.items():
        set_role(live_sandbox, chat_id, role)
    yield
    live_sandbox.reset()


# Walking the flow ------------------------------------------------------------------------------------------

def set_role(live_sandbox, chat_id, role):
    answer = requests.post(f"{live_sandbox.url}/sandbox/telegram/role", data={"chat_id": chat_id, "role": role},
                           timeout=10)
    assert answer.status_code == 200, answer.text[:300]


def post(live_sandbox, chat_id, text):
    """Act as the client in Telegram: post a message in a demo chat through the sandbox page."""
    answer = requests.post(f"{live_sandbox.url}/sandbox/telegram/post", data={"chat_id": chat_id, "text": text},
                           timeout=10)
    assert answer.status_code == 200, answer.text[:300]
    return answer.text


def sandbox_state(live_sandbox):
    return requests.get(f"{live_sandbox.url}/sandbox/telegram/state", timeout=10).json()


class Page:
    def __init__(self, response):
        assert response.status_code == 200, response.get_data(as_text=True)[:500]
        self.html = response.get_data(as_text=True)
        self.code = re.search(r"<code>/connect ([0-9A-Z]{5}-[0-9A-Z]{5})</code>", self.html).group(1)
        self.status_url = re.search(r'data-status-url="([^"]+)"', self.html).group(1)
        self.check_url = re.search(r'action="(/c/[^"]+/check)"', self.html).group(1)
        self.attempt_id = self.status_url.rsplit("/", 2)[1]


def open_page(client, path):
    """The link page's Connect button for Telegram, then the code page it leads to."""
    pressed = client.post(f"{path}/connect/telegram")
    assert pressed.status_code == 303
    assert pressed.headers["Location"] == f"{path}/bot-code/telegram"
    return Page(client.get(pressed.headers["Location"]))


def status(client, page):
    response = client.get(page.status_url)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_json()


def attempt(db, attempt_id):
    fresh(db)
    return db.scalar(select(ConnectAttempt).where(ConnectAttempt.id == attempt_id))


def telegram_link(db, runtime, **overrides):
    return all_platforms_link(db, runtime.deps, ["telegram"], **overrides)


# The whole flow ----------------------------------------------------------------------------------------------

def test_channel_connects_end_to_end_and_the_page_learns_it_by_itself(client, db, runtime, live_sandbox):
    _, workspace, _, path = telegram_link(db, runtime)
    page = open_page(client, path)
    assert f"@{BOT}" in page.html and f"/connect@{BOT} {page.code}" in page.html
    assert "Post messages" in page.html and "Sandbox" in page.html
    assert f'href="{live_sandbox.url}/sandbox/telegram"' in page.html
    assert '<script src="/static/telegram.js"' in page.html and "<script>" not in page.html
    row = attempt(db, page.attempt_id)
    assert row.platform == "telegram" and row.stage == AttemptStage.STARTED
    assert row.connect_code_hash == telegram.code_hash(page.code) and page.code not in str(row.__dict__)
    assert status(client, page)["state"] == "waiting"

    before = live_sandbox.counters()
    assert "The bot received it" in post(live_sandbox, NEWS, f"/connect {page.code}")
    answer = status(client, page)
    assert answer["state"] == "connected" and answer["next"] == f"{path}/done/{page.attempt_id}"
    done = client.get(answer["next"]).get_data(as_text=True)
    assert "Blue Bottle Bakery News" in done and "@bluebottlenews" in done

    [connection] = connections_in(db, workspace.id)
    assert (connection.platform, connection.external_id, connection.account_kind, connection.display_name,
            connection.handle) == ("telegram", NEWS, "chat", "Blue Bottle Bakery News", "bluebottlenews")
    assert connection.access_token_enc is None and connection.refresh_token_enc is None  # no token pretends
    assert connection.extra == {"chat_type": "channel", "bot_id": "7000000001", "bot_username": BOT}
    assert connection.avatar_url is None  # a chat photo URL would embed the bot token
    assert attempt(db, page.attempt_id).stage == AttemptStage.CONNECTED
    after = live_sandbox.counters()
    assert after["telegram_deleted_messages"] == before.get("telegram_deleted_messages", 0) + 1  # /connect removed
    assert status(client, page)["state"] == "connected"  # asking again changes nothing
    assert tokens.refresh_connection(db, runtime.deps, connection.id, force=True) == RefreshResult.NOT_REFRESHABLE


def test_group_with_the_bot_named_and_the_no_javascript_check_button(client, db, runtime, live_sandbox):
    _, workspace, _, path = telegram_link(db, runtime)
    page = open_page(client, path)
    waiting = client.post(page.check_url, data={"code": page.code})
    assert waiting.status_code == 200 and "Waiting for your /connect message" in waiting.get_data(as_text=True)
    assert Page(waiting).code == page.code  # the same code, shown again

    post(live_sandbox, REGULARS, f"/connect@{BOT}   {page.code.lower().replace('-', '')} ")
    checked = client.post(page.check_url, data={"code": page.code})
    assert checked.status_code == 303 and checked.headers["Location"] == f"{path}/done/{page.attempt_id}"
    [connection] = connections_in(db, workspace.id)
    assert (connection.external_id, connection.display_name, connection.handle, connection.extra["chat_type"]) == (
        REGULARS, "Blue Bottle Regulars", "", "supergroup")


def test_a_check_with_a_code_that_is_not_the_pages_is_refused(client, db, runtime):
    *_, path = telegram_link(db, runtime)
    page = open_page(client, path)
    other = open_page(client, path)
    assert client.post(page.check_url, data={"code": other.code}).status_code == 400
    assert client.post(page.check_url, data={}).status_code == 400


# Codes that must not connect ------------------------------------------------------------------------------

def test_wrong_codes_and_other_messages_are_ignored(client, db, runtime, live_sandbox):
    _, workspace, _, path = telegram_link(db, runtime)
    page = open_page(client, path)
    wrong = "ZZZZZ-ZZZZZ" if page.code != "ZZZZZ-ZZZZZ" else "YYYYY-YYYYY"
    for text in (f"/connect {wrong}", f"/connect{page.code}", f"please /connect {page.code}", "hello",
                 f"/start {page.code}"):
        post(live_sandbox, NEWS, text)
    assert status(client, page)["state"] == "waiting"
    assert connections_in(db, workspace.id) == []
    assert attempt(db, page.attempt_id).stage == AttemptStage.STARTED
    post(live_sandbox, NEWS, f"/connect {page.code}")
    assert status(client, page)["state"] == "connected"


def test_a_code_sent_to_the_bot_privately_gets_a_hint_and_still_works_in_a_channel(client, db, runtime,
                                                                                    live_sandbox):
    _, workspace, _, path = telegram_link(db, runtime)
    page = open_page(client, path)
    post(live_sandbox, DIRECT, f"/connect {page.code}")
    answer = status(client, page)
    assert answer["state"] == "waiting" and "private chat with the bot" in answer["message"]
    assert connections_in(db, workspace.id) == []
    post(live_sandbox, NEWS, f"/connect {page.code}")
    assert status(client, page)["state"] == "connected"


def test_a_used_code_does_not_connect_again_and_an_expired_one_never(client, db, runtime, live_sandbox):
    _, workspace, _, path = telegram_link(db, runtime)
    page = open_page(client, path)
    post(live_sandbox, NEWS, f"/connect {page.code}")
    assert status(client, page)["state"] == "connected"

    post(live_sandbox, REGULARS, f"/connect@{BOT} {page.code}")  # the same code, elsewhere
    second = open_page(client, path)
    assert status(client, second)["state"] == "waiting"  # its poll reads (and drops) the reused code
    assert status(client, page)["state"] == "connected"
    assert [c.external_id for c in connections_in(db, workspace.id)] == [NEWS]

    row = attempt(db, second.attempt_id)
    row.expires_at = runtime.deps.now() - timedelta(seconds=1)
    db.commit()
    post(live_sandbox, REGULARS, f"/connect@{BOT} {second.code}")
    answer = status(client, second)
    assert answer["state"] == "expired" and answer["final"] is True
    page_html = client.post(second.check_url, data={"code": second.code}).get_data(as_text=True)
    assert "expired" in page_html and "Get a new code" in page_html
    third = open_page(client, path)
    assert status(client, third)["state"] == "waiting"  # its poll reads the expired code and drops it
    assert sandbox_state(live_sandbox)["pending"] == 0
    assert attempt(db, second.attempt_id).stage == AttemptStage.STARTED
    assert [c.external_id for c in connections_in(db, workspace.id)] == [NEWS]


def test_bot_without_admin_rights_gets_a_clear_message_and_nothing_is_stored(client, db, runtime, live_sandbox):
    _, workspace, _, path = telegram_link(db, runtime)
    page = open_page(client, path)
    # Privacy mode: a plain member bot does not even see an unaddressed command.
    assert "did not see it" in post(live_sandbox, HIKERS, f"/connect {page.code}")
    post(live_sandbox, HIKERS, f"/connect@{BOT} {page.code}")
    answer = status(client, page)
    assert answer["state"] == "action_needed"
    assert answer["message"].startswith(f"@{BOT} is in “Northwind Hikers Chat” but is not an administrator")
    assert connections_in(db, workspace.id) == []
    no_js = client.post(page.check_url, data={"code": page.code}).get_data(as_text=True)
    assert "is not an administrator" in no_js and "flash-error" in no_js

    set_role(live_sandbox, HIKERS, "administrator")  # the client fixes it; no need to post again
    assert status(client, page)["state"] == "connected"
    assert [c.external_id for c in connections_in(db, workspace.id)] == [HIKERS]


def test_channel_admin_without_post_messages_is_told_which_right_is_missing(client, db, runtime, live_sandbox):
    _, workspace, _, path = telegram_link(db, runtime)
    page = open_page(client, path)
    post(live_sandbox, TRAIL, f"/connect {page.code}")
    answer = status(client, page)
    assert answer["state"] == "action_needed" and "Turn on its “Post messages” right" in answer["message"]
    assert connections_in(db, workspace.id) == []
    set_role(live_sandbox, TRAIL, "kicked")
    answer = status(client, page)
    assert answer["state"] == "action_needed" and "is not in “Northwind Trail Notes”" in answer["message"]
    assert connections_in(db, workspace.id) == []


def test_status_messages_are_in_the_links_language_with_the_chat_title_as_data(client, db, runtime, live_sandbox):
    _, workspace, _, path = telegram_link(db, runtime, language="de")
    page = open_page(client, path)
    post(live_sandbox, HIKERS, f"/connect@{BOT} {page.code}")
    answer = status(client, page)
    assert answer["state"] == "action_needed"
    assert answer["message"].startswith(f"@{BOT} ist in „Northwind Hikers Chat“, aber kein Administrator"), answer
    no_js = client.post(page.check_url, data={"code": page.code}).get_data(as_text=True)
    assert "aber kein Administrator" in no_js and "jetzt prüfen" in no_js
    set_role(live_sandbox, HIKERS, "kicked")
    assert "ist nicht in „Northwind Hikers Chat“" in status(client, page)["message"]


def test_a_translated_message_escapes_its_data():
    from flask import Flask, render_template_string

    from portal import i18n
    from portal.app import ROOT
    from portal.services.telegram import rights_message
    from portal.text import Text

    app = Flask("t")
    i18n.init_app(app, str(ROOT / "portal" / "translations"))
    message = rights_message("not_member", "<script>alert(1)</script>", "", "channel")
    with app.test_request_context("/?lang=fr"):
        html = render_template_string("{{ m|translate }}", m=message)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert html.startswith("Le bot n&#39;est pas dans « &lt;script&gt;")
    assert str(message).startswith("The bot is not in “<script>")  # English outside a request: logs, tests
    assert i18n.translate(Text("%(x)s", {"x": "%(y)s"})) == "%(y)s"  # data is never a template


# Concurrency and offsets -----------------------------------------------------------------------------------

def test_two_checks_at_once_give_one_connection(client, app, db, runtime, live_sandbox):
    _, workspace, _, path = telegram_link(db, runtime)
    page = open_page(client, path)
    post(live_sandbox, NEWS, f"/connect {page.code}")
    results = _at_once([app, app, app, app], page.status_url)
    assert all(code == 200 for code, _ in results), results
    assert {state for _, state in results} <= {"connected", "waiting"}
    assert status(client, page)["state"] == "connected"
    assert len(connections_in(db, workspace.id)) == 1
    assert db.scalar(select(func.count()).select_from(AuditEvent)
                     .where(AuditEvent.action == "connection.created")) == 1


def test_two_web_processes_share_one_poller_through_redis(db, runtime, settings, live_sandbox, redis_client):
    """Two apps with Redis locks (like two web processes): getUpdates never runs twice at once."""
    _, workspace, _, path = telegram_link(db, runtime)
    apps = [create_app(replace(settings, redis_url=REDIS_URL)) for _ in range(2)]
    try:
        page = open_page(apps[0].test_client(), path)
        post(live_sandbox, NEWS, f"/connect {page.code}")
        conflicts = live_sandbox.counters().get("telegram_conflicts", 0)
        results = _at_once(apps * 3, page.status_url)
        assert all(code == 200 for code, _ in results), results
        assert live_sandbox.counters().get("telegram_conflicts", 0) == conflicts  # no 409: one poller at a time
        assert status(apps[1].test_client(), page)["state"] == "connected"
        assert len(connections_in(db, workspace.id)) == 1
    finally:
        for each in apps:
            each.extensions["easyconnect"].close()


def _at_once(apps, url):
    barrier = threading.Barrier(len(apps))
    results = []

    def run(each):
        test_client = each.test_client()
        barrier.wait(10)
        response = test_client.get(url)
        results.append((response.status_code, (response.get_json(silent=True) or {}).get("state")))

    threads = [threading.Thread(target=run, args=(each,)) for each in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_getupdates_offset_advances_so_an_old_connect_is_not_read_again(client, db, runtime, live_sandbox):
    _, workspace, _, path = telegram_link(db, runtime)
    first, second = open_page(client, path), open_page(client, path)
    post(live_sandbox, NEWS, f"/connect {first.code}")
    post(live_sandbox, REGULARS, f"/connect@{BOT} {second.code}")
    posted = sandbox_state(live_sandbox)["last_update_id"]

    # Checking the first page reads both codes; the second's is recorded, not lost, when confirmed.
    assert status(client, first)["state"] == "connected"
    state = sandbox_state(live_sandbox)
    assert state["pending"] == 0 and state["confirmed_offset"] == posted + 1 and state["last_offset"] == posted + 1
    assert attempt(db, second.attempt_id).stage == AttemptStage.AUTHORIZED
    assert attempt(db, second.attempt_id).candidates[0]["chat_id"] == REGULARS

    spec, app = connections.spec_and_app(db, runtime.deps, workspace.agency_id, "telegram", None)
    assert telegram.adapter(runtime.deps, spec).updates(spec, app, None) == []  # nothing is handed out again
    assert status(client, second)["state"] == "connected"
    assert sorted(c.external_id for c in connections_in(db, workspace.id)) == sorted([NEWS, REGULARS])


def test_a_worker_poll_finishes_a_posted_code_without_the_page(client, db, runtime, live_sandbox):
    _, workspace, _, path = telegram_link(db, runtime)
    page = open_page(client, path)
    post(live_sandbox, NEWS, f"/connect {page.code}")
    session = runtime.session_factory()
    try:
        assert telegram.poll_bots(session, runtime.deps) == 1
    finally:
        session.close()
    assert [c.external_id for c in connections_in(db, workspace.id)] == [NEWS]
    assert status(client, page)["state"] == "connected"


# Tenancy and secrets ---------------------------------------------------------------------------------------

def test_the_status_endpoint_reveals_nothing_to_a_different_link(client, db, runtime, live_sandbox):
    _, workspace, _, path = telegram_link(db, runtime)
    page = open_page(client, path)
    post(live_sandbox, NEWS, f"/connect {page.code}")
    *_, other_agency_path = telegram_link(db, runtime)
    from tests.helpers import make_link

    _, same_agency_path = make_link(db, runtime.deps, workspace, platforms=["telegram"], available=["telegram"])
    for other in (other_agency_path, same_agency_path):
        foreign = client.get(f"{other}/bot-code/telegram/{page.attempt_id}/status")
        body = foreign.get_data(as_text=True)
        assert foreign.status_code == 404 and "Blue Bottle" not in body and "waiting" not in body
        assert client.post(f"{other}/bot-code/telegram/{page.attempt_id}/check",
                           data={"code": page.code}).status_code == 404
    assert connections_in(db, workspace.id) == []  # the foreign checks finished nothing
    assert status(client, page)["state"] == "connected"


def test_a_link_without_telegram_has_no_code_page(client, db, runtime):
    *_, path = all_platforms_link(db, runtime.deps, ["sandbox"])
    assert client.get(f"{path}/bot-code/telegram").status_code == 404
    fresh(db)
    assert db.scalar(select(func.count()).select_from(ConnectAttempt)) == 0


def test_the_bot_token_never_appears_in_pages_or_logs(client, db, runtime, live_sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    *_, path = telegram_link(db, runtime)
    pages = []
    page = open_page(client, path)
    pages.append(page.html)
    live_sandbox.fail("token", "server_error")
    pages.append(client.get(page.status_url).get_data(as_text=True))
    post(live_sandbox, TRAIL, f"/connect {page.code}")
    pages.append(client.get(page.status_url).get_data(as_text=True))
    set_role(live_sandbox, TRAIL, "administrator")
    pages.append(client.post(page.check_url, data={"code": page.code}).get_data(as_text=True))
    pages.append(client.get(f"{path}/done/{page.attempt_id}").get_data(as_text=True))
    pages.append(requests.get(f"{live_sandbox.url}/sandbox/telegram", timeout=10).text)
    assert "Northwind Trail Notes" in pages[-2]
    logs = "\n".join(record.getMessage() for record in caplog.records)
    assert "/bot<redacted>/getUpdates" in logs  # the access and client logs were there, and cleaned
    for text in pages + [logs, caplog.text]:
        assert SANDBOX_SECRET not in text


def test_a_failure_never_carries_the_token_in_its_message_or_chain(runtime):
    spec = platforms.spec_for(runtime.settings, "telegram")
    closed = replace(spec, base_url="http://127.0.0.1:9/p/api.telegram.org")  # nothing listens on port 9
    with pytest.raises(PlatformError) as caught:
        telegram.adapter(runtime.deps, spec).bot(closed, AppCredentials(BOT, SANDBOX_SECRET))
    error = caught.value
    assert error.kind == PlatformError.TEMPORARY and SANDBOX_SECRET not in str(error)
    assert error.__cause__ is None and error.__suppress_context__


# Errors -----------------------------------------------------------------------------------------------------

def test_an_invalid_bot_token_is_the_apps_problem_and_said_plainly(client, db, runtime):
    member, *_, path = telegram_link(db, runtime)
    platforms.save_agency_app(db, runtime.deps, member.agency_id, "telegram", "SomeOtherBot", "123:not-the-token",
                              SYSTEM)
    db.commit()
    response = client.get(f"{path}/bot-code/telegram")
    assert response.status_code == 503 and "not set up correctly" in response.get_data(as_text=True)


def test_temporary_trouble_keeps_the_page_waiting(client, db, runtime, live_sandbox):
    _, workspace, _, path = telegram_link(db, runtime)
    page = open_page(client, path)
    live_sandbox.fail("token", "server_error")
    assert status(client, page)["state"] == "waiting"
    live_sandbox.fail("token", "rate_limited")
    answer = status(client, page)
    assert answer["state"] == "waiting" and answer["retry_after"] == 30

    # Another program long-polling the same bot: Telegram's 409 means "not yet", never an error page.
    conflicts = live_sandbox.counters().get("telegram_conflicts", 0)
    past_everything = str(sandbox_state(live_sandbox)["last_update_id"] + 1)  # so it waits for news
    other = threading.Thread(target=requests.post, kwargs={
        "url": f"{live_sandbox.url}/sandbox/p/api.telegram.org/bot{SANDBOX_SECRET}/getUpdates",
        "data": {"timeout": "2", "offset": past_everything}, "timeout": 10})
    other.start()
    _wait_for(lambda: _polling(live_sandbox))
    assert status(client, page)["state"] == "waiting"
    other.join(10)
    assert live_sandbox.counters()["telegram_conflicts"] == conflicts + 1

    post(live_sandbox, NEWS, f"/connect {page.code}")
    live_sandbox.fail("userinfo", "server_error")  # the rights check fails once: try again later
    assert status(client, page)["state"] == "waiting"
    assert attempt(db, page.attempt_id).callback_at is None  # released for the next check
    assert status(client, page)["state"] == "connected"
    assert len(connections_in(db, workspace.id)) == 1


def _polling(live_sandbox):
    with live_sandbox.server.app.extensions["sandbox"].sessions() as session:
        from portal.views.sandbox_platforms.telegram import TelegramState

        row = session.get(TelegramState, "polling")
        return row is not None and bool(row.value)


def _wait_for(condition, seconds=5.0):
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize(("status_code", "body", "kind"), [
    (401, {"ok": False, "error_code": 401, "description": "Unauthorized"}, PlatformError.APP_MISCONFIGURED),
    (403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was kicked from the channel chat"},
     PlatformError.PERMISSION_LOST),
    (403, {"ok": False, "error_code": 403, "description": "Forbidden: bot is not a member of the channel chat"},
     PlatformError.PERMISSION_LOST),
    (400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
     PlatformError.PERMISSION_LOST),
    (400, {"ok": False, "error_code": 400, "description": "Bad Request: need administrator rights in the channel chat"},
     PlatformError.PERMISSION_LOST),
    (400, {"ok": False, "error_code": 400, "description": "Bad Request: group chat was upgraded to a supergroup chat",
           "parameters": {"migrate_to_chat_id": -1001234}}, PlatformError.PERMISSION_LOST),
    (409, {"ok": False, "error_code": 409, "description": "Conflict: terminated by other getUpdates request"},
     PlatformError.TEMPORARY),
    (502, {"ok": False, "error_code": 502, "description": "Bad Gateway"}, PlatformError.TEMPORARY),
])
def test_bot_api_errors_map_to_the_shared_classes(status_code, body, kind):
    assert classify_telegram_error(status_code, body, None, "call").kind == kind


def test_rate_limits_honour_retry_after():
    error = classify_telegram_error(429, {"ok": False, "error_code": 429, "description": "Too Many Requests: retry "
                                          "after 17", "parameters": {"retry_after": 17}}, None, "call")
    assert error.kind == PlatformError.RATE_LIMITED and error.retry_after == 17


# Health --------------------------------------------------------------------------------------------------------

def test_health_check_sees_lost_rights_and_a_removed_bot(client, db, runtime, live_sandbox):
    _, workspace, _, path = telegram_link(db, runtime)
    page = open_page(client, path)
    post(live_sandbox, NEWS, f"/connect {page.code}")
    assert status(client, page)["state"] == "connected"
    [connection] = connections_in(db, workspace.id)
    assert telegram.check_connection(db, runtime.deps, connection).status == "administrator"
    for role, code in (("administrator_no_post", "no_post_right"), ("member", "not_admin"), ("kicked", "403")):
        set_role(live_sandbox, NEWS, role)
        with pytest.raises(PlatformError) as caught:
            telegram.check_connection(db, runtime.deps, connection)
        assert caught.value.kind == PlatformError.PERMISSION_LOST and caught.value.platform_code == code
    db.rollback()


def test_the_sandbox_page_lists_demo_chats_and_is_labelled(live_sandbox):
    page = requests.get(f"{live_sandbox.url}/sandbox/telegram", timeout=10)
    assert page.status_code == 200
    for title in ("Blue Bottle Bakery News", "Northwind Hikers Chat", "Casa Aurora Studio", "Sandbox Telegram"):
        assert title in page.text
    assert requests.post(f"{live_sandbox.url}/sandbox/telegram/post", data={"chat_id": "-1", "text": "hi"},
                         timeout=10).status_code == 400
