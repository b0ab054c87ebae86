"""Serving pieces without a server or a feature store: request limits, ranking and cold-start
bookkeeping and reasons on a fake reader, model tags, the server's environment, failing early."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus, GetOnlineFeaturesResponse
from feast.protos.feast.types.Value_pb2 import Value
from pydantic import ValidationError

from persona.settings import Settings
from serving import MODEL_NAME, MODEL_TAG_ENV, SERVICE_NAME, resolve_model_tag
from serving.online import FeatureRows, found_rows
from serving.run import ServerError, check_model, server_env, start_server
from serving.schemas import MAX_PREDICT_PAIRS, MAX_RANK_ITEMS, PredictRequest, RankRequest
from serving.scoring import Scorer


class FakeReader:
    """Feature 0 is the item's number ("i7" -> 7), NaN for unknown items; feature 1 is 1.0 for
    the known user "warm". Unknown items are those not starting with "i"."""

    columns = ["item_number", "user_known"]

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], list[str]]] = []

    def for_user(self, user_id: str, item_ids: list[str]) -> FeatureRows:
        return self.rows([user_id] * len(item_ids), item_ids)

    def rows(self, user_ids: list[str], item_ids: list[str]) -> FeatureRows:
        self.calls.append((list(user_ids), list(item_ids)))
        cold_item = np.array([not i.startswith("i") for i in item_ids])
        cold_user = np.array([u != "warm" for u in user_ids])
        matrix = np.column_stack([
            [float(i[1:]) if not cold else np.nan for i, cold in zip(item_ids, cold_item)],
            np.where(cold_user, np.nan, 1.0),
        ])
        return FeatureRows(matrix, cold_user, cold_item)


@pytest.fixture(scope="module")
def booster() -> xgb.Booster:
    """Probability rises with feature 0."""
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.uniform(0, 10, 400), rng.choice([np.nan, 1.0], 400)])
    y = (x[:, 0] + rng.normal(0, 1, 400) > 5).astype(int)
    return xgb.train({"objective": "binary:logistic", "nthread": 1, "max_depth": 2},
                     xgb.DMatrix(x, label=y), num_boost_round=20)


def test_rank_sorts_descending_dedupes_and_flags(booster: xgb.Booster) -> None:
    reader = FakeReader()
    reply = Scorer(booster, reader, "m:1").rank(
        RankRequest(user_id="warm", item_ids=["i1", "i9", "x", "i1", "i5"]))
    assert reader.calls == [(["warm"] * 4, ["i1", "i9", "x", "i5"])]
    ids = [i.item_id for i in reply.items]
    assert [i for i in ids if i != "x"] == ["i9", "i5", "i1"]
    assert sorted(ids) == ["i1", "i5", "i9", "x"]
    scores = [i.score for i in reply.items]
    assert scores == sorted(scores, reverse=True)
    assert {i.item_id: i.cold_item for i in reply.items} == {
        "i1": False, "i5": False, "i9": False, "x": True}
    assert reply.cold_user is False and reply.model_tag == "m:1"
    for item in reply.items:  # the model has two inputs, so two reasons, the larger first
        assert [r.feature for r in item.reasons] in (["item_number", "user_known"],
                                                     ["user_known", "item_number"])
        assert abs(item.reasons[0].contribution) >= abs(item.reasons[1].contribution)
    unknown = next(i for i in reply.items if i.item_id == "x")
    assert {r.feature: r.value for r in unknown.reasons} == {"item_number": None,
                                                             "user_known": 1.0}


def test_predict_keeps_request_order_and_duplicates(booster: xgb.Booster) -> None:
    pairs = [{"user_id": "warm", "item_id": "i2"}, {"user_id": "new", "item_id": "i2"},
             {"user_id": "warm", "item_id": "i2"}]
    reply = Scorer(booster, FakeReader(), "m:1").predict(PredictRequest(pairs=pairs))
    assert [(p.user_id, p.item_id, p.cold_user) for p in reply.predictions] == [
        ("warm", "i2", False), ("new", "i2", True), ("warm", "i2", False)]
    assert reply.predictions[0].probability == reply.predictions[2].probability
    assert reply.predictions[0].reasons == reply.predictions[2].reasons
    assert all(len(p.reasons) == 2 for p in reply.predictions)


def test_request_limits() -> None:
    RankRequest(user_id="u", item_ids=["i"] * MAX_RANK_ITEMS)
    PredictRequest(pairs=[{"user_id": "u", "item_id": "i"}] * MAX_PREDICT_PAIRS)
    bad = [
        lambda: RankRequest(user_id="u", item_ids=["i"] * (MAX_RANK_ITEMS + 1)),
        lambda: RankRequest(user_id="u", item_ids=[]),
        lambda: RankRequest(user_id="", item_ids=["i"]),
        lambda: RankRequest(user_id="u" * 257, item_ids=["i"]),
        lambda: RankRequest(user_id="u", item_ids=[""]),
        lambda: RankRequest(user_id="u", item_ids=["i"], extra=1),
        lambda: PredictRequest(pairs=[{"user_id": "u", "item_id": "i"}] * (MAX_PREDICT_PAIRS + 1)),
        lambda: PredictRequest(pairs=[]),
    ]
    for make in bad:
        with pytest.raises(ValidationError):
            make()


def test_model_tags(monkeypatch: pytest.MonkeyPatch) -> None:
    from training.model_store import MODEL_NAME as TRAINED_NAME

    assert MODEL_NAME == TRAINED_NAME
    monkeypatch.delenv(MODEL_TAG_ENV, raising=False)
    assert resolve_model_tag() == f"{MODEL_NAME}:latest"
    assert resolve_model_tag("abc") == f"{MODEL_NAME}:abc"
    assert resolve_model_tag("other:abc") == "other:abc"
    monkeypatch.setenv(MODEL_TAG_ENV, "pinned")
    assert resolve_model_tag() == f"{MODEL_NAME}:pinned"


def test_server_env_carries_settings_and_drops_stale_ones(tmp_path: Path) -> None:
    base = {"PERSONA_REDIS_URL": "redis://old:6379", MODEL_TAG_ENV: "old", "PATH": "/bin"}
    env = server_env(Settings(tmp_path, tmp_path), None, workers=2, base=base)
    assert env["PERSONA_HOME"] == str(tmp_path)
    assert "PERSONA_REDIS_URL" not in env and MODEL_TAG_ENV not in env
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["PATH"] == "/bin"
    overrides = json.loads(env["BENTOML_CONFIG_OVERRIDES"])
    assert overrides == {"services": {SERVICE_NAME: {"workers": 2}}}
    env = server_env(Settings(tmp_path, tmp_path, "redis://new:6379/2"), "v1", base={})
    assert env["PERSONA_REDIS_URL"] == "redis://new:6379/2"
    assert env[MODEL_TAG_ENV] == f"{MODEL_NAME}:v1"


def test_missing_model_fails_before_a_server_starts(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "empty"))
    with pytest.raises(ServerError, match="no model persona-conversion:latest"):
        check_model(None)
    with pytest.raises(ServerError, match="no model persona-conversion:v9"):
        start_server(Settings(tmp_path, tmp_path), model_tag="v9")
    assert not (tmp_path / "logs").exists()


def test_found_rows_reads_sqlite_and_redis_answers() -> None:
    """Rows: stored with a value; stored with a null value; SQLite's missing row (NOT_FOUND);
    Redis's missing row (PRESENT, empty value, zero timestamp)."""
    vector = GetOnlineFeaturesResponse.FeatureVector(
        values=[Value(int64_val=3), Value(), Value(), Value()],
        statuses=[FieldStatus.PRESENT, FieldStatus.NULL_VALUE, FieldStatus.NOT_FOUND,
                  FieldStatus.PRESENT],
    )
    for seconds in (1790812800, 1790812800, 0, 0):
        vector.event_timestamps.add(seconds=seconds)
    assert found_rows(vector).tolist() == [True, True, False, False]


def test_unreachable_online_store_is_a_503_not_a_500() -> None:
    import redis
    from bentoml.exceptions import ServiceUnavailable

    from serving.service import PersonaService

    def store_down(_request):
        raise redis.exceptions.ConnectionError("Connection refused")

    with pytest.raises(ServiceUnavailable) as raised:
        PersonaService.inner._guard(store_down, None)
    assert raised.value.error_code == 503
