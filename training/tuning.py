"""A small search over XGBoost's main parameters that cannot leak: it sees the training period only.

The latest part of the training period (by time, `TUNING_FRACTION`) is the tuning period; each
candidate is fitted on the rows before it (early stopping on their own holdout, as always) and
scored on it by log loss. The winner is refit on the whole training period by the caller, and
the validation period, which the search never sees, is scored once. The candidates are declared
here, apart from the code that runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, replace

import pandas as pd

from training.calibration import clipped_log_loss
from training.categories import Categories
from training.model import LABEL, TIME, ModelParams, fit, holdout_split, predict

TUNING_FRACTION = 0.2
# Changes to the defaults (training.model.ModelParams) tried by `persona train --tune`.
CANDIDATES: tuple[dict, ...] = (
    {},
    {"max_depth": 3, "eta": 0.1},
    {"max_depth": 7, "min_child_weight": 10.0},
    {"max_depth": 4, "min_child_weight": 20.0, "reg_lambda": 10.0},
    {"eta": 0.1, "colsample_bytree": 0.9, "subsample": 0.9},
    {"max_depth": 6, "min_child_weight": 100.0, "reg_lambda": 5.0},
)
Step = Callable[[str], None]


def tune(train: pd.DataFrame, features: list[str], base: ModelParams,
         categories: Categories | None = None, candidates: Sequence[dict] = CANDIDATES,
         on_step: Step = lambda _: None) -> tuple[ModelParams, dict]:
    """The candidate with the lowest log loss on the tuning period, and the record of the
    search (every candidate's parameters, log loss and trees, the tuning window)."""
    inner, tuning = holdout_split(train, TUNING_FRACTION)
    y = tuning[LABEL].to_numpy()
    tried = []
    for number, change in enumerate(candidates, 1):
        on_step(f"tuning: candidate {number} of {len(candidates)}")
        params = replace(base, **change)
        fitted = fit(inner, features, params, categories)
        p = predict(fitted.booster, tuning, features, categories, fitted.calibration)
        tried.append({"change": dict(change), "log_loss": clipped_log_loss(y, p),
                      "trees": fitted.best_iteration + 1})
    best = min(range(len(tried)), key=lambda i: tried[i]["log_loss"])
    chosen = replace(base, **candidates[best])
    record = {
        "candidates": tried, "chosen": best, "params": asdict(chosen),
        "tuned_on": {"fit_until": inner[TIME].max().isoformat(),
                     "tuning_from": tuning[TIME].min().isoformat(),
                     "tuning_until": tuning[TIME].max().isoformat()},
    }
    return chosen, record
