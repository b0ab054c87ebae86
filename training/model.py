"""Fitting the conversion booster: XGBoost `hist`, early stopping on the end of the training period.

The early-stopping holdout is carved from the latest training rows, never from validation:
choosing the number of trees on validation would make the validation metrics optimistic.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
import xgboost as xgb

from persona.core.settings import openmp_wait_policy
from training.calibration import IDENTITY, Calibration, apply, fit_calibration
from training.categories import Categories, feature_types, matrix

log = logging.getLogger(__name__)

TIME = "event_timestamp"
LABEL = "label"


@dataclass(frozen=True)
class ModelParams:
    """Booster settings; `nthread=None` means one thread per CPU this process may use.

    The thread count is always passed explicitly: with OpenMP's default wait policy, an
    unspecified count on a small machine has made training several times slower;
    OMP_WAIT_POLICY=PASSIVE in the environment avoids it too.
    """

    max_depth: int = 5
    eta: float = 0.05
    min_child_weight: float = 50.0
    subsample: float = 0.8
    colsample_bytree: float = 0.6
    reg_lambda: float = 1.0
    max_bin: int = 256
    # categorical features with at most this many categories split one category against the
    # rest: partition splits over a handful of attribute values overfit (measured on the cohort)
    max_cat_to_onehot: int = 8
    num_boost_round: int = 2000
    early_stopping_rounds: int = 50
    holdout_fraction: float = 0.15
    seed: int = 0
    nthread: int | None = None


DEFAULT_PARAMS = ModelParams()
# Propensity has one row per user and snapshot: a few thousand users, strongly correlated rows and
# a smooth recency x frequency surface. Shallow, slow, column-sampled trees fitted it better on
# both generated shops (cohort ROC AUC 0.863 -> 0.868, browsing 0.763 -> 0.769 for
# propensity_v2); conversion keeps the defaults.
SHALLOW_PARAMS = replace(DEFAULT_PARAMS, max_depth=3, eta=0.02, colsample_bytree=0.4)


@dataclass(frozen=True)
class FitResult:
    """The booster cut at its best round, what early stopping saw, and the calibration map
    fitted on the same holdout (training.calibration)."""

    booster: xgb.Booster
    best_iteration: int
    holdout_logloss: float
    n_fit: int
    n_holdout: int
    calibration: dict = field(default_factory=lambda: dict(IDENTITY))


def threads(requested: int | None = None) -> int:
    """The explicit thread count to give XGBoost: the request, else the usable CPUs."""
    if requested is not None:
        return max(1, int(requested))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def check_wait_policy(nthread: int) -> None:
    """Warn when several OpenMP threads will spin-wait: OMP_WAIT_POLICY is read once, when
    XGBoost's OpenMP runtime loads, so only the process's environment can set it."""
    policy = openmp_wait_policy()
    if nthread > 1 and (policy or "").upper() != "PASSIVE":
        log.warning("training with %d threads and OMP_WAIT_POLICY=%s; on a small or busy "
                    "machine set OMP_WAIT_POLICY=PASSIVE before starting Python (training ran "
                    "several times slower without it)", nthread,
                    policy or "unset")


def holdout_split(train: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit rows and the latest `fraction` of rows by time; rows sharing the cut's timestamp
    all go to the holdout, so the two never overlap in time."""
    if not 0 < fraction < 1:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {fraction}")
    times = train[TIME]
    cut = times.quantile(1 - fraction, interpolation="lower")
    fit, holdout = train[times < cut], train[times >= cut]
    if fit.empty or holdout.empty or fit[LABEL].nunique() < 2:
        raise ValueError(f"training period too small to carve an early-stopping holdout: "
                         f"{len(fit)} fit rows, {len(holdout)} holdout rows")
    return fit, holdout


def booster_params(params: ModelParams) -> dict:
    """The xgb.train parameter dict: a calibrated binary logistic model on histogram trees."""
    p = asdict(params)
    return {
        "objective": "binary:logistic",
        "eval_metric": ["auc", "logloss"],  # the last one drives early stopping
        "tree_method": "hist",
        "max_depth": p["max_depth"],
        "eta": p["eta"],
        "min_child_weight": p["min_child_weight"],
        "subsample": p["subsample"],
        "colsample_bytree": p["colsample_bytree"],
        "lambda": p["reg_lambda"],
        "max_bin": p["max_bin"],
        "max_cat_to_onehot": p["max_cat_to_onehot"],
        "seed": p["seed"],
        "nthread": threads(p["nthread"]),
        "verbosity": 1,
    }


def fit(train: pd.DataFrame, features: list[str], params: ModelParams = DEFAULT_PARAMS,
        categories: Categories | None = None) -> FitResult:
    """Train on all but the latest part of `train`, stop when the holdout's log loss has not
    improved for `early_stopping_rounds`, and keep the booster of the best round. Features
    named in `categories` are XGBoost categories (training.categories)."""
    fit_rows, holdout = holdout_split(train, params.holdout_fraction)
    config = booster_params(params)
    check_wait_policy(config["nthread"])
    types = feature_types(features, categories)
    dfit = xgb.QuantileDMatrix(matrix(fit_rows, features, categories),
                               label=fit_rows[LABEL].to_numpy(), feature_names=list(features),
                               feature_types=types, enable_categorical=True,
                               max_bin=params.max_bin, nthread=config["nthread"])
    dhold = xgb.QuantileDMatrix(matrix(holdout, features, categories),
                                label=holdout[LABEL].to_numpy(), feature_names=list(features),
                                feature_types=types, enable_categorical=True, ref=dfit,
                                nthread=config["nthread"])
    history: dict = {}
    booster = xgb.train(
        config, dfit, num_boost_round=params.num_boost_round,
        # Only the holdout is evaluated each round: AUC over the whole fit set cost a third of
        # the training time on 600k rows.
        evals=[(dhold, "holdout")], evals_result=history, verbose_eval=False,
        callbacks=[xgb.callback.EarlyStopping(rounds=params.early_stopping_rounds,
                                              metric_name="logloss", data_name="holdout",
                                              save_best=True)],
    )
    best = int(booster.best_iteration)
    raw = booster.inplace_predict(matrix(holdout, features, categories), validate_features=False)
    return FitResult(booster, best, float(history["holdout"]["logloss"][best]),
                     len(fit_rows), len(holdout),
                     fit_calibration(raw, holdout[LABEL].to_numpy()))


def predict(booster: xgb.Booster, frame: pd.DataFrame, features: list[str],
            categories: Categories | None = None, calibration: Calibration | None = None
            ) -> np.ndarray:
    """Probabilities for `frame`'s rows, columns taken by name in model order; calibrated
    when a calibration map is given."""
    raw = booster.inplace_predict(matrix(frame, features, categories), validate_features=False)
    return apply(calibration, raw)
