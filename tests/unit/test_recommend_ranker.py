"""The ranker of recommendation lists (training/recommend_ranker.py) on a small generated shop:
its rows hold only the past, its query groups keep each user's rows together, and its order
finds more of next week's items than popularity does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from persona.synthetic_shop import generate_shop
from training.candidates import fit, future_items
from training.recommend_ranker import (
    FEATURES,
    History,
    _groups,
    candidate_frame,
    fit_ranker,
    rank_scores,
)


@pytest.fixture(scope="module")
def shop():
    return generate_shop(600, 150, 40, seed=5)


def test_groups_are_runs_of_one_user() -> None:
    assert _groups(pd.Series(["a", "a", "b", "a", "a", "a"])).tolist() == [2, 1, 3]


def test_rows_hold_only_the_past(shop) -> None:
    events = shop.events
    cut = events["event_timestamp"].max() - pd.Timedelta(days=10)
    users = sorted(events.loc[events["event_timestamp"] <= cut, "user_id"].unique())[:40]
    frame = candidate_frame(fit(events, shop.items["item_id"], cut), History.of(events, cut),
                            users, 50)
    before = events[events["event_timestamp"] <= cut]
    past = candidate_frame(fit(before, shop.items["item_id"], cut), History.of(before, cut),
                           users, 50)
    pd.testing.assert_frame_equal(frame[["user_id", "item_id", *FEATURES[:-2]]],
                                  past[["user_id", "item_id", *FEATURES[:-2]]])
    np.testing.assert_array_equal(frame["interactions_before"], past["interactions_before"])
    assert frame.groupby("user_id").size().max() == 50


def test_the_ranker_finds_more_than_popularity(shop) -> None:
    events = shop.events
    end = events["event_timestamp"].max()
    cut = end - pd.Timedelta(days=7)
    known = events[events["event_timestamp"] <= cut]
    ranker = fit_ranker(known, shop.items["item_id"], cut, 50)
    truth = future_items(events, cut, end)
    frame = candidate_frame(fit(known, shop.items["item_id"], cut), History.of(known, cut),
                            sorted(truth), 50)
    frame["relevance"] = rank_scores(ranker, frame)
    top = (frame.sort_values(["user_id", "relevance"], ascending=[True, False])
           .groupby("user_id").head(10).groupby("user_id")["item_id"].agg(set))
    popular = set(frame[frame["source"] == "popularity"]
                  .sort_values("retrieval_score", ascending=False)["item_id"].unique()[:10])
    ranked = np.mean([len(top.get(u, set()) & t) / len(t) for u, t in truth.items()])
    baseline = np.mean([len(popular & t) / len(t) for t in truth.values()])
    assert ranked > baseline, (ranked, baseline)
