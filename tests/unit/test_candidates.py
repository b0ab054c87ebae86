"""Candidate generators (training/candidates.py) on small logs: the union's order and size, the
arrays' round trip, what each generator knows, and that no event after the cut is read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from persona.synthetic_shop import generate_shop
from training.candidates import (
    GENERATORS,
    Generators,
    candidates,
    fit,
    future_items,
    recall,
    union,
)


def test_union_takes_turns_keeps_the_first_proposer_and_stops_at_size() -> None:
    lists = {"als": [("a", 0.9), ("b", 0.8), ("c", 0.7)],
             "item2vec": [("b", 0.5), ("d", 0.4)],
             "popularity": [("e", 9.0), ("a", 8.0)]}
    got = union(lists, 4)
    assert [(c["item_id"], c["source"], c["rank"]) for c in got] == [
        ("a", "als", 1), ("b", "item2vec", 1), ("e", "popularity", 1), ("d", "item2vec", 2)]
    assert [c["item_id"] for c in union(lists, 10)] == ["a", "b", "e", "d", "c"]
    assert union({}, 5) == []


@pytest.fixture(scope="module")
def shop():
    return generate_shop(600, 150, 40, seed=5)


@pytest.fixture(scope="module")
def split(shop):
    end = shop.events["event_timestamp"].max()
    cut = end - pd.Timedelta(days=7)
    return cut, end, fit(shop.events, shop.items["item_id"], cut)


def test_no_event_after_the_cut_changes_a_generator(shop, split) -> None:
    cut, _, fitted = split
    before = shop.events[shop.events["event_timestamp"] <= cut]
    again = fit(before, shop.items["item_id"], cut)
    for name in ("users", "items", "user_factors", "item_factors", "popularity"):
        np.testing.assert_array_equal(fitted.arrays()[name], again.arrays()[name], name)
    assert set(fitted.users) == set(before["user_id"])  # nobody first seen after the cut


def test_arrays_round_trip_and_unknown_users_get_popularity_only(split) -> None:
    _, _, fitted = split
    arrays = fitted.arrays()
    assert all(a.dtype != object for a in arrays.values())  # np.save without pickle
    back = Generators.from_arrays(arrays)
    user = str(fitted.users[0])
    assert back.top("als", [user], 5) == fitted.top("als", [user], 5)
    assert back.until == fitted.until
    assert fitted.top("als", ["no-such-user", user], 5)[0] == []
    assert fitted.top("item2vec", ["no-such-user"], 5) == [[]]
    (popular,) = fitted.top("popularity", ["no-such-user"], 5)
    assert [s for _, s in popular] == sorted(fitted.popularity, reverse=True)[:5]


def test_a_shorter_list_is_the_head_of_a_longer_one_ties_included(split) -> None:
    """Top lists break ties by catalogue order, so recall@50 is measured on the head of the
    200-item list, not on another draw among tied items (popularity has many at zero)."""
    _, _, fitted = split
    users = [str(u) for u in fitted.users[:20]]
    for name in GENERATORS:
        for short, long in zip(fitted.top(name, users, 50), fitted.top(name, users, 200)):
            assert short == long[:50]
            assert [s for _, s in long] == sorted((s for _, s in long), reverse=True)


def test_candidates_carry_every_generators_score_and_rank(split) -> None:
    _, _, fitted = split
    users = [str(fitted.users[0]), "no-such-user"]
    known, cold = candidates(fitted, users, 30)
    assert len(known) == 30 and len({c["item_id"] for c in known}) == 30
    for c in known:
        assert c[f"{c['source']}_score"] == c["score"]
        assert c[f"{c['source']}_rank"] == c["rank"]
    assert {c["source"] for c in cold} == {"popularity"}
    assert all(np.isnan(c["als_score"]) and np.isnan(c["als_rank"]) for c in cold)


def test_neighbours_are_the_nearest_other_items(split) -> None:
    _, _, fitted = split
    items, lists = fitted.neighbours(5)
    assert len(items) == len(lists) > 0
    vectors = dict(zip(fitted.items, fitted.item_vectors))
    for item, listed in zip(items[:10], lists[:10]):
        assert item not in {i for i, _ in listed} and len(listed) == 5
        cosines = {other: float(vectors[item] @ v) for other, v in vectors.items()
                   if other != item and v.any()}
        best = sorted(cosines.values(), reverse=True)[:5]
        np.testing.assert_allclose([s for _, s in listed], best, rtol=1e-5)


def test_collaborative_filtering_finds_more_than_popularity(shop, split) -> None:
    """On the week after the cut, the carted or bought items of each user: ALS alone and the
    union of all three recall more than the most popular items."""
    cut, end, fitted = split
    truth = future_items(shop.events, cut, end)
    assert len(truth) > 20
    popular = recall(fitted, truth, 20, ["popularity"])
    assert recall(fitted, truth, 20, ["als"]) > popular + 0.1
    assert recall(fitted, truth, 20, GENERATORS) > popular
