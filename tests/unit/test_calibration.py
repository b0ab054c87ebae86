"""The calibration map: fitted on a time-held-out slice, chosen by log loss, stored as plain
numbers, applied the same way everywhere; it must make over-confident outputs honest."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.calibration import apply, fit_calibration
from training.evaluate import calibration_bins


def _overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Outputs whose true rate is their square: a model over-predicting like propensity did."""
    rng = np.random.default_rng(seed)
    raw = rng.uniform(0.01, 0.99, n)
    return raw, (rng.uniform(size=n) < raw ** 2).astype(int)


def test_a_fitted_map_lowers_the_calibration_error_on_new_rows() -> None:
    raw, y = _overconfident(4000, seed=0)
    calibration = fit_calibration(raw, y)
    assert calibration["method"] in {"isotonic", "platt"}
    assert set(calibration["log_loss_of_candidates"]) == {"platt", "none"}  # few positives
    stored = json.loads(json.dumps(calibration))  # plain numbers: metadata, no pickle
    fresh, truth = _overconfident(4000, seed=1)
    _, before = calibration_bins(truth, fresh)
    _, after = calibration_bins(truth, apply(stored, fresh))
    assert after < before / 2
    grid = np.linspace(0, 1, 101)
    assert np.all(np.diff(apply(stored, grid)) >= -1e-12)  # monotone: the ranking is kept


def test_isotonic_competes_only_with_enough_positives() -> None:
    raw, y = _overconfident(12_000, seed=3)
    assert set(fit_calibration(raw, y)["log_loss_of_candidates"]) == {"isotonic", "platt", "none"}


def test_well_calibrated_outputs_keep_a_near_identity_map() -> None:
    rng = np.random.default_rng(2)
    raw = rng.uniform(0.05, 0.95, 4000)
    y = (rng.uniform(size=4000) < raw).astype(int)
    calibration = fit_calibration(raw, y)
    np.testing.assert_allclose(apply(calibration, raw), raw, atol=0.08)


def test_without_both_classes_the_output_is_left_as_it_is() -> None:
    raw = np.linspace(0.1, 0.9, 50)
    calibration = fit_calibration(raw, np.zeros(50, int))
    assert calibration["method"] == "none"
    np.testing.assert_array_equal(apply(calibration, raw), raw)
    np.testing.assert_array_equal(apply(None, raw), raw)


def test_platt_is_a_logistic_map_of_the_log_odds() -> None:
    p = np.array([0.2, 0.5, 0.8])
    np.testing.assert_allclose(apply({"method": "platt", "a": 1.0, "b": 0.0}, p), p)
    shifted = apply({"method": "platt", "a": 1.0, "b": np.log(2.0)}, np.array([0.5]))
    assert shifted[0] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="unknown calibration method"):
        apply({"method": "beta"}, p)
