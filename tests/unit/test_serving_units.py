"""Serving pieces without a server or a feature store: request limits, ranking, reasons and
cold-start bookkeeping on a fake reader, model tags, the server's environment, failing early, the
propensity model's metadata and the profile tags of one shopper."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import xgboost as xgb
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus, GetOnlineFeaturesResponse
from feast.protos.feast.types.Value_pb2 import Value
from pydantic import ValidationError

from persona.core.settings import MODEL_TAG as MODEL_TAG_ENV
from persona.core.settings import PROPENSITY_TAG as PROPENSITY_TAG_ENV
from persona.core.settings import Settings
from persona.profiling.tags import TagBook
from serving import (
    MODEL_NAME,
    PROPENSITY_MODEL_NAME,
    SERVICE_NAME,
    resolve_model_tag,
    resolve_propensity_tag,
)
from serving.breaker import Breaker
from serving.item_cache import ItemCache
from serving.online import FeatureRows, found_rows
from serving.profiles import Profiler, PropensityScorer, stored_quantiles
from serving.run import (
    ServerError,
    check_model,
    check_propensity_model,
    server_env,
    start_server,
)
from serving.schemas import (
    MAX_PREDICT_PAIRS,
    MAX_PROPENSITY_USERS,
    MAX_RANK_ITEMS,
    PredictRequest,
    PredictResponse,
    ProfileRequest,
    PropensityRequest,
    RankRequest,
    RankResponse,
)
from serving.scoring import Scorer, contributions, probabilities
from training import explain


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
        stale_user = np.array([u == "stale" for u in user_ids])
        return FeatureRows(matrix, cold_user, cold_item, stale_user)


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
    reply = RankResponse.model_validate(Scorer(booster, reader, "m:1").rank(
        RankRequest(user_id="warm", item_ids=["i1", "i9", "x", "i1", "i5"])), strict=True)
    assert reader.calls == [(["warm"] * 4, ["i1", "i9", "x", "i5"])]
    ids = [i.item_id for i in reply.items]
    assert ids == ["i9", "i5", "i1", "x"]  # the unknown item last, by default
    scores = [i.probability for i in reply.items]
    assert scores[:3] == sorted(scores[:3], reverse=True)
    assert all(i.score == i.probability for i in reply.items)  # the deprecated alias
    assert reply.stale_user is False
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


@pytest.mark.parametrize("policy", ["rank", "last", "drop"])
def test_rank_places_unknown_items_and_trims_the_answer(booster: xgb.Booster,
                                                        policy: str) -> None:
    """An unknown item ("x", no item features) is mixed in by probability, put last or dropped;
    `top_k` keeps the best k of that order; `reasons: false` leaves the reasons out."""
    scorer = Scorer(booster, FakeReader(), "m:1")
    items = ["i1", "x", "i9", "i5"]
    full = scorer.rank(RankRequest(user_id="stale", item_ids=items, unknown_items=policy))
    ids = [i["item_id"] for i in full["items"]]
    by_probability = [i for i, _ in sorted(
        ((i["item_id"], i["probability"]) for i in full["items"]), key=lambda x: -x[1])]
    assert ids == {"rank": by_probability, "last": ["i9", "i5", "i1", "x"],
                   "drop": ["i9", "i5", "i1"]}[policy]
    assert full["stale_user"] is True
    short = RankResponse.model_validate(scorer.rank(RankRequest(
        user_id="stale", item_ids=items, unknown_items=policy, top_k=2, reasons=False)))
    assert [i.item_id for i in short.items] == ids[:2]
    assert all(i.reasons is None for i in short.items)
    assert all("reasons" not in i for i in scorer.rank(RankRequest(
        user_id="warm", item_ids=items, reasons=False))["items"])


def test_short_answers_score_like_full_ones(booster: xgb.Booster) -> None:
    """An answer that leaves rows or reasons out takes its probabilities from XGBoost's margin
    and contributions for the returned rows alone: the same order, the same reasons and the
    same probabilities (to float32 rounding) as the full answer's first rows."""
    scorer = Scorer(booster, FakeReader(), "m:1")
    items = [f"i{n}" for n in (3, 8, 1, 6, 9, 2, 7)] + ["x", "y"]
    for policy in ("rank", "last", "drop"):
        full = scorer.rank(RankRequest(user_id="warm", item_ids=items, unknown_items=policy))
        for top_k in (1, 3, len(full["items"])):
            for reasons in (True, False):
                short = scorer.rank(RankRequest(user_id="warm", item_ids=items, top_k=top_k,
                                                reasons=reasons, unknown_items=policy))
                want = full["items"][:top_k]
                assert [i["item_id"] for i in short["items"]] == [i["item_id"] for i in want]
                np.testing.assert_allclose([i["probability"] for i in short["items"]],
                                           [i["probability"] for i in want], atol=1e-6)
                assert [i.get("reasons") for i in short["items"]] == [
                    i["reasons"] if reasons else None for i in want]


def test_served_contributions_equal_training_explains(booster: xgb.Booster) -> None:
    """serving.scoring skips explain's per-call feature-name handling, nothing else: equal
    contributions, for numeric and categorical inputs, and its margins give the same
    probabilities."""
    rng = np.random.default_rng(1)
    x = np.column_stack([rng.uniform(0, 10, 300), rng.choice([np.nan, 0, 1, 2], 300)])
    y = ((x[:, 0] > 5) ^ (x[:, 1] == 2)).astype(int)
    categorical = xgb.train(
        {"objective": "binary:logistic", "nthread": 1, "max_depth": 3},
        xgb.DMatrix(x, label=y, feature_names=["n", "c"], feature_types=["q", "c"],
                    enable_categorical=True), num_boost_round=10)
    for model, matrix in ((booster, FakeReader().rows(["warm"] * 3, ["i1", "i7", "x"]).matrix),
                          (categorical, x[:50])):
        want = explain.contributions(model, matrix, nthread=1)
        np.testing.assert_array_equal(contributions(model, matrix), want)
        np.testing.assert_allclose(probabilities(model, matrix),
                                   1 / (1 + np.exp(-want.sum(axis=1))), atol=1e-6)


def test_predict_keeps_request_order_and_duplicates(booster: xgb.Booster) -> None:
    pairs = [{"user_id": "warm", "item_id": "i2"}, {"user_id": "new", "item_id": "i2"},
             {"user_id": "warm", "item_id": "i2"}]
    reply = PredictResponse.model_validate(
        Scorer(booster, FakeReader(), "m:1").predict(PredictRequest(pairs=pairs)), strict=True)
    assert [(p.user_id, p.item_id, p.cold_user) for p in reply.predictions] == [
        ("warm", "i2", False), ("new", "i2", True), ("warm", "i2", False)]
    assert not any(p.stale_user for p in reply.predictions)
    assert reply.predictions[0].probability == reply.predictions[2].probability
    assert reply.predictions[0].reasons == reply.predictions[2].reasons
    assert all(len(p.reasons) == 2 for p in reply.predictions)


def test_request_limits() -> None:
    RankRequest(user_id="u", item_ids=["i"] * MAX_RANK_ITEMS)
    PredictRequest(pairs=[{"user_id": "u", "item_id": "i"}] * MAX_PREDICT_PAIRS)
    PropensityRequest(user_ids=["u"] * MAX_PROPENSITY_USERS)
    ProfileRequest(user_id="u" * 256)
    bad = [
        lambda: RankRequest(user_id="u", item_ids=["i"] * (MAX_RANK_ITEMS + 1)),
        lambda: RankRequest(user_id="u", item_ids=[]),
        lambda: RankRequest(user_id="", item_ids=["i"]),
        lambda: RankRequest(user_id="u" * 257, item_ids=["i"]),
        lambda: RankRequest(user_id="u", item_ids=[""]),
        lambda: RankRequest(user_id="u", item_ids=["i"], extra=1),
        lambda: PredictRequest(pairs=[{"user_id": "u", "item_id": "i"}] * (MAX_PREDICT_PAIRS + 1)),
        lambda: PredictRequest(pairs=[]),
        lambda: PropensityRequest(user_ids=["u"] * (MAX_PROPENSITY_USERS + 1)),
        lambda: PropensityRequest(user_ids=[]),
        lambda: PropensityRequest(user_ids=["u" * 257]),
        lambda: ProfileRequest(user_id=""),
        lambda: ProfileRequest(user_id="u", user_ids=["u"]),
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
    from persona.core.catalog import MODELS

    assert PROPENSITY_MODEL_NAME == MODELS["propensity"].model_name
    monkeypatch.delenv(PROPENSITY_TAG_ENV, raising=False)
    assert resolve_propensity_tag() == f"{PROPENSITY_MODEL_NAME}:latest"
    monkeypatch.setenv(PROPENSITY_TAG_ENV, "p1")
    assert resolve_propensity_tag() == f"{PROPENSITY_MODEL_NAME}:p1"


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
    assert PROPENSITY_TAG_ENV not in server_env(Settings(tmp_path, tmp_path), None,
                                                base={PROPENSITY_TAG_ENV: "stale"})
    env = server_env(Settings(tmp_path, tmp_path), None, base={}, propensity_tag="p2")
    assert env[PROPENSITY_TAG_ENV] == f"{PROPENSITY_MODEL_NAME}:p2"


def test_missing_model_fails_before_a_server_starts(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "empty"))
    with pytest.raises(ServerError, match="no model persona-conversion:latest"):
        check_model(None)
    # a home never ingested is refused first: its workers would fail forever
    with pytest.raises(ServerError, match="no ingested features in"):
        start_server(Settings(tmp_path, tmp_path), model_tag="v9")
    assert not (tmp_path / "logs").exists()


def test_a_missing_propensity_model_is_optional_unless_pinned(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore
    from bentoml.exceptions import NotFound

    from serving.service import stored_propensity_model

    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv(PROPENSITY_TAG_ENV, raising=False)
    assert check_propensity_model() is None
    with pytest.raises(ServerError, match=f"no model {PROPENSITY_MODEL_NAME}:v9"):
        check_propensity_model("v9")
    monkeypatch.setenv(PROPENSITY_TAG_ENV, "v8")
    with pytest.raises(ServerError, match=f"no model {PROPENSITY_MODEL_NAME}:v8"):
        check_propensity_model()
    (tmp_path / "empty" / "models").mkdir(parents=True)
    with BentoMLContainer.model_store.patch(ModelStore(tmp_path / "empty" / "models")):
        with pytest.raises(NotFound, match="pinned by PERSONA_PROPENSITY_TAG"):
            stored_propensity_model()
        monkeypatch.delenv(PROPENSITY_TAG_ENV)
        assert stored_propensity_model() is None


def test_propensity_metadata_is_checked_before_anything_is_read(booster: xgb.Booster) -> None:
    metadata = {"task": "propensity", "feature_service": "propensity_v1", "features": ["a"]}
    with pytest.raises(ValueError, match=r"m:1: metadata lacks \['horizon_days'\]"):
        PropensityScorer.from_metadata(booster, metadata, "m:1", store=None)
    with pytest.raises(ValueError, match="trained for task 'conversion'"):
        PropensityScorer.from_metadata(
            booster, {**metadata, "task": "conversion", "horizon_days": 30}, "m:1", store=None)


def test_stored_quantiles_take_short_names_and_plain_q_keys() -> None:
    metadata = {"reference_quantiles": {
        "user_activity__spend_90d": {"0.5": 10, "0.90": 80.5, "0.95": 120},
        "aov_90d": {"0.5": 20.0}}}
    assert stored_quantiles(metadata) == {
        "spend_90d": {"0.5": 10.0, "0.9": 80.5, "0.95": 120.0}, "aov_90d": {"0.5": 20.0}}
    assert stored_quantiles({}) == {}


def test_tags_of_one_shopper_use_the_reference_population_only(booster: xgb.Booster) -> None:
    """Alone, a shopper is no population: without reference quantiles a quantile rule is false
    (not "top 10% of one"); with them, it compares with the reference."""
    buyer = {"purchases_90d": 4, "purchases_30d": 2, "spend_90d": 500.0, "aov_90d": 125.0,
             "days_since_last_purchase": 3.0, "days_since_last_event": 1.0,
             "favourite_category": "books", "region": "north"}
    book = TagBook.load()
    tags, segment = Profiler(None, book, None).tags(buyer, None, None)
    assert "high_value" not in tags and {"loyal", "fan_of_books"} <= set(tags)
    assert segment == "loyal"
    scorer = PropensityScorer(booster, None, "p:1", 30.0, {"spend_90d": {"0.9": 400.0}})
    tags, segment = Profiler(None, book, scorer).tags(buyer, 0.9, 0.1)
    assert "high_value" in tags and segment == "champions"
    tags, segment = Profiler(None, book, scorer).tags({}, 0.5, None)
    assert tags == [] and segment == "others"


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

    service = SimpleNamespace(_breaker=Breaker(cool_off=60))
    with pytest.raises(ServiceUnavailable) as raised:
        PersonaService.inner._guard(service, store_down, None)
    assert raised.value.error_code == 503
    calls = []
    with pytest.raises(ServiceUnavailable):  # during the cool-off the store is not tried
        PersonaService.inner._guard(service, calls.append, None)
    assert calls == []


def test_item_cache_bounds_age_size_and_version() -> None:
    fresh, stale = ItemCache(size=3), ItemCache(size=3, max_age=0)
    for cache in (fresh, stale):
        cache.store({"i1": [b"a"], "i2": [b"b"]}, b"1")
    assert fresh.lookup(["i1", "x"]) == (b"1", {"i1": [b"a"]})
    assert stale.lookup(["i1"]) == (b"1", {})  # older than max_age: emptied
    fresh.store({"i3": [b"c"], "i4": [b"d"]}, b"1")  # over the size: emptied, then stored
    assert fresh.lookup(["i1", "i3"]) == (b"1", {"i3": [b"c"]})
    fresh.store({"i5": [b"e"]}, b"2")  # a new materialization empties it
    assert fresh.lookup(["i3", "i5"]) == (b"2", {"i5": [b"e"]})
    fresh.reset(b"3")
    fresh.store({"i6": [b"f"]}, b"2")  # read before the reset: not kept
    assert fresh.lookup(["i6"]) == (b"3", {})
    assert ItemCache(size=0).store({"i": [b"x"]}, None) is None


def test_breaker_fails_fast_for_its_cool_off_then_lets_a_request_try() -> None:
    now = [100.0]
    breaker = Breaker(cool_off=1.0, clock=lambda: now[0])
    assert not breaker.is_open()
    breaker.trip()
    now[0] += 0.99
    assert breaker.is_open()
    now[0] += 0.02
    assert not breaker.is_open()
    breaker.trip()
    breaker.reset()  # the readiness probe read the store
    assert not breaker.is_open()


def test_a_server_serves_the_models_of_its_own_home(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Homes share one model store: the latest model of this home is served, another home's
    only when pinned (with a warning), and only other homes' models is an error naming both
    (optional for propensity: served without, with a warning)."""
    import bentoml
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    from serving.service import stored_propensity_model

    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    monkeypatch.delenv(MODEL_TAG_ENV, raising=False)
    monkeypatch.delenv(PROPENSITY_TAG_ENV, raising=False)
    (tmp_path / "bentoml" / "models").mkdir(parents=True)
    booster = xgb.train({"nthread": 1}, xgb.DMatrix(np.eye(2), label=[0, 1]), 1)
    shop_a, shop_b, shop_c = (Settings(tmp_path / name, tmp_path) for name in "abc")
    tags = {}
    with BentoMLContainer.model_store.patch(ModelStore(tmp_path / "bentoml" / "models")):
        for name, settings in (("a", shop_a), ("b", shop_b)):
            for model in (MODEL_NAME, PROPENSITY_MODEL_NAME):
                saved = bentoml.xgboost.save_model(model, booster,
                                                   metadata={"home": str(settings.home)})
                tags[name, model] = str(saved.tag)
        assert check_model(None, shop_a) == tags["a", MODEL_NAME]
        assert check_propensity_model(None, shop_a) == tags["a", PROPENSITY_MODEL_NAME]
        assert str(stored_propensity_model(shop_a).tag) == tags["a", PROPENSITY_MODEL_NAME]
        with pytest.raises(ServerError, match=f"home {shop_c.home}; the latest, "
                                              f"{tags['b', MODEL_NAME]}, was trained on "
                                              f"{shop_b.home}"):
            check_model(None, shop_c)
        with caplog.at_level("WARNING"):
            assert check_propensity_model(None, shop_c) is None
            assert stored_propensity_model(shop_c) is None
            assert check_model(tags["b", MODEL_NAME], shop_a) == tags["b", MODEL_NAME]
    assert "serving without a propensity model" in caplog.text
    assert f"trained on home {shop_b.home}, not {shop_a.home}" in caplog.text
