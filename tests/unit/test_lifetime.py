"""The lifetime tables against hand-computed values: exact to the event (strictly before a row's
time, the same day's earlier events included), never expiring, priors, purchase rhythm, and the
recency transforms on top of them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_repo.transforms import user_item_recency, user_recency
from persona.core.schema import FEATURE_TABLES, REQUEST_TIME, epoch_seconds
from persona.data.raw import RawTables
from persona.data.snapshots import compute_features

T = pd.Timestamp
DAY = 86_400.0


def _raw(rows: list[tuple], users: tuple[str, ...] = ("u1", "u2", "u3")) -> RawTables:
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "event_timestamp",
                                         "quantity", "price"])
    events["event_timestamp"] = pd.to_datetime(events["event_timestamp"], utc=True,
                                               format="ISO8601")
    people = pd.DataFrame({"user_id": list(users),
                           "signup_timestamp": pd.to_datetime(["2025-12-01"] * len(users),
                                                              utc=True),
                           "age_band": None, "gender": None, "region": None,
                           "membership_level": None})
    items = pd.DataFrame({"item_id": ["i1", "i2"], "category": ["shoes", "books"],
                          "brand": ["b"] * 2, "list_price": [10.0, 5.0],
                          "created_timestamp": pd.to_datetime(["2025-11-01"] * 2, utc=True)})
    return RawTables(events, people, items, {})


LOG = [
    ("u1", "i1", "view", "2026-01-01T10:00:00Z", 1, 10.0),
    ("u1", "i1", "view", "2026-01-01T14:00:00Z", 1, 10.0),
    ("u1", "i1", "purchase", "2026-01-01T14:05:00Z", 2, 10.0),
    ("u1", "i1", "purchase", "2026-01-01T18:00:00Z", 1, 10.0),  # the same purchase day
    ("u1", "i2", "purchase", "2026-01-11T09:00:00Z", 1, 5.0),
    ("u1", "i2", "purchase", "2026-01-31T09:00:00Z", 1, 5.0),
    ("u2", "i1", "view", "2026-01-03T00:00:00Z", 1, 10.0),
]


def as_of(table: pd.DataFrame, when: str, **keys) -> pd.Series:
    """Feast's point-in-time rule by hand: the latest row at or before `when`."""
    mask = table["event_timestamp"] <= T(when, tz="UTC")
    for key, value in keys.items():
        mask &= table[key] == value
    rows = table[mask]
    assert len(rows), f"no row at or before {when} for {keys}"
    return rows.sort_values("event_timestamp").iloc[-1]


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return compute_features(_raw(LOG), prior_strength=10.0)


def test_a_row_holds_the_events_strictly_before_it_the_same_days_earlier_ones_included(
        tables: dict[str, pd.DataFrame]) -> None:
    users = tables["user_lifetime"]
    assert as_of(users, "2026-01-01T13:00:00Z", user_id="u1")["views_lifetime"] == 1
    assert as_of(users, "2026-01-01T14:00:00Z", user_id="u1")["views_lifetime"] == 1  # not itself
    assert as_of(users, "2026-01-01T14:00:00.000001Z", user_id="u1")["views_lifetime"] == 2
    pair = as_of(tables["user_item_history"], "2026-01-01T14:04:00Z", user_id="u1", item_id="i1")
    assert (pair["pair_views_lifetime"], pair["pair_purchases_lifetime"]) == (2, 0)
    assert pair["pair_last_view_at"] == epoch_seconds(pd.Series([T("2026-01-01T14:00Z")]))[0]


def test_a_user_quiet_for_a_year_keeps_counts_and_recency(
        tables: dict[str, pd.DataFrame]) -> None:
    row = as_of(tables["user_lifetime"], "2027-02-01T09:00:00Z", user_id="u1")
    assert (row["purchases_lifetime"], row["purchase_days_lifetime"]) == (4, 3)
    assert row["spend_lifetime"] == pytest.approx(40.0)
    recency = user_recency(pd.DataFrame([row]).assign(
        **{REQUEST_TIME: epoch_seconds(pd.Series([T("2027-01-31T09:00Z")]))}))
    assert recency["days_since_latest_purchase"].iloc[0] == pytest.approx(365.0)
    assert recency["days_since_signup"].iloc[0] == pytest.approx(
        (T("2027-01-31T09:00Z") - T("2025-12-01T00:00Z")) / pd.Timedelta(days=1))


def test_purchase_rhythm_counts_days_not_purchases(tables: dict[str, pd.DataFrame]) -> None:
    row = as_of(tables["user_lifetime"], "2026-02-01", user_id="u1")
    assert row["mean_purchase_gap_days"] == pytest.approx(15.0)  # days 1, 11 and 31 of January
    assert row["last_purchase_gap_days"] == pytest.approx(20.0)
    before = as_of(tables["user_lifetime"], "2026-01-05", user_id="u1")
    assert np.isnan(before["mean_purchase_gap_days"]) and np.isnan(before["last_purchase_gap_days"])
    ratio = user_recency(pd.DataFrame([row]).assign(
        **{REQUEST_TIME: row["last_purchase_at"] + 30 * DAY}))["recency_to_gap_ratio"].iloc[0]
    assert ratio == pytest.approx(2.0)


def test_every_user_and_item_has_a_row_from_sign_up_or_creation(
        tables: dict[str, pd.DataFrame]) -> None:
    quiet = tables["user_lifetime"][tables["user_lifetime"]["user_id"] == "u3"]
    assert len(quiet) == 1 and quiet["event_timestamp"].iloc[0] == T("2025-12-01", tz="UTC")
    assert (quiet[["views_lifetime", "purchases_lifetime"]] == 0).all(axis=None)
    first = as_of(tables["item_lifetime"], "2025-11-02", item_id="i2")
    assert first["item_views_lifetime"] == 0 and first["item_conversion_prior"] == 0.0


def test_priors_shrink_towards_the_shops_rate_up_to_then(
        tables: dict[str, pd.DataFrame]) -> None:
    # up to u2's view the shop had 3 views and 2 purchases: rate 2 / 3; u2 has 1 view and
    # no purchase: (0 + 10 * 2/3) / (1 + 10)
    u2 = as_of(tables["user_lifetime"], "2026-01-04", user_id="u2")
    assert u2["conversion_prior"] == pytest.approx(10 * 2 / 3 / 11)
    item = as_of(tables["item_lifetime"], "2026-01-02", item_id="i1")
    assert (item["item_views_lifetime"], item["item_purchases_lifetime"],
            item["item_buyers_lifetime"]) == (2, 2, 1)
    assert item["item_conversion_prior"] == pytest.approx((2 + 10 * 1.0) / (2 + 10))
    assert all(0 <= t[c.name].min() and t[c.name].max() <= 1
               for name, t in tables.items() if name in FEATURE_TABLES
               for c in FEATURE_TABLES[name].columns if c.kind.value == "rate")


def test_later_events_change_no_earlier_lifetime_row() -> None:
    cut = T("2026-01-11T00:00:00Z")
    later = [("u2", "i2", "purchase", "2026-01-20T00:00:00Z", 1, 5.0),
             ("u3", "i1", "view", "2026-01-12T00:00:00Z", 1, 10.0)]
    before, after = compute_features(_raw(LOG)), compute_features(_raw(LOG + later))
    for view in ("user_lifetime", "item_lifetime", "user_category_lifetime", "user_item_history"):
        old = before[view][before[view]["event_timestamp"] <= cut].reset_index(drop=True)
        new = after[view][after[view]["event_timestamp"] <= cut].reset_index(drop=True)
        pd.testing.assert_frame_equal(old, new, obj=view)


def test_pair_recency_is_missing_for_what_the_user_never_did(
        tables: dict[str, pd.DataFrame]) -> None:
    pair = as_of(tables["user_item_history"], "2026-01-05", user_id="u2", item_id="i1")
    days = user_item_recency(pd.DataFrame([pair]).assign(
        **{REQUEST_TIME: epoch_seconds(pd.Series([T("2026-01-05T00:00Z")]))}))
    assert days["days_since_pair_view"].iloc[0] == pytest.approx(2.0)
    assert days[["days_since_pair_cart", "days_since_pair_purchase"]].isna().all(axis=None)
