"""What every answer of the Persona service must be, over HTTP or in process: never a 5xx; a 200
whose body its response model accepts; any other answer a 4xx that says why. Shared by the
explicit hostile requests (tests/service) and the fuzzing (tests/e2e)."""

from __future__ import annotations

import json

from pydantic import BaseModel

from serving.schemas import (
    PredictResponse,
    ProfileResponse,
    PropensityResponse,
    RankResponse,
    RecommendResponse,
)

RESPONSES: dict[str, type[BaseModel]] = {"/rank": RankResponse, "/predict": PredictResponse,
                                         "/propensity": PropensityResponse,
                                         "/profile": ProfileResponse,
                                         "/recommend": RecommendResponse}
ROUTES = list(RESPONSES)  # the prediction endpoints: fuzzed, and the explicit cases' targets
FUZZED = [*ROUTES, "/echo"]  # every POST route; /echo (a no-op /rank) answers a plain object


def message(body: bytes) -> str:
    """What a refusal says: its JSON `error` (BentoML wraps a 415's in a list), else its text."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body.decode(errors="replace").strip()
    if isinstance(parsed, list) and len(parsed) == 1:
        parsed = parsed[0]
    return str(parsed.get("error") or "") if isinstance(parsed, dict) else ""


def check_answer(route: str, status: int, body: bytes) -> None:
    """The contract: never a 5xx; a 200 carries a body its response model accepts; any other
    answer is a 4xx that says why."""
    assert status < 500, f"{route} answered {status}: {body[:500]!r}"
    if status == 200 and route in RESPONSES:
        RESPONSES[route].model_validate_json(body)
    elif status == 200:
        assert isinstance(json.loads(body), dict), body[:500]
    else:
        assert 400 <= status < 500, f"{route} answered {status}"
        assert message(body), f"{route} refused with {status} and no message: {body[:500]!r}"
