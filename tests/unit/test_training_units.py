"""Training stages on hand-made frames: split bounds, metrics, the report, model store round
trip."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from training.evaluate import (
    ACTIVITY,
    LIFT,
    MODEL,
    POPULARITY,
    Evaluation,
    calibration_bins,
    evaluate,
    gains_by_decile,
    ndcg_at_k,
    top_decile_lift,
)
from training.model import ModelParams, fit, holdout_split, predict
from training.report import PLOTS, render, write_plots
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
    from persona.core.catalog import Home, WrongHomeError
    from training.model_store import get_model, save_model

    other = save_model(booster, {**metadata, "home": "/shops/b", "home_id": "b1"})  # the newest
    assert get_model(None, home=Home(Path("/shops/a"))).tag == second
    assert get_model(None, home=Home(Path("/shops/b"))).tag == other
    assert get_model(None, home=Home(Path("/copy/of/b"), "b1")).tag == other  # same shop
    assert get_model(None).tag == other  # without a home: the store's latest
    with pytest.raises(WrongHomeError, match="home /shops/c; the latest.*trained on /shops/b"):
        get_model(None, home=Home(Path("/shops/c")))
    with caplog.at_level(logging.WARNING, logger="training.model_store"):
        assert get_model(first, home=Home(Path("/shops/b"))).tag == first
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


def test_gains_by_decile_reuses_the_top_decile_definition() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(253) < 0.2).astype(int)
    for scores in (y + rng.normal(size=len(y)), np.ones(len(y))):  # informative; all tied
        table = gains_by_decile(y, scores)
        assert [d["decile"] for d in table] == list(range(1, 11))
        assert sum(d["rows"] for d in table) == len(y)
        assert sum(d["positives"] for d in table) == y.sum()
        assert table[-1]["cumulative_share"] == 1.0 and table[-1]["cumulative_lift"] == 1.0
        assert table[0]["lift"] == top_decile_lift(y, scores)
        assert table[0]["cumulative_lift"] == pytest.approx(table[0]["lift"])
    assert gains_by_decile(np.zeros(5, int), np.arange(5.0)) == []
    assert [d["rows"] for d in gains_by_decile(np.array([1, 0, 0]), np.arange(3.0))] == [1, 1, 1]


def _report_inputs() -> tuple[Evaluation, xgb.Booster, dict]:
    """A real booster and evaluation on a small random frame, and the `info` the pipeline
    gives the report."""
    frame = frame_over(30, per_day=40)
    split = time_split(frame, timedelta(days=7))
    params = ModelParams(max_depth=3, min_child_weight=1.0, num_boost_round=60,
                         early_stopping_rounds=10, nthread=1)
    fitted = fit(split.train, ["signal", "noise"], params)
    ev = evaluate(split.train, split.valid, predict(fitted.booster, split.valid,
                                                    ["signal", "noise"]))
    info = {"tag": "conversion_model:abc", "title": "Conversion model",
            "positive": "a view followed by a purchase within {h} days",
            "baselines_text": "Item popularity and user activity.", "horizon_days": 7,
            "feature_service": "conversion_v1", "features": ["signal", "noise"],
            "data_hash": "ab" * 32, "training_window": split.window(),
            "n_train": len(split.train), "train_positives": int(split.train["label"].sum()),
            "n_holdout": fitted.n_holdout, "best_iteration": fitted.best_iteration,
            "n_valid": len(split.valid), "gap_days": 0.0, "until": None,
            "calibration": "identity", "tuning": None, "notes": [],
            "params": asdict(params)}
    return ev, fitted.booster, info


def test_report_shows_scores_gains_balance_parameters_and_window(tmp_path: Path) -> None:
    ev, booster, info = _report_inputs()
    paths = write_plots(ev, booster, tmp_path)
    assert paths["scores"] == tmp_path / PLOTS["scores"]
    for path in paths.values():
        assert path.stat().st_size > 1000
    page = render(ev, booster, info)
    assert f"![scores]({PLOTS['scores']})" in page
    window, n_train = info["training_window"], info["n_train"]
    rate = info["train_positives"] / n_train
    assert (f"| train | {window['train_from']} | {window['train_until']} | {n_train} | "
            f"{info['train_positives']} | {rate:.4f} |") in page
    assert (f"| validation | {window['valid_from']} | {window['valid_until']} | {len(ev.y)} | "
            f"{ev.y.sum()} | {ev.y.mean():.4f} |") in page
    assert "| max_depth | 3 |" in page and "| num_boost_round | 60 |" in page
    assert "| nthread | 1 |" in page and "`binary:logistic`" in page
    section = page.split("## Gains by decile")[1].split("\n## ")[0]
    rows = [line.split("|")[1:-1] for line in section.splitlines()
            if line.startswith("| ") and line[2].isdigit()]
    assert [int(r[0]) for r in rows] == list(range(1, 11))
    assert rows[-1][3].strip() == "100.0%"
    assert rows[0][4].strip() == f"{ev.metrics[MODEL][LIFT]:.2f}"
    assert float(rows[0][4]) == pytest.approx(ev.metrics[MODEL][LIFT], abs=0.005)


def test_segment_plots_list_the_declared_segments_top_down(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    import matplotlib.figure

    from persona.profiling.segments import plot_segments
    from persona.profiling.tags import TagBook

    book = TagBook.load()
    declared = [s.name for s in book.segments]
    present = declared[::-1][:-2]  # reversed, and the first two declared ones left empty
    segmented = pd.DataFrame({"user_id": range(3 * len(present)), "segment": present * 3,
                              "propensity": np.linspace(0, 1, 3 * len(present))})
    shown: dict[str, list[str]] = {}

    def record(fig: matplotlib.figure.Figure, path: Path, **_: object) -> None:
        (ax,) = fig.axes
        ticks = sorted(zip(ax.get_yticks(), (t.get_text() for t in ax.get_yticklabels())))
        top_down = ticks if ax.yaxis_inverted() else ticks[::-1]
        shown[Path(path).name] = [label for _, label in top_down]
        Path(path).write_bytes(b"png")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record)
    paths = plot_segments(segmented, tmp_path, book)
    assert set(shown) == {p.name for p in paths.values()}
    assert all(labels == declared for labels in shown.values())
