"""Training stages on hand-made frames: split bounds, metrics, model store round trip."""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from training.evaluate import ACTIVITY, MODEL, POPULARITY, calibration_bins, evaluate, ndcg_at_k
from training.model import ModelParams, fit, holdout_split, predict
from training.split import SplitError, time_split

T0 = pd.Timestamp("2026-09-01", tz="UTC")
DAY = pd.Timedelta(days=1)


def frame_over(days: int, per_day: int = 10, seed: int = 0) -> pd.DataFrame:
    """A labelled frame with one signal feature, rows spread evenly over `days` days."""
    rng = np.random.default_rng(seed)
    n = days * per_day
    signal = rng.normal(size=n)
    return pd.DataFrame({
        "user_id": [f"u{i % 17}" for i in range(n)],
        "item_id": [f"i{i % 5}" for i in range(n)],
        "category": "books",
        "event_timestamp": T0 + pd.to_timedelta(np.arange(n) * 86400 / per_day, unit="s"),
        "label": (signal + rng.normal(scale=0.5, size=n) > 1.0).astype("int64"),
        "signal": signal,
        "noise": rng.normal(size=n),
        "item_popularity__conversion_rate_30d": np.where(rng.random(n) < 0.2, np.nan,
                                                         rng.random(n)),
        "user_activity__purchases_30d": rng.integers(0, 3, n).astype(float),
        "user_activity__views_7d": rng.integers(0, 9, n).astype(float),
    })


def test_time_split_puts_the_latest_period_in_validation_and_honours_the_gap() -> None:
    frame = frame_over(30)
    split = time_split(frame, timedelta(days=7), gap=timedelta(days=7))
    last = frame["event_timestamp"].max()
    assert (split.valid["event_timestamp"] > last - 7 * DAY).all()
    assert len(split.valid) == (frame["event_timestamp"] > last - 7 * DAY).sum()
    assert (split.train["event_timestamp"] <= last - 14 * DAY).all()
    assert split.train_until + 7 * DAY <= split.valid_from
    assert set(split.window()) == {"train_from", "train_until", "valid_from", "valid_until"}
    assert split.window()["valid_until"] == last.isoformat()


def test_time_split_without_gap_uses_every_earlier_row() -> None:
    frame = frame_over(20)
    split = time_split(frame, timedelta(days=7))
    assert len(split.train) + len(split.valid) == len(frame)


def test_time_split_too_short_is_an_error() -> None:
    with pytest.raises(SplitError, match="no training rows"):
        time_split(frame_over(10), timedelta(days=7), gap=timedelta(days=7))


def test_holdout_is_the_latest_part_of_train() -> None:
    frame = frame_over(20)
    fit_rows, holdout = holdout_split(frame, 0.2)
    assert fit_rows["event_timestamp"].max() < holdout["event_timestamp"].min()
    assert len(fit_rows) + len(holdout) == len(frame)
    assert abs(len(holdout) - 0.2 * len(frame)) <= 1


def test_fit_is_deterministic_and_keeps_the_best_round() -> None:
    frame = frame_over(40, per_day=30)
    params = ModelParams(num_boost_round=300, early_stopping_rounds=20, nthread=1)
    first, second = fit(frame, ["signal", "noise"], params), fit(frame, ["signal", "noise"], params)
    assert first.booster.feature_names == ["signal", "noise"]
    assert first.booster.num_boosted_rounds() == first.best_iteration + 1
    np.testing.assert_array_equal(predict(first.booster, frame, ["signal", "noise"]),
                                  predict(second.booster, frame, ["signal", "noise"]))
    gain = first.booster.get_score(importance_type="total_gain")
    assert gain["signal"] > gain.get("noise", 0.0)


def test_ndcg_hand_computed() -> None:
    users = np.array(["a", "a", "a", "b", "b", "c"])
    y = np.array([0, 1, 0, 1, 1, 0])
    scores = np.array([0.9, 0.5, 0.1, 0.2, 0.8, 0.3])
    # a: the positive is ranked 2nd -> 1/log2(3); b: both positives on top -> 1; c: no positive.
    expected = (1 / math.log2(3) + 1.0) / 2
    assert ndcg_at_k(users, y, scores) == pytest.approx(expected)
    assert ndcg_at_k(users, y, scores, k=1) == pytest.approx((0.0 + 1.0) / 2)


def test_calibration_bins_and_ece() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.0, 0.0, 1.0, 1.0])
    bins, ece = calibration_bins(y, p, n_bins=2)
    assert [b["count"] for b in bins] == [2, 2]
    assert ece == pytest.approx(0.0)
    _, ece = calibration_bins(np.array([0, 0, 0, 0]), np.array([0.5] * 4), n_bins=2)
    assert ece == pytest.approx(0.5)


def test_evaluate_reports_model_and_both_baselines() -> None:
    frame = frame_over(30, per_day=40)
    train, valid = frame.iloc[:800], frame.iloc[800:]
    probabilities = 1 / (1 + np.exp(-3 * (valid["signal"].to_numpy() - 1)))
    ev = evaluate(train, valid, probabilities)
    assert set(ev.metrics) == {MODEL, POPULARITY, ACTIVITY}
    for m in ev.metrics.values():
        assert {"roc_auc", "pr_auc", "log_loss", "ece", "ndcg@10", "calibration"} <= set(m)
        assert 0 <= m["roc_auc"] <= 1 and m["log_loss"] > 0
    assert ev.metrics[MODEL]["roc_auc"] > 0.8 > ev.metrics[POPULARITY]["roc_auc"]
    assert ev.metrics[POPULARITY]["calibrated_by"] == "isotonic on train"


def _check_homes(booster: xgb.Booster, metadata: dict, first: str, second: str,
                 caplog: pytest.LogCaptureFixture) -> None:
    """The latest model of a home is that home's; only other homes' models is an error naming
    both; a pinned model of another home is served with a warning."""
    from persona.core.catalog import WrongHomeError
    from training.model_store import get_model, save_model

    other = save_model(booster, {**metadata, "home": "/shops/b"})  # the newest of all
    assert get_model(None, home=Path("/shops/a")).tag == second
    assert get_model(None, home=Path("/shops/b")).tag == other
    assert get_model(None).tag == other  # without a home: the store's latest
    with pytest.raises(WrongHomeError, match="home /shops/c; the latest.*trained on /shops/b"):
        get_model(None, home=Path("/shops/c"))
    with caplog.at_level(logging.WARNING, logger="training.model_store"):
        assert get_model(first, home=Path("/shops/b")).tag == first
    assert "trained on home /shops/a, not /shops/b" in caplog.text


def test_model_store_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                caplog: pytest.LogCaptureFixture) -> None:
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models.model import ModelStore

    from training.model_store import MODEL_NAME, ModelMetadataError, load_model, save_model

    monkeypatch.setenv("BENTOML_HOME", str(tmp_path))
    frame = frame_over(10)
    booster = xgb.train({"nthread": 1, "objective": "binary:logistic"},
                        xgb.DMatrix(frame[["signal", "noise"]], label=frame["label"]), 3)
    metadata = {
        "task": "conversion", "feature_service": "conversion_v1", "features": ["signal", "noise"],
        "training_window": {k: T0.isoformat() for k in
                            ("train_from", "train_until", "valid_from", "valid_until")},
        "data_hash": "ab" * 32, "metrics": {"model": {"roc_auc": float("nan"), "n": np.int64(3)}},
        "validation": {}, "snapshot_interval_seconds": 86400.0, "home": "/shops/a",
    }
    with BentoMLContainer.model_store.patch(ModelStore(tmp_path / "models")):
        with pytest.raises(ModelMetadataError, match="data_hash"):
            save_model(booster, {k: v for k, v in metadata.items() if k != "data_hash"})
        with pytest.raises(ModelMetadataError, match="feature names"):
            save_model(booster, {**metadata, "features": ["noise", "signal"]})
        first = save_model(booster, metadata)
        second = save_model(booster, metadata)
        assert first.startswith(f"{MODEL_NAME}:") and first != second
        loaded, meta = load_model(None)
        assert meta["metrics"] == {"model": {"n": 3}}  # undefined metrics are left out
        assert loaded.feature_names == ["signal", "noise"]
        _, meta_first = load_model(first)
        assert meta_first["data_hash"] == "ab" * 32
        _check_homes(booster, metadata, first, second, caplog)
    assert (tmp_path / "models" / MODEL_NAME).is_dir()
    assert list((tmp_path / "models" / MODEL_NAME).rglob("saved_model.ubj"))
