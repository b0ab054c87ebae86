"""/propensity and /profile for real: the world of tests/test_serving.py (populated feature store,
conversion model) plus a small propensity model trained here on point-in-time propensity_v1
features, served over HTTP on SQLite and on Redis; a second server started without a propensity
model answers /propensity with 503 and still profiles.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import bentoml
import httpx
import pandas as pd
import pytest
import xgboost as xgb
from bentoml._internal.configuration.containers import BentoMLContainer
from bentoml._internal.models import ModelStore
from redis_server import redis_url  # noqa: F401  (fixture)
from test_serving import World, check_reasons, redis_settings, world  # noqa: F401  (fixtures)

from persona.core.settings import Settings
from persona.featurestore.config import feature_store
from serving import PROPENSITY_MODEL_NAME
from serving.breaker import Breaker
from serving.run import ServerHandle, free_port, start_server
from serving.schemas import ProfileRequest, PropensityRequest
from serving.service import NO_PROPENSITY_MODEL, PersonaService
from serving.users import ProfileReader, UserFeatureReader

pytestmark = pytest.mark.integration

PROPENSITY_SERVICE = "propensity_v1"
HORIZON = timedelta(days=30)
QUANTILES = ("0.5", "0.75", "0.9", "0.95")


@dataclass(frozen=True)
class Propensity:
    """The propensity model saved into the world's model store, and a store without it."""

    tag: str
    booster: xgb.Booster
    features: list[str]
    conversion_only_home: Path  # a BentoML home holding the conversion model alone


@pytest.fixture(scope="module")
def propensity(world: World) -> Propensity:
    home = Path(os.environ["BENTOML_HOME"])  # the world's model store (its fixture set this)
    conversion_only = home.parent / "bentoml-conversion-only"
    shutil.copytree(home, conversion_only)
    booster, features, metadata = _train_propensity(world)
    with BentoMLContainer.model_store.patch(ModelStore(home / "models")):
        model = bentoml.xgboost.save_model(PROPENSITY_MODEL_NAME, booster, metadata=metadata)
    return Propensity(str(model.tag), booster, features, conversion_only)


def _train_propensity(world: World) -> tuple[xgb.Booster, list[str], dict]:
    """A small real booster: every signed-up user at weekly snapshot times T whose 30 days are
    observed, labelled 1 when they buy anything in (T, T + 30 days], with propensity_v1
    features as of T; metadata like training's (reference quantile keys are full names)."""
    events, users = world.shop.events, world.shop.users
    store = feature_store(world.settings)
    last = (events["event_timestamp"].max() - HORIZON).floor("D")
    times = [t for t in pd.date_range(end=last, periods=5, freq="7D")
             if t > events["event_timestamp"].min()]
    buys = events[events["event_type"] == "purchase"]
    rows = []
    for t in times:
        window = buys[(buys["event_timestamp"] > t) & (buys["event_timestamp"] <= t + HORIZON)]
        who = users.loc[users["signup_timestamp"] <= t, "user_id"]
        rows.append(pd.DataFrame({"user_id": who, "event_timestamp": t,
                                  "label": who.isin(window["user_id"]).astype(int)}))
    entity_df = pd.concat(rows, ignore_index=True)
    service = store.get_feature_service(PROPENSITY_SERVICE)
    frame = store.get_historical_features(entity_df=entity_df, features=service,
                                          full_feature_names=True).to_df()
    features = [f"{p.name_to_use()}__{f.name}" for p in service.feature_view_projections
                for f in p.features]
    matrix = frame[features].astype("float64")
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.3,
                         "nthread": 1},
                        xgb.DMatrix(matrix, label=frame["label"], feature_names=features),
                        num_boost_round=30)
    latest = matrix[frame["event_timestamp"] == frame["event_timestamp"].max()]
    reference = {f: {q: float(latest[f].quantile(float(q))) for q in QUANTILES}
                 for f in features if latest[f].notna().any()}
    first, until = times[0].isoformat(), times[-1].isoformat()
    metadata = {
        "task": "propensity", "feature_service": PROPENSITY_SERVICE, "features": features,
        "training_window": {"train_from": first, "train_until": until, "valid_from": first,
                            "valid_until": until},
        "data_hash": "test", "metrics": {}, "validation": {},
        "snapshot_interval_seconds": world.settings.snapshot_interval.total_seconds(),
        "horizon_days": HORIZON.days, "reference_quantiles": reference,
    }
    return booster, features, metadata


@pytest.fixture(scope="module")
def sqlite_server(world: World, propensity: Propensity) -> Iterator[ServerHandle]:
    with start_server(world.settings, model_tag=world.model_tag) as handle:
        yield handle


@pytest.fixture(scope="module")
def redis_server(world: World, propensity: Propensity,
                 redis_settings: Settings) -> Iterator[ServerHandle]:  # noqa: F811
    with start_server(redis_settings, model_tag=world.model_tag) as handle:
        yield handle


@pytest.fixture(scope="module")
def server_without_propensity(world: World, propensity: Propensity) -> Iterator[ServerHandle]:
    with pytest.MonkeyPatch.context() as env:  # only while starting: the server inherits it
        env.setenv("BENTOML_HOME", str(propensity.conversion_only_home))
        handle = start_server(world.settings, model_tag=world.model_tag)
    with handle:
        yield handle


@dataclass(frozen=True)
class Served:
    kind: str
    http: httpx.Client
    store: object  # the Feast store the server reads


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def served(request: pytest.FixtureRequest, world: World) -> Iterator[Served]:
    handle: ServerHandle = request.getfixturevalue(f"{request.param}_server")
    with httpx.Client(base_url=handle.url, timeout=30, trust_env=False) as http:
        yield Served(request.param, http, world.store_for(request.param, request))


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
    for view in body["freshness"].values():
        age = view["age_seconds"]
        assert age >= 0
        assert age == pytest.approx((before - pd.Timestamp(view["event_timestamp"]))
                                    .total_seconds(), abs=60)

    assert body["propensity_model_tag"] == propensity.tag
    assert 0.0 <= body["propensity"] <= 1.0
    assert body["churn_risk"] == pytest.approx(1.0 - body["propensity"], abs=1e-9)
    scored = _post(served.http, "/propensity", {"user_ids": [user]})["users"][0]
    assert body["propensity"] == pytest.approx(scored["propensity"], abs=1e-9)
    assert f"fan_of_{features['favourite_category']}" in body["tags"]
    assert isinstance(body["segment"], str) and body["segment"]


def test_profile_of_a_user_without_activity(served: Served, world: World) -> None:
    """Signed up, never active: profile attributes and their freshness, cold, no churn risk."""
    user = sorted(set(world.shop.users["user_id"]) - set(world.shop.events["user_id"]))[0]
    body = _post(served.http, "/profile", {"user_id": user})
    assert body["cold_user"] is True and body["churn_risk"] is None
    assert list(body["features"]) == ["age_band", "gender", "region", "membership_level"]
    assert body["freshness"]["user_profile"]["age_seconds"] >= 0
    assert body["freshness"]["user_activity"] == {"event_timestamp": None, "age_seconds": None}


def test_profile_of_an_unknown_user_is_cold_not_an_error(served: Served) -> None:
    body = _post(served.http, "/profile", {"user_id": "no-such-user"})
    assert body["cold_user"] is True
    assert body["features"] == {}
    assert body["freshness"] == {
        "user_profile": {"event_timestamp": None, "age_seconds": None},
        "user_activity": {"event_timestamp": None, "age_seconds": None}}
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
        server_without_propensity: ServerHandle, world: World) -> None:
    assert server_without_propensity.propensity_tag is None
    with httpx.Client(base_url=server_without_propensity.url, timeout=30,
                      trust_env=False) as http:
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
    assert all(0.0 <= i["score"] <= 1.0 and len(i["reasons"]) == 3 for i in ranked["items"])


def test_unreachable_redis_is_a_503_on_the_new_endpoints(world: World,
                                                        propensity: Propensity) -> None:
    """The readers over a real Feast store whose Redis is not listening, through the service's
    guard: 503, not a generic 500. (redis-py's retries are turned off here only to save the
    ~8 s its default backoff waits before giving up.)"""
    from bentoml.exceptions import ServiceUnavailable
    from feast import FeatureStore

    from persona.core.settings import FEATURE_REPO
    from persona.featurestore.config import repo_config
    from persona.profiling.tags import TagBook
    from serving.profiles import Profiler, PropensityScorer

    config = repo_config(Settings(home=world.redis_home, reports_dir=world.settings.reports_dir,
                                  online_url=f"redis://127.0.0.1:{free_port()}"))
    config.online_store.connection_string += ",retry=null"
    store = FeatureStore(repo_path=str(FEATURE_REPO), config=config)
    scorer = PropensityScorer(propensity.booster,
                              UserFeatureReader(store, PROPENSITY_SERVICE, propensity.features),
                              propensity.tag, HORIZON.days)
    profiler = Profiler(ProfileReader(store), TagBook.load(), scorer)
    for call, request in ((scorer.score, PropensityRequest(user_ids=["u1"])),
                          (profiler.profile, ProfileRequest(user_id="u1"))):
        with pytest.raises(ServiceUnavailable) as raised:
            PersonaService.inner._guard(SimpleNamespace(_breaker=Breaker()), call, request)
        assert raised.value.error_code == 503
