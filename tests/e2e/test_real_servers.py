"""The Persona service for real: `bentoml serve` processes (the session's, on SQLite and on Redis,
with the propensity model: tests/conftest.py) called over HTTP on a loopback port. The contract
in detail is asked of the service in process (tests/service); here, that a real server answers
the same way: every score with its reasons (checked against XGBoost's contributions on the same
matrix, in-process), propensity with its reasons, probes and the OpenAPI document.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from worlds import PROPENSITY_SERVICE, SERVICE, Propensity, World, check_reasons, stored_booster

from serving.online import OnlineFeatureReader
from serving.run import ServerHandle
from serving.users import UserFeatureReader

pytestmark = pytest.mark.integration

KINDS = ["sqlite", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(scope="module", params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def http(kind: str, request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    handle: ServerHandle = request.getfixturevalue(f"{kind}_server")
    with httpx.Client(base_url=handle.url, timeout=60, trust_env=False) as client:
        yield client


def _post(http: httpx.Client, route: str, body: dict) -> dict:
    reply = http.post(route, json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_every_score_carries_its_reasons(http: httpx.Client, kind: str, world: World,
                                         request: pytest.FixtureRequest) -> None:
    booster = stored_booster(world.bentoml_home, world.model_tag)
    reader = OnlineFeatureReader(world.store_for(kind, request), SERVICE, world.features)
    user, items = world.warm_users[2], [*world.items[:30], "no-such-item"]
    body = _post(http, "/rank", {"user_id": user, "item_ids": items})
    assert body["model_tag"] == world.model_tag and body["cold_user"] is False
    ranked = {i["item_id"]: i for i in body["items"]}
    scores = [i["probability"] for i in body["items"]]
    assert scores[:-1] == sorted(scores[:-1], reverse=True)
    assert body["items"][-1]["item_id"] == "no-such-item"  # an unknown item comes last
    pairs = [(user, world.items[0]), ("no-such-user", world.items[1])]
    predictions = _post(http, "/predict", {"pairs": [{"user_id": u, "item_id": i}
                                                     for u, i in pairs]})["predictions"]
    check_reasons([ranked[i]["reasons"] for i in items], [ranked[i]["probability"] for i in items],
                  booster, world.features, reader.for_user(user, items).matrix)
    check_reasons([p["reasons"] for p in predictions], [p["probability"] for p in predictions],
                  booster, world.features,
                  reader.rows([u for u, _ in pairs], [i for _, i in pairs]).matrix)


def test_propensity_and_profile_carry_the_propensity_model(
        http: httpx.Client, kind: str, world: World, propensity: Propensity,
        request: pytest.FixtureRequest) -> None:
    asked = [*world.warm_users[:3], "no-such-user"]
    body = _post(http, "/propensity", {"user_ids": asked})
    assert body["model_tag"] == propensity.tag
    users = body["users"]
    assert [u["cold_user"] for u in users] == [False, False, False, True]
    matrix = UserFeatureReader(world.store_for(kind, request), PROPENSITY_SERVICE,
                               propensity.features).rows(asked).matrix
    check_reasons([u["reasons"] for u in users], [u["propensity"] for u in users],
                  propensity.booster, propensity.features, matrix)
    profile = _post(http, "/profile", {"user_id": asked[0]})
    assert profile["cold_user"] is False and profile["propensity_model_tag"] == propensity.tag
    assert profile["propensity"] == pytest.approx(users[0]["propensity"], abs=1e-9)


def test_probes_and_openapi_document(http: httpx.Client, world: World,
                                     propensity: Propensity) -> None:
    for probe in ("/livez", "/readyz", "/healthz", "/metrics"):
        assert http.get(probe).status_code == 200, probe
    metrics = http.get("/metrics").text  # what is served, and how fresh the store is
    for task, tag in (("conversion", world.model_tag), ("propensity", propensity.tag)):
        assert re.search(rf'persona_model_info{{[^}}]*task="{task}"[^}}]*tag="{tag}"', metrics) \
            or re.search(rf'persona_model_info{{[^}}]*tag="{tag}"[^}}]*task="{task}"', metrics), \
            metrics[-2000:]
    assert re.search(r'persona_online_loaded_until_seconds\{view="user_activity"\} \d', metrics)
    spec = http.get("/docs.json").json()
    assert {"/rank", "/predict", "/propensity", "/profile"} <= set(spec["paths"])
    rank_input = spec["paths"]["/rank"]["post"]["requestBody"]["content"]["application/json"]
    assert rank_input["schema"]["properties"]["item_ids"]["maxItems"] == 500


def test_the_log_says_what_is_served(kind: str, world: World, propensity: Propensity,
                                     request: pytest.FixtureRequest) -> None:
    """At start-up: each model with its tag, the home and offline version it was trained on,
    and the online store (its address, never a password)."""
    handle: ServerHandle = request.getfixturevalue(f"{kind}_server")
    log = handle.logs()
    for task, tag in (("conversion", world.model_tag), ("propensity", propensity.tag)):
        assert re.search(rf"serving {task} model {re.escape(tag)} \(feature service \w+\), "
                         rf"trained on home {re.escape(str(world.settings.home))}", log), task
    assert re.search(r"online store: (sqlite \S+online_store\.db|redis [\w.]+:\d+)", log)
