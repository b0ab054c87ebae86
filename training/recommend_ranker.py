"""The ranker of recommendation lists and its rows: one row per (user, candidate item, t), the
candidates those of generators fitted on the log up to t only, the features retrieval's own
(each generator's score and rank of the item) beside the `recommend_v1` feature service's as of
t, the label whether the user carted or bought the item in (t, t + HORIZON].

Both objectives are fitted on the same rows: `rank:ndcg` with a query group per (user, t), and
`binary:logistic`; `training.recommend_training` keeps the better on a validation week.
`candidate_rows` builds the rows for training, for batch lists and (through the same candidate
dicts) for the service, so the three see one definition of a candidate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
import xgboost as xgb

from persona.recommend.rules import RuleBook
from training import calibration
from training.calibration import Calibration
from training.candidates import LIST_FEATURES, Generators, candidates, cold_candidates

HORIZON = timedelta(days=7)
OBJECTIVES = ("rank:ndcg", "binary:logistic")
ROUNDS = 200
BASE_PARAMS = {"eta": 0.1, "max_depth": 4, "min_child_weight": 1.0, "subsample": 0.8,
               "nthread": 1, "seed": 0}
EVAL_METRIC = {"rank:ndcg": "ndcg@10", "binary:logistic": "logloss"}
# Retrieval's features of a candidate, first in the ranker's inputs (then the service's).
RETRIEVAL_FEATURES = list(LIST_FEATURES.values())
KEYS = ["user_id", "item_id", "event_timestamp"]
# The rules' "already bought": the user x item history as of the list's time, offline and online.
BOUGHT = "user_item_history__pair_purchases_lifetime"
AVAILABLE = "item_availability__available"  # and "unavailable": 0 (missing: not known, kept)


def candidate_rows(generators: Generators, users: Sequence[str], size: int,
                   kept: Sequence[str], regions: Mapping[str, str] | None = None) -> pd.DataFrame:
    """user_id, item_id, source, retrieval_score, cold_user and RETRIEVAL_FEATURES for the
    candidates of `users`, as of the generators' date: the kept generators' union for a user
    they know, the user's region's popular items (`regions`: user_id -> region) otherwise."""
    users = [str(u) for u in users]
    warm = [u for u in users if u in generators.index]
    lists = dict(zip(warm, candidates(generators, warm, size, kept)))
    rows = []
    for user in users:
        cold = user not in lists
        listed = (cold_candidates(generators, (regions or {}).get(user), size) if cold
                  else lists[user])
        rows += [{"user_id": user, "item_id": c["item_id"], "source": c["source"],
                  "retrieval_score": c["score"], "cold_user": cold,
                  **{f: c[f] for f in RETRIEVAL_FEATURES}} for c in listed]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "source", "retrieval_score",
                                        "cold_user", *RETRIEVAL_FEATURES])
    frame["event_timestamp"] = pd.Series([generators.until] * len(frame),
                                         dtype="datetime64[ns, UTC]")
    return frame


def params(objective: str) -> dict:
    return {**BASE_PARAMS, "objective": objective, "eval_metric": EVAL_METRIC[objective]}


def fit_ranker(rows: pd.DataFrame, features: Sequence[str], objective: str) -> xgb.Booster:
    """`objective` fitted on labelled rows (sorted here by t and user: a query group each)."""
    if not rows["label"].any():
        raise ValueError("no candidate was carted or bought after its cut: nothing to train "
                         "the ranker on")
    rows = rows.sort_values(["event_timestamp", "user_id"], kind="stable")
    data = xgb.DMatrix(rows[list(features)].to_numpy(np.float64), label=rows["label"],
                       feature_names=list(features))
    if objective == "rank:ndcg":
        data.set_group(_groups(rows))
    return xgb.train(params(objective), data, ROUNDS)


def rank_scores(ranker: xgb.Booster, matrix: np.ndarray) -> np.ndarray:
    """The ranker's score per candidate row (higher first within a user): a probability for
    binary:logistic, a relevance for rank:ndcg."""
    return ranker.inplace_predict(np.asarray(matrix, dtype=np.float64))


def probability(relevance: np.ndarray, objective: str, fitted: Calibration | None
                ) -> np.ndarray:
    """The chance of a cart or purchase within HORIZON: binary:logistic's probability, or a
    rank:ndcg relevance through the logistic, then the calibration fitted on the validation
    week (`training.calibration`) either way."""
    raw = relevance if objective == "binary:logistic" else 1 / (1 + np.exp(-relevance))
    return calibration.apply(fitted, raw)


@dataclass(frozen=True)
class Ranker:
    """A fitted ranker as the lists use it, offline and online alike."""

    booster: xgb.Booster
    features: list[str]
    objective: str
    calibration: Calibration | None

    def scores(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The relevance (the order) and the calibrated probability of each candidate row."""
        relevance = rank_scores(self.booster, matrix)
        return relevance, probability(relevance, self.objective, self.calibration)

    @classmethod
    def of(cls, booster: xgb.Booster, metadata: Mapping) -> Ranker:
        """A stored ranker from its metadata (`persona train --task recommend`)."""
        return cls(booster, list(metadata["features"]), metadata["objective"],
                   metadata.get("calibration"))


def apply_rules(rules: RuleBook, ranked: Sequence[Mapping], k: int,
                info: Mapping[str, Mapping], exclude: Sequence[str] = ()) -> list[dict]:
    """The rules over one user's candidates, best first, each with its BOUGHT and AVAILABLE
    features: "already bought" is a purchase count above 0 and "unavailable" a flag of 0 (a
    missing value is neither), online, in batch and in the report alike."""
    owned = [c["item_id"] for c in ranked if c[BOUGHT] > 0]
    gone = [c["item_id"] for c in ranked if c[AVAILABLE] == 0]
    return rules.apply(ranked, k, info, bought=owned, exclude=exclude, unavailable=gone)


def _groups(rows: pd.DataFrame) -> np.ndarray:
    """Sizes of the runs of one (t, user): a query group each, rows kept together."""
    key = rows["event_timestamp"].astype("int64").astype(str) + "\x1f" + rows["user_id"]
    run = (key != key.shift()).cumsum()
    return run.groupby(run, sort=False).size().to_numpy()
