"""The link page's fast path: one query says whether the page may be served and what it depends on.

A client's link page is the same HTML for every visit until something it shows changes: the link
(expiry, overrides, language), its workspace, the agency's branding, the platforms the agency offers
(its own apps and custom platforms) or the workspace's connections. ``open_page`` reads all of that
in a single statement: the rows' own columns, plus count-and-latest-change markers of the tables
behind the platform catalog and the connection list. The tuple of those values is the page's cache
key, so any change is a new key: no invalidation to forget, across any number of processes.

Anything unusual (a bad signature, an unusable link, an agency with webhook endpoints that want a
``link.opened`` event per visit) returns None and the view takes the full path, which also renders
the errors. The read is one statement in autocommit (on SQLite a deferred read that never takes the write
lock); every visit is still counted, in memory, and the counts are written once a second (``ViewCounts``).
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Text, bindparam, cast, func, literal_column, select, update
from sqlalchemy.exc import SQLAlchemyError

from portal.db import DirectSelect, run_direct
from portal.models import Agency, Connection, ConnectLink, CustomPlatform, ProviderApp, WebhookEndpoint, Workspace
from portal.security.signing import LinkSigner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PageState:
    link_id: str
    language: str | None  # the link's, else the agency's default
    key: tuple[Any, ...]  # everything the rendered page depends on


def _count(model: Any, *where: Any) -> Any:
    return select(func.count()).select_from(model).where(*where).scalar_subquery()


def _marker(changed: Any, *where: Any) -> Any:
    """How many rows match and when the latest changed, as one text value from one scan: a row added, changed or
    removed changes it. Text because it is only compared, never read as a number or a time."""
    count_and_latest = cast(func.count(), Text).concat(literal_column("'/'", Text)).concat(
        func.coalesce(cast(func.max(changed), Text), literal_column("''", Text)))
    return select(count_and_latest).where(*where).scalar_subquery()


def _build_query() -> Any:
    link, ws, agency = ConnectLink, Workspace, Agency
    in_workspace = Connection.workspace_id == link.workspace_id
    own_apps, own_platforms = ProviderApp.agency_id == link.agency_id, CustomPlatform.agency_id == link.agency_id
    return (select(
        link.id, link.expires_at, link.revoked_at, link.max_uses, link.uses, link.language, ws.archived_at,
        agency.default_language,
        _count(WebhookEndpoint, WebhookEndpoint.agency_id == link.agency_id,
               WebhookEndpoint.enabled.is_(True)).label("hooks"),
        # What the page shows or depends on; JSON columns as text so the row is hashable.
        link.agency_id, link.workspace_id, cast(link.allowed_platforms, Text).label("platforms"),
        cast(link.branding, Text).label("link_branding"), ws.name.label("workspace_name"),
        cast(ws.branding, Text).label("workspace_branding"), agency.name, agency.brand_color, agency.logo_version,
        agency.support_url, agency.headline, agency.instructions, agency.success_text, agency.theme,
        agency.show_powered_by, agency.favicon_version, agency.custom_domain, agency.custom_domain_verified_at,
        # Markers: a row added, changed or removed behind the platform list or the connection list.
        _marker(Connection.updated_at, in_workspace).label("connections"),
        _marker(ProviderApp.updated_at, own_apps).label("apps"),
        _marker(CustomPlatform.created_at, own_platforms).label("customs"))
        .join(ws, ws.id == link.workspace_id).join(agency, agency.id == link.agency_id)
        .where(link.token_id == bindparam("signed_id")))


_QUERY = DirectSelect(_build_query())


def open_page(direct_engine: Engine, views: ViewCounts, signer: LinkSigner, token: str,
              now: datetime) -> PageState | None:
    """Count a visit of a usable link's page and return its state; None (nothing counted) when the full
    path must decide: bad signature, unusable link, or an agency whose webhooks want ``link.opened``."""
    token_id = signer.unsign(token)
    if token_id is None:
        return None
    row = run_direct(direct_engine, lambda connection: _QUERY.first(connection, {"signed_id": token_id}))
    if row is None:
        return None
    link_id, expires_at, revoked_at, max_uses, uses, language, archived_at, default_language, hooks = row[:9]
    if revoked_at is not None or expires_at <= now or archived_at is not None or hooks:
        return None
    if max_uses is not None and uses >= max_uses:
        return None
    views.add(link_id)  # a view, never a use: mail scanners open links too
    return PageState(link_id, language or default_language, tuple(row))


_ADD_VIEWS = (update(ConnectLink.__table__).where(ConnectLink.__table__.c.id == bindparam("link_id"))
              .values(opened_count=ConnectLink.__table__.c.opened_count + bindparam("views")))


class ViewCounts:
    """Link page views, counted in memory and written once a second in one transaction: a write per view
    would serialize every visit on the database (SQLite's write lock; an fsync per commit on PostgreSQL).
    What reads the counts calls ``flush`` first; another process's views show within a second. A process
    killed outright loses at most its last second of views (counts are analytics, never a use)."""

    def __init__(self, engine: Engine, interval: float = 1.0) -> None:
        self._engine = engine
        self._interval = interval  # 0: no background writer, only explicit flushes
        self._pending: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._closed = threading.Event()

    def add(self, link_id: str) -> None:
        with self._lock:
            self._pending[link_id] += 1
            if self._flusher is None and self._interval > 0:
                self._flusher = threading.Thread(target=self._run, name="link-view-counts", daemon=True)
                self._flusher.start()
                atexit.register(self.flush)

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, Counter()
        if not pending:
            return
        try:
            with self._engine.begin() as connection:
                connection.execute(_ADD_VIEWS, [{"link_id": link_id, "views": n} for link_id, n in pending.items()])
        except SQLAlchemyError:
            with self._lock:
                self._pending.update(pending)  # the next flush tries again
            log.warning("link page views could not be written; kept for the next try")

    def close(self) -> None:
        self._closed.set()
        self.flush()

    def _run(self) -> None:
        while not self._closed.wait(self._interval):
            self.flush()


class PageCache:
    """Rendered pages by key, least recently used out first (bounded: a key per link and language).
    Locked, for threaded servers."""

    def __init__(self, size: int = 2048) -> None:
        self._pages: OrderedDict[tuple[Any, ...], str] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> str | None:
        with self._lock:
            page = self._pages.get(key)
            if page is not None:
                self._pages.move_to_end(key)
            return page

    def put(self, key: tuple[Any, ...], page: str) -> None:
        with self._lock:
            self._pages[key] = page
            self._pages.move_to_end(key)
            while len(self._pages) > self._size:
                self._pages.popitem(last=False)
