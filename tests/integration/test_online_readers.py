"""The online readers over the served world's real Feast stores, in-process: parity of the online
model matrix with point-in-time training features on SQLite and on Redis, the direct Redis reader
against Feast's own reads, the item cache (decoded items, not read again) against a new
materialization, and an unreachable Redis through the service's guard.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from worlds import HORIZON, PROPENSITY_SERVICE, SERVICE, Propensity, World

from persona.core.settings import Settings
from persona.featurestore import redis_layout
from persona.featurestore.config import feature_store
from serving.item_cache import ItemCache
from serving.online import OnlineFeatureReader
from serving.redis_online import RedisFeatureReader, _Hash

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
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


@pytest.mark.redis
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


@pytest.mark.redis
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


@pytest.mark.redis
def test_cached_items_are_neither_read_nor_decoded_again(
        world: World, redis_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once its items are cached, a request is one round trip (the cache's version, the user,
    the user's row per category of the items) that decodes only those user rows, with the same
    matrix."""
    store = feature_store(redis_settings)
    reader = RedisFeatureReader(store, SERVICE, world.features, ItemCache())
    user, items = world.warm_users[1], [*world.items[:40], "no-such-item"]
    first = reader.for_user(user, items)
    categories = {reader.categories(items).get(i) or "" for i in items}
    sent: list[int] = []
    decoded: list[tuple[str, ...]] = []
    pipeline, decode = redis_layout.pipeline, _Hash.decode
    monkeypatch.setattr(redis_layout, "pipeline",
                        lambda client, commands: sent.append(len(commands))
                        or pipeline(client, commands))
    monkeypatch.setattr(_Hash, "decode",
                        lambda plan, raw: decoded.append(plan.join_keys) or decode(plan, raw))
    again = reader.for_user(user, items)
    np.testing.assert_array_equal(again.matrix, first.matrix)
    assert again.cold_item.tolist() == first.cold_item.tolist()
    assert sent == [1 + 1 + len(categories)]
    assert sorted(decoded) == sorted([("user_id",)] + [("category", "user_id")] * len(categories))


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
    from serving.breaker import Breaker
    from serving.profiles import Profiler, PropensityScorer
    from serving.run import free_port
    from serving.schemas import ProfileRequest, PropensityRequest
    from serving.service import PersonaService
    from serving.users import ProfileReader, UserFeatureReader

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
