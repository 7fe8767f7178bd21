"""Schemathesis against the live app's own OpenAPI document (/api/v1/openapi.json), on SQLite and
PostgreSQL, with a valid read_write API key: no server error, no response that breaks the document
(status codes, content types, bodies and headers as documented).

Each operation is fuzzed three ways: valid requests with generated ids, valid requests aimed at the
tenant's real objects (so 200 bodies are checked too), and invalid requests (wrong types, unknown
fields, bad values), which must be answered with documented problem documents.
"""

from __future__ import annotations

import time

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy import select

from portal.models import ConnectLink
from tests.api.support import auth, connected
from tests.helpers import fresh

EXAMPLES = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 20}
REAL_OBJECT_EXAMPLES = 10
BUDGET_SECONDS = 60


def _fuzz(operation, mode, strategy, examples: int, key: str, failures: list[str]) -> None:
    @given(case=strategy)
    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def run(case) -> None:
        # positive_data_acceptance is left out: the API rightly refuses some schema-valid input the
        # document cannot describe (opaque cursors, names with control or bidi characters, platforms
        # the agency does not offer), answering with a documented 400 problem, which the other checks
        # verify. Invalid input must still be refused (negative_data_rejection).
        case.call_and_validate(headers=auth(key), excluded_checks=[positive_data_acceptance])

    try:
        run()
    except Unsatisfiable:
        if mode is not GenerationMode.NEGATIVE:  # an operation with no input has nothing to make invalid
            failures.append(f"{operation.method.upper()} {operation.path}: no valid request could be generated")
    except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failure, report them all
        failures.append(f"{operation.method.upper()} {operation.path}: {exc!r}"[:3000])


def test_the_api_keeps_its_documented_promises(app, client, db, runtime):
    tenant, connection = connected(client, db, runtime)
    link = fresh(db).scalar(select(ConnectLink.id).where(ConnectLink.agency_id == tenant.agency_id))
    real = {"workspace_id": tenant.workspace.id, "link_id": link, "connection_id": connection.id}
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    started, failures, operations = time.monotonic(), [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode, examples in EXAMPLES.items():
            _fuzz(operation, mode, operation.as_strategy(mode), examples, tenant.key, failures)
        names = {p.name for p in operation.path_parameters}
        if names and operation.method.upper() != "DELETE":  # deleting the real objects would end the run early
            strategy = operation.as_strategy(path_parameters={name: real[name] for name in names})
            _fuzz(operation, GenerationMode.POSITIVE, strategy, REAL_OBJECT_EXAMPLES, tenant.key, failures)
    elapsed = time.monotonic() - started
    assert operations >= 15
    assert not failures, "\n\n".join(failures)
    assert elapsed < BUDGET_SECONDS, f"the run took {elapsed:.0f} s"


def test_integral_numbers_are_integers_as_json_schema_says(client, db, runtime):
    """Found by the run above: 367.0 is a valid JSON Schema integer and was refused."""
    from tests.api.support import make_tenant

    tenant = make_tenant(db, runtime)
    body = {"workspace_id": tenant.workspace.id, "platforms": ["sandbox"], "expires_in_hours": 24.0}
    response = client.post("/api/v1/links", json={**body, "max_uses": 3.0}, headers=auth(tenant.key))
    assert response.status_code == 201 and response.get_json()["max_uses"] == 3
    for bad in (3.5, True, "3", 1e300):
        response = client.post("/api/v1/links", json={**body, "max_uses": bad}, headers=auth(tenant.key))
        assert response.status_code == 400, bad
