"""/rank and /predict of the Persona service in process (its ASGI app), on SQLite and on Redis:
the world of tests/worlds.py (populated feature store, a real XGBoost model in the world's
BentoML model store); every score's reasons checked against XGBoost's contributions on the same
matrix; validation answers; probes and the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from worlds import SERVICE, World, check_reasons, stored_booster

from serving.online import OnlineFeatureReader

pytestmark = pytest.mark.integration

KINDS = ["sqlite", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(scope="module", params=KINDS)
def client(request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    yield request.getfixturevalue(f"{request.param}_service")


def _rank(client: httpx.Client, user_id: str, item_ids: list[str]) -> dict:
    reply = client.post("/rank", json={"user_id": user_id, "item_ids": item_ids})
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_rank_sorts_known_items_by_score(client: httpx.Client, world: World) -> None:
    items = world.items[:40]
    body = _rank(client, world.warm_users[0], items)
    assert body["model_tag"] == world.model_tag
    assert body["user_id"] == world.warm_users[0]
    assert body["cold_user"] is False
    assert sorted(i["item_id"] for i in body["items"]) == sorted(items)
    scores = [i["probability"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert len(set(scores)) > 1, "a model that ignores its features"
    assert not any(i["cold_item"] for i in body["items"])


def test_rank_lists_duplicate_items_once(client: httpx.Client, world: World) -> None:
    items = world.items[:3]
    body = _rank(client, world.warm_users[0], items + items[::-1])
    assert sorted(i["item_id"] for i in body["items"]) == sorted(items)


def test_unknown_user_is_cold_not_an_error(client: httpx.Client, world: World) -> None:
    body = _rank(client, "no-such-user", world.items[:5])
    assert body["cold_user"] is True
    assert all(0.0 <= i["probability"] <= 1.0 for i in body["items"])


def test_unknown_item_is_cold_not_an_error(client: httpx.Client, world: World) -> None:
    body = _rank(client, world.warm_users[0], [world.items[0], "no-such-item"])
    cold = {i["item_id"]: i["cold_item"] for i in body["items"]}
    assert cold == {world.items[0]: False, "no-such-item": True}
    assert body["cold_user"] is False


def test_predict_answers_each_pair_in_order_and_agrees_with_rank(
        client: httpx.Client, world: World) -> None:
    user = world.warm_users[1]
    pairs = [(user, world.items[2]), ("no-such-user", world.items[2]), (user, "no-such-item"),
             (user, world.items[2])]
    reply = client.post("/predict",
                        json={"pairs": [{"user_id": u, "item_id": i} for u, i in pairs]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model_tag"] == world.model_tag
    got = [(p["user_id"], p["item_id"], p["cold_user"], p["cold_item"])
           for p in body["predictions"]]
    assert got == [(user, world.items[2], False, False),
                   ("no-such-user", world.items[2], True, False),
                   (user, "no-such-item", False, True),
                   (user, world.items[2], False, False)]
    probabilities = [p["probability"] for p in body["predictions"]]
    ranked = _rank(client, user, [world.items[2]])["items"][0]["probability"]
    assert probabilities[0] == probabilities[3] == pytest.approx(ranked, abs=1e-7)


@pytest.mark.parametrize("kind", KINDS)
def test_every_score_carries_its_reasons(kind: str, world: World,
                                         request: pytest.FixtureRequest) -> None:
    http: httpx.Client = request.getfixturevalue(f"{kind}_service")
    booster = stored_booster(world.bentoml_home, world.model_tag)
    reader = OnlineFeatureReader(world.store_for(kind, request), SERVICE, world.features)
    user, items = world.warm_users[2], [*world.items[:30], "no-such-item"]
    ranked = {i["item_id"]: i for i in _rank(http, user, items)["items"]}
    pairs = [(user, world.items[0]), ("no-such-user", world.items[1])]
    reply = http.post("/predict",
                      json={"pairs": [{"user_id": u, "item_id": i} for u, i in pairs]})
    assert reply.status_code == 200, reply.text
    check_reasons([ranked[i]["reasons"] for i in items], [ranked[i]["probability"] for i in items],
                  booster, world.features, reader.for_user(user, items).matrix)
    predictions = reply.json()["predictions"]
    check_reasons([p["reasons"] for p in predictions], [p["probability"] for p in predictions],
                  booster, world.features,
                  reader.rows([u for u, _ in pairs], [i for _, i in pairs]).matrix)


@pytest.mark.parametrize("body, where", [
    ({"user_id": "u", "item_ids": [f"i{n}" for n in range(501)]}, "at most 500"),
    ({"item_ids": ["i1"]}, "user_id"),
    ({"user_id": "u"}, "item_ids"),
    ({"user_id": "u", "item_ids": "i1"}, "item_ids"),
    ({"user_id": 7, "item_ids": ["i1"]}, "user_id"),
    ({"user_id": "", "item_ids": ["i1"]}, "user_id"),
    ({"user_id": "u", "item_ids": []}, "item_ids"),
    ({"user_id": "u", "item_ids": ["i1"], "itemIds": ["i2"]}, "itemIds"),
])
def test_invalid_rank_requests_are_4xx_with_a_message(
        client: httpx.Client, body: dict, where: str) -> None:
    reply = client.post("/rank", json=body)
    assert 400 <= reply.status_code < 500, reply.text
    assert where in reply.text


def test_invalid_predict_requests_and_malformed_json_are_4xx(client: httpx.Client) -> None:
    too_many = {"pairs": [{"user_id": "u", "item_id": f"i{n}"} for n in range(1001)]}
    for body in (too_many, {"pairs": []}, {"pairs": [{"user_id": "u"}]}):
        reply = client.post("/predict", json=body)
        assert 400 <= reply.status_code < 500, reply.text
        assert "pairs" in reply.text
    reply = client.post("/rank", content=b'{"user_id": ',
                        headers={"content-type": "application/json"})
    assert 400 <= reply.status_code < 500, reply.text


def test_probes_and_openapi_document(client: httpx.Client) -> None:
    for probe in ("/livez", "/readyz", "/healthz"):
        assert client.get(probe).status_code == 200, probe
    spec = client.get("/docs.json").json()
    assert {"/rank", "/predict"} <= set(spec["paths"])
    rank_body = spec["paths"]["/rank"]["post"]["requestBody"]
    rank_input = rank_body["content"]["application/json"]["schema"]
    assert "item_ids" in rank_input["properties"]
    assert rank_input["properties"]["item_ids"]["maxItems"] == 500
    assert rank_input["properties"]["item_ids"]["description"]
