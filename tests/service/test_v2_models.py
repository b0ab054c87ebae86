"""Version-2 models served in process: conversion_v2 and propensity_v2 trained by the pipeline
on the world's shop (lifetime views, request-time recency, native categories, calibration),
read from SQLite and from Redis. What the service answers equals what the offline store gives
for the same moment through the same feature service, encoding and calibration: no skew
between training and serving."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from worlds import World, in_process_service, model_store

from persona.core.schema import REQUEST_TIME
from persona.data.raw import RawTables
from training.calibration import apply
from training.categories import matrix
from training.model_store import load_model
from training.pipeline import TrainResult, train
from training.tasks import TRAINING_TASKS

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Trained:
    home: Path  # the BentoML home holding the two v2 models only
    conversion: TrainResult
    propensity: TrainResult


@pytest.fixture(scope="module")
def trained(world: World, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    home = tmp_path_factory.mktemp("bentoml-v2")
    settings = replace(world.settings, bentoml_home=home,
                       reports_dir=tmp_path_factory.mktemp("reports-v2"))
    shop = world.shop
    raw = RawTables(shop.events, shop.users, shop.items, {})
    with model_store(home):
        conversion = train(settings, features="conversion_v2", raw=raw)
        # what is served, not how well it ranks: a faster learning rate keeps the seven fits
        # of the search short
        propensity = train(settings, task="propensity", horizon_days=7, every_days=3,
                           features="propensity_v2", raw=raw, tune=True,
                           params=replace(TRAINING_TASKS["propensity"].params, eta=0.1))
    return Trained(home, conversion, propensity)


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def served(request: pytest.FixtureRequest, world: World, trained: Trained) -> Iterator:
    settings = world.settings if request.param == "sqlite" else request.getfixturevalue(
        "redis_settings")
    with in_process_service(settings, bentoml_home=trained.home) as client:
        yield client, world.store_for(request.param, request)


def _metadata(home: Path, tag: str, task: str) -> dict:
    with model_store(home):
        return load_model(tag, task=task)


def _offline(store, metadata: dict, entity: pd.DataFrame, booster) -> np.ndarray:
    """The model's calibrated probabilities from the offline store, as of just after the latest
    snapshot (what the online store holds), with the request time of now."""
    frame = store.get_historical_features(
        entity_df=entity, features=store.get_feature_service(metadata["feature_service"]),
        full_feature_names=True).to_df()
    frame = frame.sort_values("row")
    x = matrix(frame, metadata["features"], metadata["categories"])
    return apply(metadata["calibration"], booster.inplace_predict(x, validate_features=False))


def _entity(world: World, **keys: list) -> pd.DataFrame:
    n = len(next(iter(keys.values())))
    return pd.DataFrame({**keys, "event_timestamp": [world.snapshot_time + pd.Timedelta(
        seconds=1)] * n, REQUEST_TIME: [time.time()] * n, "row": range(n)})


def test_v2_propensity_served_equals_the_offline_store_at_the_same_moment(
        served, world: World, trained: Trained) -> None:
    http, store = served
    users = world.warm_users[:20]
    answer = http.post("/propensity", json={"user_ids": users})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_tag"] == trained.propensity.tag
    booster, metadata = _metadata(trained.home, trained.propensity.tag, "propensity")
    assert metadata["categories"] and metadata["feature_service"] == "propensity_v2"
    offline = _offline(store, metadata, _entity(world, user_id=users), booster)
    served_p = [u["propensity"] for u in body["users"]]
    assert np.ptp(offline) > 0  # the users are told apart
    np.testing.assert_allclose(served_p, offline, atol=1e-4)


def test_v2_conversion_ranks_with_its_categories_and_equals_the_offline_store(
        served, world: World, trained: Trained) -> None:
    http, store = served
    user, items = world.warm_users[1], world.items[:8]
    answer = http.post("/predict", json={"pairs": [{"user_id": user, "item_id": i}
                                                   for i in items]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_tag"] == trained.conversion.tag
    booster, metadata = _metadata(trained.home, trained.conversion.tag, "conversion")
    categories = world.shop.items.set_index("item_id").loc[items, "category"].tolist()
    offline = _offline(store, metadata, _entity(world, user_id=[user] * len(items),
                                               item_id=items, category=categories), booster)
    np.testing.assert_allclose([p["probability"] for p in body["predictions"]], offline,
                               atol=1e-4)
    for prediction in body["predictions"]:
        for reason in prediction["reasons"]:
            if reason["feature"] in metadata["categories"]:
                assert reason["value"] is None
                assert reason["category"] in (*metadata["categories"][reason["feature"]], None)
    ranked = http.post("/rank", json={"user_id": user, "item_ids": items})
    assert ranked.status_code == 200
    scores = [i["probability"] for i in ranked.json()["items"]]
    assert scores == sorted(scores, reverse=True)



def test_the_tuned_model_records_a_search_that_never_saw_validation(trained: Trained) -> None:
    _, metadata = _metadata(trained.home, trained.propensity.tag, "propensity")
    tuning, window = metadata["tuning"], metadata["training_window"]
    assert len(tuning["candidates"]) > 1 and 0 <= tuning["chosen"] < len(tuning["candidates"])
    assert pd.Timestamp(tuning["tuned_on"]["tuning_until"]) <= pd.Timestamp(
        window["train_until"]) < pd.Timestamp(window["valid_from"])
    assert "## Tuning" in trained.propensity.report_path.read_text()
