"""Fuzzing the real service's prediction endpoints from its own OpenAPI document (/docs.json):
no request may get a 5xx, a refused one gets a 4xx with a message, an accepted one a valid answer.

Schemathesis draws the requests: first its coverage cases (each boundary and violation the schema
names: missing and extra fields, wrong types, lengths and counts one past each limit, malformed
and unsupported content types, other methods), then Hypothesis examples, schema-valid and
schema-violating, derandomized so every run sends the same requests. Explicit cases add what a
schema cannot spell: malformed JSON, NaN and infinities, huge bodies, Unicode and control
characters in ids, duplicates, content types: those are asked of the service in process
(tests/service/test_hostile_requests.py), over the same contract (tests/api_answers.py). One
server, the session's on Redis, with a propensity model: a 503 is a failure here too.

Schemathesis' pytest integration (`schemathesis.pytest.from_fixture`) fails on pytest 9.2
("'Function' object has no attribute '_nodeid'"), so operations are driven through their
`as_strategy` and the schema's `iter_coverage_cases` instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import requests
import schemathesis
from api_answers import FUZZED, check_answer
from hypothesis import HealthCheck, given, settings
from pydantic import ValidationError
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from serving.run import ServerHandle

pytestmark = [pytest.mark.integration, pytest.mark.redis]

EXAMPLES = 40  # Hypothesis examples per route and generation mode
CHECKS = [not_a_server_error, positive_data_acceptance, negative_data_rejection]


@pytest.fixture(scope="module")
def server(redis_server: ServerHandle) -> ServerHandle:
    """The session's server on Redis, with the propensity model (tests/conftest.py)."""
    return redis_server


@pytest.fixture(scope="module")
def document(server: ServerHandle) -> dict:
    """The served OpenAPI document, with each request body marked required: BentoML leaves
    `required` out, which would make an empty request schema-valid (it is refused, with 400)."""
    served = httpx.get(f"{server.url}/docs.json", trust_env=False, timeout=30).json()
    for operations in served["paths"].values():
        if "post" in operations:
            operations["post"]["requestBody"]["required"] = True
    return served


@pytest.fixture(scope="module")
def api(server: ServerHandle, document: dict) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict({
        "base-url": server.url,
        "checks": {"positive_data_acceptance": {"expected-statuses": ["200"]}},
    })
    return schemathesis.openapi.from_dict(document, config=config)


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        http.trust_env = False  # no proxy from the environment between the test and loopback
        yield http


def bentoml_multipart_500(case: schemathesis.Case) -> bool:
    """Schemathesis' probe that meets BentoML's known 500 (test_form_bodies_bentoml_fails_on)."""
    content_type = (case.headers or {}).get("Content-Type", "")
    return content_type.startswith("multipart/form-data") and "boundary=" not in content_type


def test_every_post_route_is_fuzzed(document: dict) -> None:
    assert sorted(p for p, operations in document["paths"].items() if "post" in operations) == (
        sorted(FUZZED))


@pytest.mark.parametrize("route", FUZZED)
def test_schema_coverage_cases(api: schemathesis.BaseSchema, session: requests.Session,
                               route: str) -> None:
    operation = api[route]["POST"]
    generation = api.config.generation_for(operation=operation, phase="coverage")
    failures, sent = [], 0
    for case in api.iter_coverage_cases(operation, generation_modes=list(GenerationMode),
                                        generation_config=generation):
        if bentoml_multipart_500(case):
            continue
        sent += 1
        reply = case.call(session=session, timeout=30)
        try:
            check_answer(route, reply.status_code, reply.content)
            case.validate_response(reply, checks=CHECKS)
        except (AssertionError, ValidationError, FailureGroup) as exc:
            failures.append(f"{case.as_curl_command()}\n  -> {reply.status_code}: {exc}")
    assert sent > 20, f"only {sent} coverage cases for {route}"
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("mode", list(GenerationMode), ids=str)
@pytest.mark.parametrize("route", FUZZED)
def test_generated_requests(api: schemathesis.BaseSchema, session: requests.Session,
                            route: str, mode: GenerationMode) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(case=api[route]["POST"].as_strategy(mode))
    def answered(case: schemathesis.Case) -> None:
        reply = case.call(session=session, timeout=30)
        check_answer(route, reply.status_code, reply.content)
        case.validate_response(reply, checks=CHECKS)

    answered()
