"""Fixtures for the REST API tests: an agency with a workspace, a read_write and a read key."""

from __future__ import annotations

import pytest

from tests.api.support import Tenant, make_tenant


@pytest.fixture
def tenant(db, runtime) -> Tenant:
    return make_tenant(db, runtime)


@pytest.fixture
def other(db, runtime) -> Tenant:
    return make_tenant(db, runtime, "Other Agency")
