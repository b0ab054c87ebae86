"""The ranker of recommendation lists: XGBoost `rank:ndcg`, one query group per (user, period),
over the candidates retrieval proposes, trained on what it will see in production.

Rows are (user, candidate, t): the candidates of generators fitted on the log up to t only, the
label whether the user carted or bought the item in (t, t + HORIZON]. Training uses PERIODS
weekly cuts t before `until`, so every label ends at or before `until` and no future reaches a
candidate or a feature. `candidate_frame` builds the rows for training and for the lists alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
import xgboost as xgb

from training.candidates import GENERATORS, Generators, candidates, fit, future_items

HORIZON = timedelta(days=7)
PERIODS = 3
ROUNDS = 200
PARAMS = {"objective": "rank:ndcg", "eta": 0.1, "max_depth": 4, "eval_metric": "ndcg@10",
          "nthread": 1, "seed": 0}
FEATURES = [*(f"{g}_{what}" for g in GENERATORS for what in ("score", "rank")),
            "bought_before", "interactions_before"]


@dataclass(frozen=True)
class History:
    """Per (user, item), from the log up to a date: purchases and interactions of any kind."""

    bought: pd.Series
    touched: pd.Series

    @classmethod
    def of(cls, events: pd.DataFrame, until: pd.Timestamp) -> History:
        seen = events[events["event_timestamp"] <= until]
        return cls(seen[seen["event_type"] == "purchase"].groupby(["user_id", "item_id"]).size(),
                   seen.groupby(["user_id", "item_id"]).size())

    def bought_items(self) -> dict[str, set[str]]:
        """user_id -> the items they bought."""
        return self.bought.reset_index().groupby("user_id")["item_id"].agg(set).to_dict()


def candidate_frame(generators: Generators, history: History, users: Sequence[str],
                    size: int, kept: Sequence[str] = GENERATORS) -> pd.DataFrame:
    """user_id, item_id, source, retrieval_score and FEATURES for every candidate of `users`
    (`training.candidates.candidates`), with their `history` (of the log up to the
    generators' date)."""
    users = [str(u) for u in users]
    rows = [{"user_id": user, "item_id": c["item_id"], "source": c["source"],
             "retrieval_score": c["score"], **{f: c[f] for f in FEATURES[:-2]}}
            for user, listed in zip(users, candidates(generators, users, size, kept))
            for c in listed]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "source", "retrieval_score",
                                        *FEATURES[:-2]])
    pairs = pd.MultiIndex.from_frame(frame[["user_id", "item_id"]])
    frame["bought_before"] = history.bought.reindex(pairs).fillna(0).to_numpy()
    frame["interactions_before"] = history.touched.reindex(pairs).fillna(0).to_numpy()
    return frame


def fit_ranker(events: pd.DataFrame, items: pd.Series, until: pd.Timestamp, size: int,
               kept: Sequence[str] = GENERATORS) -> xgb.Booster:
    """The ranker trained on PERIODS weekly cuts before `until` (labels end by `until`)."""
    frames = []
    for n in range(PERIODS, 0, -1):
        start = until - n * HORIZON
        truth = future_items(events, start, start + HORIZON)
        users = sorted(events.loc[events["event_timestamp"] <= start, "user_id"].unique())
        frame = candidate_frame(fit(events, items, start), History.of(events, start), users,
                                size, kept)
        frame["label"] = [int(i in truth.get(u, ())) for u, i in
                          zip(frame["user_id"], frame["item_id"])]
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True)
    if not rows["label"].any():
        raise ValueError(f"no candidate was carted or bought in the {PERIODS} weeks before "
                         f"{until.isoformat()}: nothing to train the ranker on")
    data = xgb.DMatrix(rows[FEATURES], label=rows["label"])
    data.set_group(_groups(rows["user_id"]))
    return xgb.train(PARAMS, data, ROUNDS)


def rank_scores(ranker: xgb.Booster, frame: pd.DataFrame) -> np.ndarray:
    """The ranker's relevance per candidate row (higher first within a user)."""
    return ranker.inplace_predict(frame[FEATURES].to_numpy(np.float64))


def _groups(users: pd.Series) -> np.ndarray:
    """Sizes of the runs of one user: a query group per (user, period), rows kept together."""
    run = (users != users.shift()).cumsum()
    return run.groupby(run, sort=False).size().to_numpy()
