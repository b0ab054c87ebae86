"""The ranker of recommendation lists (training/recommend_ranker.py) and the list metrics
(training/recommend_metrics.py) on a small generated shop, without a feature store: candidate
rows hold only the past, query groups keep each (t, user) together, cold users get popular
items, the ranker on retrieval's own features finds more of next week's items than popularity,
and the metrics match hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from persona.recommend.rules import RuleBook
from persona.synthetic_shop import generate_shop
from training.candidates import fit, future_items
from training.recommend_metrics import item_knn, list_metrics
from training.recommend_ranker import (
    AVAILABLE,
    BOUGHT,
    OBJECTIVES,
    RETRIEVAL_FEATURES,
    Ranker,
    _groups,
    apply_rules,
    candidate_rows,
    fit_ranker,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def shop():
    return generate_shop(600, 150, 40, seed=5)


def test_groups_are_runs_of_one_user_at_one_time() -> None:
    t0, t1 = pd.Timestamp("2026-01-01", tz="UTC"), pd.Timestamp("2026-01-08", tz="UTC")
    rows = pd.DataFrame({"user_id": ["a", "a", "b", "a", "a", "a"],
                         "event_timestamp": [t0, t0, t0, t0, t1, t1]})
    assert _groups(rows).tolist() == [2, 1, 1, 2]


def test_rows_hold_only_the_past_and_cold_users_get_popular_items(shop) -> None:
    events = shop.events
    cut = events["event_timestamp"].max() - pd.Timedelta(days=10)
    users = [*sorted(events.loc[events["event_timestamp"] <= cut, "user_id"].unique())[:40],
             "nobody"]
    frame = candidate_rows(fit(events, shop.items["item_id"], cut), users, 50, ("als",))
    before = events[events["event_timestamp"] <= cut]
    past = candidate_rows(fit(before, shop.items["item_id"], cut), users, 50, ("als",))
    pd.testing.assert_frame_equal(frame, past)
    assert frame.groupby("user_id").size().max() == 50
    cold = frame[frame["user_id"] == "nobody"]
    assert cold["cold_user"].all() and set(cold["source"]) == {"popularity"}
    assert not frame.loc[frame["user_id"] != "nobody", "cold_user"].any()
    assert (frame["event_timestamp"] == cut).all()


def _labelled(events: pd.DataFrame, items: pd.Series, cut: pd.Timestamp) -> pd.DataFrame:
    truth = future_items(events, cut, cut + pd.Timedelta(days=7))
    rows = candidate_rows(fit(events, items, cut), sorted(truth), 50, ("als", "item2vec"))
    rows["label"] = [int(i in truth[u]) for u, i in zip(rows["user_id"], rows["item_id"])]
    return rows


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_the_ranker_finds_more_than_popularity(shop, objective: str) -> None:
    events, items = shop.events, shop.items["item_id"]
    end = events["event_timestamp"].max()
    test_cut = end - pd.Timedelta(days=7)
    train = pd.concat([_labelled(events[events["event_timestamp"] <= test_cut], items,
                                 test_cut - pd.Timedelta(days=7 * n)) for n in (1, 2, 3)])
    booster = fit_ranker(train, RETRIEVAL_FEATURES, objective)
    ranker = Ranker(booster, RETRIEVAL_FEATURES, objective, None)
    test = _labelled(events, items, test_cut)
    relevance, probability = ranker.scores(test[RETRIEVAL_FEATURES].to_numpy(np.float64))
    assert ((probability >= 0) & (probability <= 1)).all()
    test = test.assign(relevance=relevance)
    truth = future_items(events, test_cut, end)
    lists = {u: g.sort_values("relevance", ascending=False)["item_id"].tolist()
             for u, g in test.groupby("user_id")}
    generators = fit(events, items, test_cut)
    (popular,) = generators.top("popularity", [""], 20)
    baseline = {u: [i for i, _ in popular] for u in truth}
    ours = list_metrics(lists, truth, len(items), set())
    theirs = list_metrics(baseline, truth, len(items), set())
    assert ours["recall@10"] > theirs["recall@10"], (ours, theirs)


def test_list_metrics_by_hand() -> None:
    lists = {"u": ["a", "x", "b"], "v": ["y"], "w": []}
    truth = {"u": {"a", "b"}, "v": {"c"}}
    m = list_metrics(lists, truth, catalogue=10, popular={"a", "y"})
    assert m["recall@10"] == pytest.approx((1.0 + 0.0) / 2)
    assert m["hit_rate@10"] == pytest.approx(0.5)
    dcg = 1 + 1 / math.log2(4)
    assert m["ndcg@10"] == pytest.approx((dcg / (1 + 1 / math.log2(3)) + 0) / 2)
    assert m["map@10"] == pytest.approx(((1 + 2 / 3) / 2 + 0) / 2)
    assert m["coverage@10"] == pytest.approx(4 / 10)
    assert m["popular_share@10"] == pytest.approx(2 / 4)


def test_item_knn_votes_for_what_the_same_users_saw() -> None:
    t = pd.Timestamp("2026-01-01", tz="UTC")
    events = pd.DataFrame({"user_id": ["a", "a", "b", "b", "c"],
                           "item_id": ["i1", "i2", "i1", "i2", "i1"],
                           "event_timestamp": [t] * 5})
    lists = item_knn(events, np.array(["i1", "i2", "i3"]), t, ["c", "nobody"], 2)
    assert lists == {"c": ["i2"]}


def test_rules_read_bought_and_unavailable_off_the_features() -> None:
    """A purchase count above 0 is bought, a flag of 0 unavailable; missing values are
    neither (an item the store does not know yet is kept)."""
    nan = float("nan")
    ranked = [{"item_id": i, "score": 0.5, BOUGHT: b, AVAILABLE: a}
              for i, b, a in (("a", 0, 1), ("b", 2, 1), ("c", nan, 0), ("d", nan, nan))]
    kept = apply_rules(RuleBook(), ranked, 10, {})
    assert [c["item_id"] for c in kept] == ["a", "d"]
    lenient = RuleBook(exclude_bought=False, exclude_unavailable=False)
    assert len(apply_rules(lenient, ranked, 10, {}, exclude=["a"])) == 3
