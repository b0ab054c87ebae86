"""The fitted baselines: a logistic regression and an XGBoost on a task's prior features alone
(and BG/NBD for propensity), trained on the training rows in the same run; only where the frame
has those features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from training import bgnbd
from training.evaluate import (
    BG_NBD,
    GAIN,
    MODEL,
    PRIORS_LOGISTIC,
    PRIORS_XGBOOST,
    auc_gains,
    evaluate,
)
from training.tasks import TRAINING_TASKS


def _frame(n: int, seed: int, priors: tuple[str, ...]) -> pd.DataFrame:
    """Rows whose label follows the first prior; some values missing, as for new entities."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({p: rng.uniform(0, 0.3, n) for p in priors})
    frame.loc[rng.uniform(size=n) < 0.1, priors[1]] = np.nan
    frame["label"] = (rng.uniform(size=n) < frame[priors[0]]).astype(int)
    frame["user_id"] = [f"u{i % 50}" for i in range(n)]
    frame["item_popularity__conversion_rate_30d"] = frame.get(
        "item_popularity__conversion_rate_30d", rng.uniform(0, 0.1, n))
    frame["user_activity__purchases_30d"] = 0
    frame["user_activity__views_7d"] = 0
    frame["event_timestamp"] = pd.date_range("2026-01-01", periods=n, freq="min", tz="UTC")
    return frame


@pytest.mark.parametrize("task", ["conversion", "propensity"])
def test_fitted_baselines_exist_only_with_the_prior_features(task: str) -> None:
    spec = TRAINING_TASKS[task]
    assert set(spec.fitted_baselines(spec.prior_features, 30)) == {PRIORS_LOGISTIC,
                                                                    PRIORS_XGBOOST}
    assert spec.fitted_baselines(spec.prior_features[1:], 30) == {}


def test_only_propensity_has_the_buy_till_you_die_baseline() -> None:
    with_btyd = (*TRAINING_TASKS["propensity"].prior_features, *bgnbd.FEATURES)
    assert BG_NBD in TRAINING_TASKS["propensity"].fitted_baselines(with_btyd, 90)
    assert BG_NBD not in TRAINING_TASKS["conversion"].fitted_baselines(with_btyd, 90)
    assert BG_NBD not in TRAINING_TASKS["propensity"].fitted_baselines(bgnbd.FEATURES[1:], 90)


def test_fitted_baselines_learn_from_train_and_score_validation() -> None:
    spec = TRAINING_TASKS["conversion"]
    train, valid = _frame(3000, 0, spec.prior_features), _frame(1500, 1, spec.prior_features)
    model = valid[spec.prior_features[0]].to_numpy()
    evaluation = evaluate(train, valid, model, fitted=spec.fitted_baselines(
        spec.prior_features, 7))
    for name in (PRIORS_LOGISTIC, PRIORS_XGBOOST):
        scored = evaluation.scored[name]
        assert scored.calibrated_by == "its own fit on train" and len(scored.scores) == len(valid)
        assert ((0 <= scored.probabilities) & (scored.probabilities <= 1)).all()
        assert roc_auc_score(valid["label"], scored.scores) > 0.6
        assert evaluation.metrics[name]["roc_auc"] == pytest.approx(
            roc_auc_score(valid["label"], scored.scores))
        assert evaluation.metrics[name][GAIN]["gain"] == pytest.approx(
            evaluation.metrics[MODEL]["roc_auc"] - evaluation.metrics[name]["roc_auc"])
    assert GAIN not in evaluation.metrics[MODEL]


def test_auc_gains_are_paired_and_honest_about_noise() -> None:
    rng = np.random.default_rng(3)
    n = 4000
    y = (rng.uniform(size=n) < 0.3).astype(int)
    model = y + rng.normal(0, 1.0, n)
    users = np.array([f"u{i % 1000}" for i in range(n)])
    scores = {"model": model, "same": model.copy(), "noise": rng.normal(size=n),
              "rounded": np.round(model)}  # ties, counted half as roc_auc_score does
    gains = auc_gains(y, users, scores)
    assert set(gains) == {"same", "noise", "rounded"}
    assert gains["same"] == {"gain": 0.0, "low": 0.0, "high": 0.0}
    assert gains["noise"]["low"] > 0.1
    assert gains["noise"]["gain"] == pytest.approx(
        roc_auc_score(y, model) - roc_auc_score(y, scores["noise"]))
    assert gains["rounded"]["gain"] == pytest.approx(
        roc_auc_score(y, model) - roc_auc_score(y, scores["rounded"]))
    assert gains["rounded"]["low"] < gains["rounded"]["gain"] < gains["rounded"]["high"]
    assert auc_gains(np.zeros(n, int), users, scores) == {}
