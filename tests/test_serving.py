"""The Persona service for real: a small populated feature store, a real XGBoost model in a
temporary BentoML model store, the BentoML server on a free loopback port called over HTTP, on
SQLite and on Redis; parity of the online model matrix with point-in-time training features; and
every score's reasons checked against XGBoost's contributions on the same matrix in-process.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from bentoml._internal.configuration.containers import BentoMLContainer
from bentoml._internal.models import Model, ModelStore
from redis_server import redis_url  # noqa: F401  (fixture)

from persona.featurestore import redis_layout

from persona.data import offline
from persona.synthetic_shop import Shop
from persona.jobs.materialize import materialize
from persona.data.raw import RawTables
from persona.featurestore.registry import apply_definitions
from persona.core.settings import Settings
from persona.data.snapshots import compute_features
from persona.featurestore.config import feature_store
from serving.item_cache import ItemCache
from serving.online import OnlineFeatureReader
from serving.redis_online import RedisFeatureReader
from serving.run import ServerHandle, start_server
from training.explain import contributions
from training.labels import conversion_labels
from training.model_store import save_model
from training.retrieval import feature_columns

pytestmark = pytest.mark.integration

SERVICE = "conversion_v1"
TRAINING_ROWS = 3000


@dataclass(frozen=True)
class World:
    """A populated store, a trained model, and what the tests need to know about them."""

    settings: Settings  # offline store, registry and (materialized) SQLite online store
    redis_home: Path  # the same offline store and registry, not yet materialized anywhere
    shop: Shop
    model_tag: str
    features: list[str]
    snapshot_time: pd.Timestamp  # the latest snapshot: what the online store holds

    @property
    def warm_users(self) -> list[str]:
        """Users with a behaviour snapshot at the latest snapshot time."""
        activity = pd.read_parquet(self.settings.offline_current / "user_activity")
        latest = activity[activity["event_timestamp"] == self.snapshot_time]
        return sorted(latest["user_id"].unique())

    @property
    def items(self) -> list[str]:
        return sorted(self.shop.items["item_id"])

    def store_for(self, kind: str, request: pytest.FixtureRequest):
        """The feature store a server of `kind` ("sqlite" or "redis") reads."""
        if kind == "sqlite":
            return feature_store(self.settings)
        return feature_store(request.getfixturevalue("redis_settings"))


def stored_booster(tag: str) -> xgb.Booster:
    """A model of the module's BentoML home (BENTOML_HOME, set by `world`), loaded in-process."""
    store = ModelStore(Path(os.environ["BENTOML_HOME"]) / "models")
    model: Model = store.get(tag)
    import bentoml.xgboost  # noqa: PLC0415

    return bentoml.xgboost.load_model(model)


def check_reasons(served: list[list[dict]], probabilities: list[float], booster: xgb.Booster,
                  features: list[str], matrix: np.ndarray) -> None:
    """Served reasons are the 3 largest of XGBoost's contributions on the same matrix computed
    in-process, which sum with the bias to the booster's margin, whose sigmoid is the served
    probability; each names its feature and that feature's value (null when missing)."""
    contribs = contributions(booster, matrix)
    margin = booster.predict(xgb.DMatrix(matrix, feature_names=features, missing=np.nan),
                             output_margin=True)
    np.testing.assert_allclose(contribs.sum(axis=1), margin, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-margin)), rtol=1e-5, atol=1e-6)
    assert len(served) == len(matrix)
    for row, reasons in enumerate(served):
        assert len(reasons) == 3
        largest = np.sort(np.abs(contribs[row, :-1]))[::-1][:3]
        np.testing.assert_allclose([abs(r["contribution"]) for r in reasons], largest,
                                   rtol=1e-5, atol=1e-7)
        for reason in reasons:
            j = features.index(reason["feature"])
            assert reason["contribution"] == pytest.approx(contribs[row, j], rel=1e-5, abs=1e-7)
            if np.isnan(matrix[row, j]):
                assert reason["value"] is None
            else:
                assert reason["value"] == pytest.approx(matrix[row, j])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, small_shop: Shop) -> Iterator[World]:
    root = tmp_path_factory.mktemp("serving")
    settings = Settings(home=root / "home", reports_dir=root / "reports")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("BENTOML_HOME", str(root / "bentoml"))  # servers started here inherit it
        env.setenv("PERSONA_HOME", str(settings.home))  # apply_definitions sets it; restored after
        features = compute_features(
            RawTables(small_shop.events, small_shop.users, small_shop.items, {}),
            settings.snapshot_interval)
        offline.publish(settings.offline_root, features, {"source": "tests/test_serving.py"})
        apply_definitions(settings)
        shutil.copytree(settings.home, root / "redis-home", symlinks=True)
        materialize(settings)
        tag, columns = _train_and_save(settings, small_shop, root / "bentoml")
        snapshot = pd.Timestamp(features["user_activity"]["event_timestamp"].max())
        yield World(settings, root / "redis-home", small_shop, tag, columns, snapshot)


def _train_and_save(settings: Settings, shop: Shop, bentoml_home: Path) -> tuple[str, list[str]]:
    """A small real booster on point-in-time features of the service, saved the way training
    saves it (training.model_store), into `bentoml_home`."""
    store = feature_store(settings)
    labels = conversion_labels(shop.events, shop.items)
    entity_df = labels.sample(n=min(TRAINING_ROWS, len(labels)), random_state=0)
    frame = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service(SERVICE), full_feature_names=True,
    ).to_df()
    columns = feature_columns(store, SERVICE, frame)
    matrix = xgb.DMatrix(frame[columns].astype("float64"), label=frame["label"],
                         feature_names=columns)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.3,
                         "nthread": 1}, matrix, num_boost_round=30)
    first, last = (frame["event_timestamp"].min().isoformat(),
                   frame["event_timestamp"].max().isoformat())
    window = {"train_from": first, "valid_from": first, "train_until": last, "valid_until": last}
    metadata = {
        "task": "conversion", "feature_service": SERVICE, "features": columns,
        "training_window": window, "data_hash": "test", "metrics": {}, "validation": {},
        "snapshot_interval_seconds": settings.snapshot_interval.total_seconds(),
    }
    (bentoml_home / "models").mkdir(parents=True, exist_ok=True)
    with BentoMLContainer.model_store.patch(ModelStore(bentoml_home / "models")):
        return save_model(booster, metadata), columns


@pytest.fixture(scope="module")
def redis_settings(world: World, redis_url: str) -> Settings:  # noqa: F811
    settings = Settings(home=world.redis_home, reports_dir=world.settings.reports_dir,
                        online_url=redis_url)
    materialize(settings)
    return settings


@pytest.fixture(scope="module")
def sqlite_server(world: World) -> Iterator[ServerHandle]:
    with start_server(world.settings, model_tag=world.model_tag) as handle:
        yield handle


@pytest.fixture(scope="module")
def redis_server(world: World, redis_settings: Settings) -> Iterator[ServerHandle]:
    with start_server(redis_settings, model_tag=world.model_tag) as handle:
        yield handle


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def client(request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    handle: ServerHandle = request.getfixturevalue(f"{request.param}_server")
    with httpx.Client(base_url=handle.url, timeout=30, trust_env=False) as http:
        yield http


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
    scores = [i["score"] for i in body["items"]]
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
    assert all(0.0 <= i["score"] <= 1.0 for i in body["items"])


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
    ranked = _rank(client, user, [world.items[2]])["items"][0]["score"]
    assert probabilities[0] == probabilities[3] == pytest.approx(ranked, abs=1e-7)


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_every_score_carries_its_reasons(kind: str, world: World,
                                         request: pytest.FixtureRequest) -> None:
    handle: ServerHandle = request.getfixturevalue(f"{kind}_server")
    booster = stored_booster(world.model_tag)
    reader = OnlineFeatureReader(world.store_for(kind, request), SERVICE, world.features)
    user, items = world.warm_users[2], [*world.items[:30], "no-such-item"]
    with httpx.Client(base_url=handle.url, timeout=30, trust_env=False) as http:
        ranked = {i["item_id"]: i for i in _rank(http, user, items)["items"]}
        pairs = [(user, world.items[0]), ("no-such-user", world.items[1])]
        reply = http.post("/predict",
                          json={"pairs": [{"user_id": u, "item_id": i} for u, i in pairs]})
    assert reply.status_code == 200, reply.text
    check_reasons([ranked[i]["reasons"] for i in items], [ranked[i]["score"] for i in items],
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


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_online_matrix_equals_point_in_time_features(
        kind: str, world: World, request: pytest.FixtureRequest) -> None:
    """What serving feeds the model is what training would have seen at the latest snapshot:
    every column, for warm and cold users, known and unknown items."""
    settings = world.settings if kind == "sqlite" else request.getfixturevalue("redis_settings")
    store = feature_store(settings)
    rng = np.random.default_rng(7)
    users = [*rng.choice(world.warm_users, 40), *rng.choice(world.shop.users["user_id"], 30)]
    users += ["no-such-user"] * 5
    items = list(rng.choice(world.items, len(users) - 5)) + ["no-such-item"] * 5
    pairs = pd.DataFrame({"user_id": users, "item_id": items}).drop_duplicates(ignore_index=True)

    rows = OnlineFeatureReader(store, SERVICE, world.features).rows(
        pairs["user_id"].tolist(), pairs["item_id"].tolist())
    served = pd.DataFrame(rows.matrix, columns=world.features).assign(**pairs)

    category = world.shop.items.set_index("item_id")["category"]
    entity_df = pairs.assign(category=pairs["item_id"].map(category).fillna(""),
                             event_timestamp=world.snapshot_time)
    offline_frame = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service(SERVICE), full_feature_names=True,
    ).to_df()
    expected = pairs.merge(offline_frame, on=["user_id", "item_id"], how="left")
    assert len(expected) == len(served)

    mismatched = {}
    for column in world.features:
        want = expected[column].astype("float64").to_numpy()
        got = served[column].to_numpy()
        differs = ~((want == got) | (np.isnan(want) & np.isnan(got)))
        if differs.any():
            mismatched[column] = pairs[differs].head(3).to_dict("records")
    assert not mismatched, mismatched
    assert rows.cold_item.tolist() == (pairs["item_id"] == "no-such-item").tolist()
    assert rows.cold_user[pairs["user_id"].isin(world.warm_users).to_numpy()].sum() == 0
    assert rows.cold_user[(pairs["user_id"] == "no-such-user").to_numpy()].all()


def test_direct_redis_reader_serves_exactly_what_feast_returns(
        world: World, redis_settings: Settings) -> None:
    """The /rank path on Redis reads Feast's layout itself (serving.redis_online): over every item,
    warm, cold and unknown users and unknown items, its matrix, cold flags and categories equal
    those built from Feast's get_online_features, value for value."""
    store = feature_store(redis_settings)
    feast_reader = OnlineFeatureReader(store, SERVICE, world.features)
    direct = RedisFeatureReader(store, SERVICE, world.features)
    rng = np.random.default_rng(11)
    items = [*world.items, "no-such-item", "", "ünï\u0000code"]
    users = [*rng.choice(world.warm_users, len(items) - 60),
             *rng.choice(world.shop.users["user_id"], 50), *["no-such-user"] * 10]
    users = [str(u) for u in users]
    want = feast_reader.rows(users, items)
    cached = RedisFeatureReader(store, SERVICE, world.features, ItemCache())
    for got in (direct.rows(users, items), cached.rows(users, items),
                cached.rows(users, items)):  # the last one from the item cache
        np.testing.assert_array_equal(got.matrix, want.matrix)
        assert got.cold_user.tolist() == want.cold_user.tolist()
        assert got.cold_item.tolist() == want.cold_item.tolist()
    assert direct.categories(items) == feast_reader.categories(items)
    one = world.warm_users[0]
    np.testing.assert_array_equal(direct.for_user(one, items).matrix,
                                  feast_reader.for_user(one, items).matrix)
    assert (~np.isnan(got.matrix)).sum() > got.matrix.size / 2  # mostly real values compared


def test_item_cache_is_emptied_by_a_new_materialization(
        world: World, redis_settings: Settings) -> None:
    """Cached item rows are served until `persona materialize` bumps the version key; the next
    read then equals Feast's again. A new item is written so other tests' rows stay as they
    are."""
    store = feature_store(redis_settings)
    reader = RedisFeatureReader(store, SERVICE, world.features, ItemCache())
    user, item = world.warm_users[0], "cache-probe-item"
    before = reader.for_user(user, [item, world.items[0]])
    assert before.cold_item.tolist() == [True, False]

    catalog = pd.read_parquet(world.settings.offline_current / "item_catalog")
    row = catalog.sort_values("event_timestamp").tail(1).assign(
        item_id=item, list_price=123.0, event_timestamp=pd.Timestamp.now(tz="UTC"))
    store.write_to_online_store("item_catalog", row)
    assert reader.for_user(user, [item]).cold_item.tolist() == [True]  # still the cached row

    redis_layout.mark_materialized(store.config)
    after = reader.for_user(user, [item, world.items[0]])
    want = OnlineFeatureReader(store, SERVICE, world.features).for_user(user,
                                                                        [item, world.items[0]])
    assert after.cold_item.tolist() == [False, False]
    np.testing.assert_array_equal(after.matrix, want.matrix)
    assert after.matrix[0, world.features.index("item_catalog__list_price")] == 123.0
