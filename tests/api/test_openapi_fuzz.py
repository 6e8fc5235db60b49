"""Schemathesis against our own OpenAPI document: no operation answers a 5xx.

Every operation of ``/openapi.json`` is called with examples generated from its schema
(Schemathesis 4, Hypothesis underneath) through the ASGI app of the ``client`` fixture, so
jobs run inline and the database is the per-test rolled-back transaction. The path parameters
that name a project are steered to a small real project (a tiny vector pool, two labels) half
of the time, so the handlers get past the 404 and into their validation. The fast run is
bounded (few examples per operation, derandomized so CI is deterministic); ``-m slow`` runs
more examples (``QUARRY_FUZZ_EXAMPLES``, default 40).

Checks: ``not_a_server_error`` (no 5xx) on every response, and that every 4xx is
``application/problem+json`` with a ``code``.
"""

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.factories import API, make_pool, make_project

FAST_EXAMPLES = 4
SLOW_EXAMPLES = int(os.environ.get("QUARRY_FUZZ_EXAMPLES", "40"))  # per operation and mode


@pytest.fixture
def fuzz_project(client) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A tiny vector project with a 12-item pool, 3 of them labeled."""
    project = make_project(client, name="fuzz", labels=["a", "b"], task="multiclass")
    make_pool(client, project, n=12, labeled=3)
    return project


def _operations(client) -> list[Any]:  # type: ignore[no-untyped-def]
    """Every operation of our OpenAPI document, loaded from the ``client`` fixture's ASGI app."""
    schema = schemathesis.openapi.from_asgi(f"{API}/openapi.json", client.app)
    return [result.ok() for result in schema.get_all_operations()]


def _auth_headers(client) -> dict[str, str]:  # type: ignore[no-untyped-def]
    auth = client.headers.get("authorization")
    return {"Authorization": auth} if auth else {}


def _run_operation(operation, mode, client, pid: int, examples: int) -> list[str]:  # type: ignore[no-untyped-def]
    """Call ``operation`` with ``examples`` generated cases; returns one line per failure."""
    failures: list[str] = []
    headers = _auth_headers(client)

    @given(case=operation.as_strategy(generation_mode=mode), real=st.booleans())
    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    def run(case, real: bool) -> None:  # type: ignore[no-untyped-def]
        if real and case.path_parameters and "project_id" in case.path_parameters:
            case.path_parameters["project_id"] = pid  # past the 404, into the validation
        try:
            response = case.call(headers=headers)
        except Exception as exc:  # the ASGI transport re-raises what the app did not handle
            failures.append(f"{case.method} {case.formatted_path} raised {exc!r}"[:400])
            return
        where = f"{case.method} {case.formatted_path} -> {response.status_code}"
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except Exception as exc:  # schemathesis raises a group of check failures
            failures.append(f"{where}: {response.text[:300]} [{type(exc).__name__}]")
            return
        if 400 <= response.status_code < 500 and response.status_code != 405:
            ctype = (response.headers.get("content-type") or [""])[0]  # header -> list of values
            if not ctype.startswith("application/problem+json") or "code" not in response.json():
                failures.append(f"{where}: not problem+json ({ctype})")

    try:
        run()
    except Unsatisfiable:  # negative mode: an operation without parameters has nothing to break
        assert mode is GenerationMode.NEGATIVE, operation.label
    return failures


def _fuzz(client, project: dict[str, Any], examples: int) -> None:  # type: ignore[no-untyped-def]
    failures: list[str] = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        for operation in _operations(client):
            failures += _run_operation(operation, mode, client, project["id"], examples)
    assert not failures, "\n".join(sorted(set(failures)))


def test_no_server_error(client, fuzz_project) -> None:  # type: ignore[no-untyped-def]
    _fuzz(client, fuzz_project, FAST_EXAMPLES)


@pytest.mark.slow
def test_no_server_error_many_examples(client, fuzz_project) -> None:  # type: ignore[no-untyped-def]
    _fuzz(client, fuzz_project, SLOW_EXAMPLES)
