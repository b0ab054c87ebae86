"""Calibrated probabilities: a monotone map fitted on a time-held-out slice, stored with the model.

Marketing uses the numbers, not only the order, and a booster's raw output drifts from the
observed rates (early stopping, class balance, a validation period unlike training). Two maps
are fitted on the first part (by time) of the calibration slice and compared by log loss on
the rest: isotonic regression (scikit-learn's `IsotonicRegression`; only with enough positives,
as its steps tie scores) and Platt scaling (a logistic regression on the log-odds), against
leaving the output as it is. The winner is refit
on the whole slice and saved in the model's metadata as plain numbers, no pickle: the isotonic
breakpoints, applied as scikit-learn applies them (linear interpolation, clipped at the ends),
or Platt's slope and intercept. `apply` is the one function training, batch scoring and the
service use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

Calibration = Mapping[str, Any]  # {"method": "isotonic" | "platt" | "none", ...}
IDENTITY: dict[str, Any] = {"method": "none"}
EPS = 1e-6
FIT_SHARE = 0.5  # the first half of the slice fits the candidates, the second half chooses
# Isotonic regression is a step function: on few positives its steps are coarse and tie the
# scores of rows the booster told apart (a ranking lost); below this many positives in the
# fitting half only Platt scaling, strictly increasing, is tried.
MIN_ISOTONIC_POSITIVES = 1000


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def _isotonic(p: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
    return {"method": "isotonic", "x": iso.X_thresholds_.tolist(),
            "y": iso.y_thresholds_.tolist()}


def _platt(p: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    fitted = LogisticRegression(C=1e6).fit(_logit(p).reshape(-1, 1), y)
    return {"method": "platt", "a": float(fitted.coef_[0, 0]), "b": float(fitted.intercept_[0])}


def clipped_log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Log loss with probabilities kept inside (EPS, 1 - EPS), both classes declared."""
    return float(log_loss(y, np.clip(np.asarray(p, np.float64), EPS, 1 - EPS), labels=[0, 1]))


def apply(calibration: Calibration | None, p: np.ndarray) -> np.ndarray:
    """Calibrated probabilities for raw ones (unchanged without a calibration)."""
    p = np.asarray(p, np.float64)
    method = (calibration or IDENTITY)["method"]
    if method == "isotonic":
        return np.interp(p, calibration["x"], calibration["y"])
    if method == "platt":
        return 1.0 / (1.0 + np.exp(-(calibration["a"] * _logit(p) + calibration["b"])))
    if method == "none":
        return p
    raise ValueError(f"unknown calibration method {method!r}")


def fit_calibration(p: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """The map of the three with the lowest log loss on the later part of the slice (`p` and
    `y` in time order), refit on all of it; with a single class on either part, none."""
    p, y = np.asarray(p, np.float64), np.asarray(y, np.int64)
    cut = int(len(p) * FIT_SHARE)
    fit_p, fit_y, check_p, check_y = p[:cut], y[:cut], p[cut:], y[cut:]
    if len(np.unique(fit_y)) < 2 or len(np.unique(check_y)) < 2:
        return {**IDENTITY, "chosen_by": "too few positives to fit a map"}
    losses = {}
    fitters = (_isotonic, _platt) if fit_y.sum() >= MIN_ISOTONIC_POSITIVES else (_platt,)
    for fitter in fitters:
        candidate = fitter(fit_p, fit_y)
        losses[candidate["method"]] = clipped_log_loss(check_y, apply(candidate, check_p))
    losses["none"] = clipped_log_loss(check_y, check_p)
    best = min(losses, key=losses.get)
    chosen = {"isotonic": _isotonic, "platt": _platt}.get(best)
    result = chosen(p, y) if chosen else dict(IDENTITY)
    return {**result, "log_loss_of_candidates": losses}
