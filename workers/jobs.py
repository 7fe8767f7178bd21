"""Jobs: tiny, idempotent, given primitive ids. Each opens its own session, calls one service.

``runtime`` is passed when a job runs inline in the web process; RQ workers use the
process runtime.
"""

from __future__ import annotations

import logging

from portal.errors import PlatformError, RefreshBusy
from portal.runtime import Runtime
from portal.services import tokens
from workers import runtime as worker_runtime

log = logging.getLogger(__name__)


def _runtime(runtime: Runtime | None) -> Runtime:
    return runtime if runtime is not None else worker_runtime.current()


def refresh_connection(connection_id: str, runtime: Runtime | None = None) -> str:
    """Refresh one connection if it is due (the sweeps' job)."""
    return _refresh(connection_id, _runtime(runtime), force=False)


def refresh_connection_now(connection_id: str, runtime: Runtime | None = None) -> str:
    """Refresh one connection whatever its expiry ("Refresh now")."""
    return _refresh(connection_id, _runtime(runtime), force=True)


def _refresh(connection_id: str, runtime: Runtime, force: bool) -> str:
    db = runtime.session_factory()
    try:
        result = tokens.refresh_connection(db, runtime.deps, connection_id, force=force)
    except RefreshBusy:
        return "busy"  # the lock holder is doing the work
    except PlatformError as exc:
        log.info("refresh of %s failed: %s", connection_id, exc.kind)
        if exc.permanent:
            return f"failed:{exc.kind}"
        raise  # temporary: RQ's Retry tries again later
    finally:
        db.close()
    return str(result)
