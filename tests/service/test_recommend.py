"""/recommend of the Persona service in process, on SQLite and on Redis: the world of
tests/worlds.py with its retrieval model, candidate lists and ranker. Warm users get items of
their own candidate list through the rules, cold users their region's popular items, and the
batch lists of `persona recommend` at the online store's date are the lists the service gives;
an item marked unavailable leaves the lists from that moment on; a service without the models
answers 503.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner
from worlds import Propensity, World, in_process_service, model_store

from persona.cli import app
from persona.core.settings import Settings
from persona.data import offline
from persona.featurestore.config import feature_store
from persona.jobs.availability import update_availability
from persona.jobs.materialize import last_snapshot, materialize
from persona.jobs.recommend import recommend
from persona.recommend.rules import RuleBook
from serving.service import NO_RECOMMEND_MODEL
from training.candidates import GENERATORS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def http(request: pytest.FixtureRequest) -> httpx.Client:
    return request.getfixturevalue(f"{request.param}_service")


def _recommend(http: httpx.Client, body: dict) -> dict:
    reply = http.post("/recommend", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()


def _candidates(world: World, user: str) -> list[str]:
    row = feature_store(world.settings).get_online_features(
        features=["user_candidates:candidate_items"], entity_rows=[{"user_id": user}]).to_dict()
    return list(row["candidate_items"][0] or [])


def test_a_warm_user_gets_k_of_their_candidates_through_the_rules(http: httpx.Client,
                                                                  world: World) -> None:
    user = world.warm_users[0]
    body = _recommend(http, {"user_id": user, "k": 8})
    items = body["items"]
    assert not body["cold_user"] and len(items) == 8
    assert set(body["model_tags"]) == {"recommend", "retrieval"}
    assert {i["item_id"] for i in items} <= set(_candidates(world, user))
    assert [i["relevance"] for i in items] == sorted((i["relevance"] for i in items),
                                                     reverse=True)
    assert all(0 <= i["score"] <= 1 and i["source"] in i["sources"] and i["reasons"]
               for i in items)
    assert all(set(i["sources"]) <= set(GENERATORS) for i in items)
    rules = RuleBook.load()
    shop = world.shop.items.set_index("item_id")
    categories = shop.loc[[i["item_id"] for i in items], "category"]
    assert categories.value_counts().max() <= rules.max_per_category


def test_excluded_items_and_a_category_context_are_honoured(http: httpx.Client,
                                                           world: World) -> None:
    user = world.warm_users[1]
    first = _recommend(http, {"user_id": user, "k": 5})["items"]
    dropped = [first[0]["item_id"], first[1]["item_id"]]
    again = _recommend(http, {"user_id": user, "k": 5, "exclude_item_ids": dropped})["items"]
    assert not set(dropped) & {i["item_id"] for i in again}
    category = world.shop.items.set_index("item_id").loc[first[0]["item_id"], "category"]
    within = _recommend(http, {"user_id": user, "k": 5, "context": {"category": category}})
    shop = world.shop.items.set_index("item_id")
    assert within["items"] and {shop.loc[i["item_id"], "category"]
                                for i in within["items"]} == {category}


def test_a_cold_user_gets_popular_items_flagged_cold(http: httpx.Client) -> None:
    body = _recommend(http, {"user_id": "no-such-shopper", "k": 5})
    assert body["cold_user"] and len(body["items"]) == 5
    assert all(i["sources"] == ["popularity"] for i in body["items"])


def test_batch_lists_at_the_stores_date_are_the_services(sqlite_service: httpx.Client,
                                                         world: World, tmp_path) -> None:
    """`persona recommend` as of the end of the online store's load gives each user the list
    /recommend gives: one set of candidates, features, ranker and rules, offline and online."""
    settings = world.settings
    views = [fv.name for fv in feature_store(settings).list_feature_views()]
    as_of = pd.Timestamp(last_snapshot(settings, views) + timedelta(seconds=1))
    users = [*world.warm_users[:6], "no-such-shopper"]
    with model_store(world.bentoml_home):
        lists = pd.read_parquet(recommend(settings, as_of, 10, tmp_path / "lists.parquet",
                                          users=users).path)
    for user in users:
        served = _recommend(sqlite_service, {"user_id": user, "k": 10})
        batch = lists[lists["user_id"] == user].sort_values("rank")
        assert batch["item_id"].tolist() == [i["item_id"] for i in served["items"]], user
        assert batch["cold_user"].all() == served["cold_user"]
        pd.testing.assert_series_equal(
            batch["score"].reset_index(drop=True),
            pd.Series([i["score"] for i in served["items"]], name="score"), rtol=1e-6)


@pytest.fixture(scope="module")
def without_models(world: World, propensity: Propensity) -> Iterator[httpx.Client]:
    """The service on SQLite, its models from a store holding the conversion model alone."""
    with in_process_service(world.settings, propensity.conversion_only_home) as client:
        yield client


def test_without_recommendation_models_it_answers_503(without_models: httpx.Client) -> None:
    reply = without_models.post("/recommend", json={"user_id": "u", "k": 3})
    assert reply.status_code == 503 and reply.json()["error"] == NO_RECOMMEND_MODEL


@pytest.fixture(scope="module")
def own_home(world: World, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A copy of the world's home with its own SQLite online store, loaded."""
    settings = world.home_copy(tmp_path_factory.mktemp("availability") / "home")
    materialize(settings)
    return settings


def test_an_item_marked_unavailable_leaves_the_lists_from_then_on(own_home: Settings,
                                                                 world: World,
                                                                 tmp_path: Path) -> None:
    """`persona availability` takes an item out of /recommend at once and out of batch lists
    from its moment on; a list as of an earlier date still has it (point in time)."""
    user = world.warm_users[2]
    views = [fv.name for fv in feature_store(own_home).list_feature_views()]
    before = pd.Timestamp(last_snapshot(own_home, views) + timedelta(seconds=1))
    with in_process_service(own_home) as http:
        first = _recommend(http, {"user_id": user, "k": 5})["items"][0]["item_id"]
        flags = tmp_path / "flags.csv"
        pd.DataFrame({"item_id": [first], "available": ["false"]}).to_csv(flags, index=False)
        done = CliRunner().invoke(app, ["availability", str(flags), "--home",
                                        str(own_home.home), "--json"])
        assert done.exit_code == 0, done.output
        assert json.loads(done.output.strip().splitlines()[-1])["unavailable"] == 1
        after = [i["item_id"] for i in _recommend(http, {"user_id": user, "k": 5})["items"]]
    assert first not in after and len(after) == 5
    with model_store(world.bentoml_home):
        then = pd.read_parquet(recommend(own_home, before, 5, tmp_path / "then.parquet",
                                         users=[user]).path)
        now = pd.read_parquet(recommend(own_home, pd.Timestamp.now(tz="UTC"), 5,
                                        tmp_path / "now.parquet", users=[user]).path)
    assert first in set(then["item_id"]) and first not in set(now["item_id"])


def test_an_availability_file_naming_unknown_items_changes_nothing(own_home: Settings,
                                                                  tmp_path: Path) -> None:
    version = offline.current_manifest(own_home.offline_root)["version"]
    flags = tmp_path / "flags.csv"
    pd.DataFrame({"item_id": ["no-such-item"], "available": ["no"]}).to_csv(flags, index=False)
    done = CliRunner().invoke(app, ["availability", str(flags), "--home", str(own_home.home)])
    assert done.exit_code == 1 and "not in the catalogue" in done.output
    pd.DataFrame({"item_id": ["x"], "available": ["maybe"]}).to_csv(flags, index=False)
    with pytest.raises(ValueError):
        update_availability(own_home, flags)
    assert offline.current_manifest(own_home.offline_root)["version"] == version


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_the_candidate_views_online_are_the_offline_rows(world: World, kind: str,
                                                         request: pytest.FixtureRequest) -> None:
    """Every list of user_candidates and item_neighbours, as the online store serves it, is
    the latest offline row of its entity, value for value (NaN where a generator did not list
    the item)."""
    store = world.store_for(kind, request)
    for view, key in (("user_candidates", "user_id"), ("item_neighbours", "item_id")):
        rows = pd.read_parquet(world.settings.offline_current / view)
        rows = rows.sort_values("event_timestamp").groupby(key).tail(1).head(25)
        columns = [c for c in rows.columns if c not in (key, "event_timestamp", "run")]
        online = store.get_online_features(
            features=[f"{view}:{c}" for c in columns],
            entity_rows=[{key: k} for k in rows[key]]).to_dict()
        for n, (_, row) in enumerate(rows.iterrows()):
            for column in columns:
                served = online[column][n]
                if row[column].dtype.kind == "f":
                    np.testing.assert_array_equal(np.asarray(served, float), row[column])
                else:
                    assert list(served) == list(row[column]), (view, column)
