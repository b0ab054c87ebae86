"""/propensity and /profile of the Persona service in process (its ASGI app): the world of
tests/worlds.py (populated feature store, conversion model) plus the small propensity model
trained on point-in-time propensity_v1 features, on SQLite and on Redis; a service started with a
model store without a propensity model answers /propensity with 503 and still profiles.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime

import httpx
import pandas as pd
import pytest
from worlds import HORIZON, PROPENSITY_SERVICE, Propensity, World, check_reasons, in_process_service

from persona.featurestore.config import feature_store
from serving.run import check_propensity_model
from serving.service import NO_PROPENSITY_MODEL
from serving.users import UserFeatureReader

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Served:
    kind: str
    http: httpx.Client
    store: object  # the Feast store the service reads


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def served(request: pytest.FixtureRequest, world: World) -> Served:
    http = request.getfixturevalue(f"{request.param}_service")
    return Served(request.param, http, world.store_for(request.param, request))


@pytest.fixture(scope="module")
def service_without_propensity(world: World, propensity: Propensity) -> Iterator[httpx.Client]:
    """The service on SQLite, its models from a store holding the conversion model alone."""
    with in_process_service(world.settings, propensity.conversion_only_home) as client:
        yield client


def _post(http: httpx.Client, route: str, body: dict) -> dict:
    reply = http.post(route, json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_propensity_for_warm_cold_and_repeated_users(served: Served, world: World,
                                                     propensity: Propensity) -> None:
    warm = world.warm_users[:3]
    asked = [*warm, "no-such-user", warm[0]]
    body = _post(served.http, "/propensity", {"user_ids": asked})
    assert body["model_tag"] == propensity.tag
    assert body["horizon_days"] == HORIZON.days
    users = body["users"]
    assert [u["user_id"] for u in users] == asked
    assert [u["cold_user"] for u in users] == [False, False, False, True, False]
    for user in users:
        assert 0.0 <= user["propensity"] <= 1.0
        if user["cold_user"]:
            assert user["churn_risk"] is None
        else:
            assert user["churn_risk"] == pytest.approx(1.0 - user["propensity"], abs=1e-9)
        assert len(user["reasons"]) == 3
    assert users[0] == users[-1]

    matrix = UserFeatureReader(served.store, PROPENSITY_SERVICE, propensity.features).rows(
        asked).matrix
    check_reasons([u["reasons"] for u in users], [u["propensity"] for u in users],
                  propensity.booster, propensity.features, matrix)


def test_profile_of_a_known_user(served: Served, world: World, propensity: Propensity) -> None:
    activity = pd.read_parquet(world.settings.offline_current / "user_activity")
    latest = activity[activity["event_timestamp"] == world.snapshot_time].set_index("user_id")
    user = latest.sort_values("purchases_90d", ascending=False).index[0]  # a buyer
    before = datetime.now().astimezone()
    body = _post(served.http, "/profile", {"user_id": user})

    assert body["user_id"] == user and body["cold_user"] is False
    features = body["features"]
    profile = world.shop.users.set_index("user_id").loc[user]
    for name in ("age_band", "gender", "region", "membership_level"):
        assert features[name] == profile[name]
    for name in ("purchases_90d", "spend_90d", "views_30d", "days_since_last_event"):
        assert features[name] == pytest.approx(latest.at[user, name])
    assert features["favourite_category"] == latest.at[user, "favourite_category"]
    assert set(body["freshness"]) == {"user_profile", "user_activity"}
    stamped = pd.Timestamp(body["freshness"]["user_activity"]["event_timestamp"])
    assert stamped == world.snapshot_time
    assert pd.Timestamp(body["freshness"]["user_profile"]["event_timestamp"]) == pd.Timestamp(
        profile["signup_timestamp"])
    store = feature_store(world.settings)
    for name, view in body["freshness"].items():
        age = view["age_seconds"]
        assert age >= 0
        assert age == pytest.approx((before - pd.Timestamp(view["event_timestamp"]))
                                    .total_seconds(), abs=60)
        ttl = store.get_feature_view(name).ttl
        assert view["stale"] == (age > ttl.total_seconds() if ttl else None), name
    assert body["stale_views"] == [v for v, f in body["freshness"].items() if f["stale"]]

    assert body["propensity_model_tag"] == propensity.tag
    assert 0.0 <= body["propensity"] <= 1.0
    assert body["churn_risk"] == pytest.approx(1.0 - body["propensity"], abs=1e-9)
    scored = _post(served.http, "/propensity", {"user_ids": [user]})["users"][0]
    assert body["propensity"] == pytest.approx(scored["propensity"], abs=1e-9)
    assert scored["stale_user"] is body["freshness"]["user_activity"]["stale"]
    ranked = _post(served.http, "/rank", {"user_id": user, "item_ids": world.items[:3]})
    assert ranked["stale_user"] is scored["stale_user"]
    assert f"fan_of_{features['favourite_category']}" in body["tags"]
    assert isinstance(body["segment"], str) and body["segment"]


def test_profile_of_a_user_without_activity(served: Served, world: World) -> None:
    """Signed up, never active: profile attributes and their freshness, cold, no churn risk."""
    user = sorted(set(world.shop.users["user_id"]) - set(world.shop.events["user_id"]))[0]
    body = _post(served.http, "/profile", {"user_id": user})
    assert body["cold_user"] is True and body["churn_risk"] is None
    assert list(body["features"]) == ["age_band", "gender", "region", "membership_level"]
    assert body["freshness"]["user_profile"]["age_seconds"] >= 0
    assert body["freshness"]["user_activity"] == {"event_timestamp": None, "age_seconds": None,
                                                  "stale": None}


def test_profile_of_an_unknown_user_is_cold_not_an_error(served: Served) -> None:
    body = _post(served.http, "/profile", {"user_id": "no-such-user"})
    assert body["cold_user"] is True
    assert body["features"] == {}
    nothing = {"event_timestamp": None, "age_seconds": None, "stale": None}
    assert body["freshness"] == {"user_profile": nothing, "user_activity": nothing}
    assert body["stale_views"] == []
    assert body["tags"] == [] and body["segment"] == "others"
    assert 0.0 <= body["propensity"] <= 1.0 and body["churn_risk"] is None


@pytest.mark.parametrize("route, body, where", [
    ("/propensity", {}, "user_ids"),
    ("/propensity", {"user_ids": []}, "user_ids"),
    ("/propensity", {"user_ids": [f"u{n}" for n in range(1001)]}, "at most 1000"),
    ("/propensity", {"user_ids": [""]}, "user_ids"),
    ("/propensity", {"user_ids": ["u" * 257]}, "user_ids"),
    ("/propensity", {"user_ids": "u1"}, "user_ids"),
    ("/propensity", {"user_ids": ["u1"], "userIds": ["u2"]}, "userIds"),
    ("/profile", {}, "user_id"),
    ("/profile", {"user_id": ""}, "user_id"),
    ("/profile", {"user_id": 7}, "user_id"),
    ("/profile", {"user_id": ["u1"]}, "user_id"),
    ("/profile", {"user_id": "u1", "extra": 1}, "extra"),
])
def test_invalid_requests_are_4xx_with_a_message(served: Served, route: str, body: dict,
                                                 where: str) -> None:
    reply = served.http.post(route, json=body)
    assert 400 <= reply.status_code < 500, reply.text
    assert where in reply.text
    reply = served.http.post(route, content=b'{"user_id": ',
                             headers={"content-type": "application/json"})
    assert 400 <= reply.status_code < 500, reply.text


def test_openapi_documents_the_new_endpoints(served: Served) -> None:
    spec = served.http.get("/docs.json").json()
    assert {"/propensity", "/profile"} <= set(spec["paths"])
    schema = spec["paths"]["/propensity"]["post"]["requestBody"]["content"]["application/json"]
    assert schema["schema"]["properties"]["user_ids"]["maxItems"] == 1000
    assert schema["schema"]["properties"]["user_ids"]["description"]


def test_without_a_propensity_model_propensity_is_503_and_profile_works(
        service_without_propensity: httpx.Client, world: World, propensity: Propensity) -> None:
    store = replace(world.settings, bentoml_home=propensity.conversion_only_home)
    assert check_propensity_model(settings=store) is None  # what a server's handle would say
    http = service_without_propensity
    reply = http.post("/propensity", json={"user_ids": [world.warm_users[0]]})
    assert reply.status_code == 503
    assert reply.json() == {"error": NO_PROPENSITY_MODEL}
    body = _post(http, "/profile", {"user_id": world.warm_users[0]})
    ranked = _post(http, "/rank", {"user_id": world.warm_users[0],
                                   "item_ids": world.items[:3]})
    assert body["cold_user"] is False and body["features"]
    assert body["propensity"] is None and body["churn_risk"] is None
    assert body["propensity_model_tag"] is None
    assert isinstance(body["segment"], str)
    assert all(0.0 <= i["probability"] <= 1.0 and len(i["reasons"]) == 3 for i in ranked["items"])
