"""Webhook fixtures: receivers on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.webhooks.support import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def other_receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()
