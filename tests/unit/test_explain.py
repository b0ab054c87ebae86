"""Reasons sum (with the bias) to the model's margin and name the features that matter."""

import numpy as np
import xgboost as xgb

from training.explain import contributions, top_reasons


def test_reasons_sum_to_margin_and_pick_the_driving_feature() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 3))
    x[rng.random(2000) < 0.1, 2] = np.nan
    y = (x[:, 0] + 0.1 * rng.normal(size=2000) > 0).astype(float)
    names = ["signal", "noise_a", "noise_b"]
    booster = xgb.train({"objective": "binary:logistic", "nthread": 1, "max_depth": 3},
                        xgb.DMatrix(x, label=y, feature_names=names), num_boost_round=30)
    contribs = contributions(booster, x)
    margin = booster.predict(xgb.DMatrix(x, feature_names=names), output_margin=True)
    np.testing.assert_allclose(contribs.sum(axis=1), margin, rtol=1e-4, atol=1e-4)
    reasons = top_reasons(names, x, contribs, k=2)
    assert len(reasons) == 2000 and all(len(r) == 2 for r in reasons)
    assert np.mean([r[0].feature == "signal" for r in reasons]) > 0.9
    first = reasons[0][0]
    assert first.value == x[0, names.index(first.feature)]
