"""What differs between Persona's two training tasks, in one place: how rows are labelled, what
identifies a row, the default horizon, the baselines and the words of the report.

The model name and feature service of each task live in `persona.core.catalog.MODELS` (serving reads
that table too); this module adds only what training needs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import pandas as pd

from persona.core.catalog import MODELS, ModelSpec
from persona.data.raw import RawTables
from training.bgnbd import FEATURES as BGNBD_FEATURES
from training.evaluate import (
    BG_NBD,
    CONVERSION_BASELINES,
    PROPENSITY_BASELINES,
    Baseline,
    FittedBaseline,
    bgnbd_on,
    prior_baselines,
)
from training.labels import conversion_labels, propensity_labels
from training.model import DEFAULT_PARAMS, SHALLOW_PARAMS, ModelParams
from training.retrieval import CONVERSION_ROWS, PROPENSITY_ROWS, EntityRows

# (raw tables, horizon, until, snapshot interval, snapshot spacing) -> labelled entity rows
Labeller = Callable[[RawTables, timedelta, pd.Timestamp | None, timedelta, timedelta],
                    pd.DataFrame]


@dataclass(frozen=True)
class TrainingTask:
    """One task as training sees it."""

    model: ModelSpec
    rows: EntityRows
    default_horizon_days: int
    label: Labeller
    baselines: dict[str, Baseline]
    per_user_ranking: bool  # several rows per user and moment: NDCG@10 means something
    title: str
    positive: str  # completes "a row is positive when ..."; {h} is the horizon in days
    baselines_text: str
    # the smoothed priors (and, for propensity, RFM-style lifetime features) the fitted
    # baselines use alone, when the frame has them
    prior_features: tuple[str, ...] = ()
    params: ModelParams = DEFAULT_PARAMS  # the booster's defaults for this task
    buy_till_you_die: bool = False  # a BG/NBD baseline when the frame has its features

    def fitted_baselines(self, features: Sequence[str], horizon_days: int
                         ) -> dict[str, FittedBaseline]:
        """The baselines fitted on the prior features, when `features` include them all, and
        for a buy-till-you-die task the BG/NBD model of purchases within the horizon."""
        fitted: dict[str, FittedBaseline] = {}
        if self.prior_features and set(self.prior_features) <= set(features):
            fitted.update(prior_baselines(self.prior_features, self.params))
        if self.buy_till_you_die and set(BGNBD_FEATURES) <= set(features):
            fitted[BG_NBD] = bgnbd_on(horizon_days)
        return fitted

    @property
    def name(self) -> str:
        return self.model.task

    @property
    def service(self) -> str:
        """The task's default feature service."""
        return self.model.feature_service

    def feature_service(self, name: str | None = None) -> str:
        """`name` if it is a version of the task's feature service (`conversion_v2` for
        conversion), else a ValueError; the default service when None."""
        if name is None:
            return self.service
        family = self.service.rsplit("_v", 1)[0]
        if not re.fullmatch(rf"{re.escape(family)}_v\d+", name):
            raise ValueError(f"feature service {name!r} is not a version of {family} (the "
                             f"{self.name} task's features, e.g. {self.service})")
        return name


def _conversion(raw: RawTables, horizon: timedelta, until: pd.Timestamp | None,
                interval: timedelta, every: timedelta) -> pd.DataFrame:
    return conversion_labels(raw.events, raw.items, horizon, until)


def _propensity(raw: RawTables, horizon: timedelta, until: pd.Timestamp | None,
                interval: timedelta, every: timedelta) -> pd.DataFrame:
    return propensity_labels(raw.events, horizon, until, interval, every)


TRAINING_TASKS: dict[str, TrainingTask] = {
    "conversion": TrainingTask(
        model=MODELS["conversion"], rows=CONVERSION_ROWS, default_horizon_days=7,
        label=_conversion, baselines=CONVERSION_BASELINES, per_user_ranking=True,
        title="Conversion model",
        positive="a view is positive when the same user buys the item within {h} days",
        baselines_text="`item_popularity` ranks by the item's smoothed 30-day conversion rate; "
                       "`user_activity` by the user's 30-day purchases, then 7-day views; with "
                       "the v2 features, `priors_logistic` and `priors_xgboost` are a logistic "
                       "regression and an XGBoost on the smoothed priors alone (item, user, "
                       "user x category, the item's 30-day rate).",
        prior_features=("item_lifetime__item_conversion_prior", "user_lifetime__conversion_prior",
                        "user_category_lifetime__category_conversion_prior",
                        "item_popularity__conversion_rate_30d"),
    ),
    "propensity": TrainingTask(
        model=MODELS["propensity"], rows=PROPENSITY_ROWS, default_horizon_days=30,
        label=_propensity, baselines=PROPENSITY_BASELINES, per_user_ranking=False,
        title="Purchase-propensity model",
        positive="a user seen at or before a snapshot time T is positive when they buy "
                 "anything in (T, T + {h} days]",
        baselines_text="`rfm` is the mean of three percentile ranks per snapshot: recency (days "
                       "since the last purchase; users who never bought after every buyer, by "
                       "days since their last event), frequency (purchases in 90 days) and "
                       "monetary value (spend in 90 days); `recency` ranks by days since the "
                       "last event of any kind; with the v2 features, `priors_logistic` and "
                       "`priors_xgboost` are a logistic regression and an XGBoost on the "
                       "RFM-style lifetime features alone (days since the latest purchase and "
                       "event, purchase days, spend, the smoothed prior, recency over the "
                       "user's own gap).",
        prior_features=("user_recency__days_since_latest_purchase",
                        "user_recency__days_since_latest_event",
                        "user_lifetime__purchase_days_lifetime", "user_lifetime__spend_lifetime",
                        "user_lifetime__conversion_prior", "user_recency__recency_to_gap_ratio"),
        params=SHALLOW_PARAMS, buy_till_you_die=True,
    ),
}


def training_task(name: str) -> TrainingTask:
    """The task called `name`, or a ValueError that lists the known ones."""
    try:
        return TRAINING_TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TRAINING_TASKS)}") from None
