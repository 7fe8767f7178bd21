"""Redis stopped and started again: links and connects keep working, refreshes refuse to run unlocked
while it is down and resume when it is back. Uses a private redis-server, never the shared one."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import replace

import pytest
import redis as redis_lib

from portal.app import create_app
from portal.errors import ServiceUnavailable
from portal.services import tokens
from portal.services.tokens import RefreshResult
from tests.helpers import connect, connections_in, setup_link


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    def __init__(self, tmp_path) -> None:
        self.port, self.dir, self.process = _free_port(), tmp_path, None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                redis_lib.Redis.from_url(self.url).ping()
                return
            except redis_lib.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("private redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def test_redis_outage_and_recovery(settings, db, private_redis):
    app = create_app(replace(settings, redis_url=private_redis.url))
    rt = app.extensions["easyconnect"]
    try:
        client = app.test_client()
        _, workspace, _, path = setup_link(db, rt.deps)
        assert connect(client, path, account="sbx-1001").status_code == 303

        private_redis.stop()
        assert client.get(path).status_code == 200  # the link page needs no Redis
        assert connect(client, path, account="sbx-1002").status_code == 303  # nor does connecting
        rows = connections_in(db, workspace.id)
        assert len(rows) == 2
        session = rt.session_factory()
        with pytest.raises(ServiceUnavailable):  # never refresh without the lock
            tokens.refresh_connection(session, rt.deps, rows[0].id, force=True)
        session.close()

        private_redis.start()
        session = rt.session_factory()
        assert tokens.refresh_connection(session, rt.deps, rows[0].id, force=True) == RefreshResult.REFRESHED
        session.close()
    finally:
        rt.close()
