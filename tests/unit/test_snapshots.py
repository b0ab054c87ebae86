"""Feature computations against hand-computed values, and the point-in-time promise."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from persona.data.raw import RawTables
from persona.data.snapshots import compute_features

T = pd.Timestamp


def _raw(rows: list[tuple]) -> RawTables:
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "event_timestamp",
                                         "quantity", "price"])
    events["event_timestamp"] = pd.to_datetime(events["event_timestamp"], utc=True,
                                               format="ISO8601")
    users = pd.DataFrame({"user_id": ["u1", "u2"],
                          "signup_timestamp": pd.to_datetime(["2025-12-01"] * 2, utc=True),
                          "age_band": None, "gender": None, "region": None,
                          "membership_level": None})
    items = pd.DataFrame({"item_id": ["i1", "i2", "i3"], "category": ["shoes", "books", "shoes"],
                          "brand": ["b"] * 3, "list_price": [10.0, 5.0, 20.0],
                          "created_timestamp": pd.to_datetime(["2025-11-01"] * 3, utc=True)})
    return RawTables(events, users, items, {})


BASE = [
    ("u1", "i1", "view", "2026-01-01T10:00:00Z", 1, 10.0),
    ("u1", "i1", "cart", "2026-01-01T10:05:00Z", 1, 10.0),
    ("u1", "i1", "purchase", "2026-01-02T00:00:00Z", 2, 10.0),  # exactly at the end of Jan 1
    ("u1", "i2", "view", "2026-01-05T03:00:00Z", 1, 5.0),
    ("u2", "i1", "view", "2026-01-03T00:00:01Z", 1, 10.0),
    ("u2", "i3", "purchase", "2026-01-04T12:00:00Z", 1, 20.0),
]


def _row(frame: pd.DataFrame, when: str, **keys) -> pd.Series:
    mask = frame["event_timestamp"] == T(when, tz="UTC")
    for key, value in keys.items():
        mask &= frame[key] == value
    assert mask.sum() == 1, f"expected one row at {when} {keys}"
    return frame[mask].iloc[0]


def test_user_activity_hand_computed() -> None:
    ua = compute_features(_raw(BASE))["user_activity"]
    jan2 = _row(ua, "2026-01-02", user_id="u1")  # snapshot at the end of Jan 1 includes 00:00 Jan 2
    assert (jan2.views_1d, jan2.carts_1d, jan2.purchases_1d, jan2.spend_1d) == (1, 1, 1, 20.0)
    assert jan2.aov_90d == 20.0 and jan2.days_since_last_event == 0.0
    assert jan2.view_to_purchase_rate_90d == 1.0 and jan2.cart_to_purchase_rate_90d == 1.0
    jan3 = _row(ua, "2026-01-03", user_id="u1")
    assert (jan3.views_1d, jan3.views_7d, jan3.purchases_7d) == (0, 1, 1)
    assert jan3.days_since_last_purchase == 1.0
    jan6 = _row(ua, "2026-01-06", user_id="u1")
    assert jan6.views_7d == 2 and jan6.view_to_purchase_rate_90d == 0.5
    assert jan6.distinct_categories_90d == 2 and jan6.favourite_category == "shoes"
    assert jan6.days_since_last_event == pytest.approx(21 / 24)
    u2 = _row(ua, "2026-01-05", user_id="u2")
    assert (u2.views_7d, u2.purchases_7d, u2.spend_7d) == (1, 1, 20.0)


def test_windows_expire() -> None:
    rows = [("u1", "i1", "view", "2026-01-01T12:00:00Z", 1, 10.0),
            ("u1", "i1", "view", "2026-03-01T12:00:00Z", 1, 10.0)]
    ua = compute_features(_raw(rows))["user_activity"]
    assert _row(ua, "2026-01-08", user_id="u1").views_7d == 1
    assert _row(ua, "2026-01-09", user_id="u1").views_7d == 0
    assert _row(ua, "2026-01-31", user_id="u1").views_30d == 1
    assert _row(ua, "2026-02-01", user_id="u1").views_30d == 0
    assert _row(ua, "2026-03-02", user_id="u1").views_90d == 2


def test_item_popularity_and_affinity_hand_computed() -> None:
    features = compute_features(_raw(BASE))
    pop = features["item_popularity"]
    i1 = _row(pop, "2026-01-04", item_id="i1")
    assert (i1.views_7d, i1.carts_30d, i1.purchases_30d, i1.unique_buyers_30d) == (2, 1, 1, 1)
    assert i1.conversion_rate_30d == pytest.approx((1 + 1) / (2 + 50))
    aff = features["user_category_affinity"]
    shoes = _row(aff, "2026-01-06", user_id="u1", category="shoes")
    books = _row(aff, "2026-01-06", user_id="u1", category="books")
    assert shoes.category_events_90d == 3 and books.category_events_90d == 1
    assert shoes.category_event_share_90d == pytest.approx(0.75)
    assert shoes.category_purchase_share_90d == 1.0 and books.category_purchase_share_90d == 0.0


def test_unique_buyers_counts_each_buyer_once_for_30_days() -> None:
    rows = [("u1", "i1", "purchase", "2026-01-01T10:00:00Z", 1, 10.0),
            ("u1", "i1", "purchase", "2026-01-10T10:00:00Z", 1, 10.0),
            ("u2", "i1", "purchase", "2026-01-05T10:00:00Z", 1, 10.0),
            ("u2", "i2", "view", "2026-02-20T10:00:00Z", 1, 5.0)]  # keeps snapshots going
    pop = compute_features(_raw(rows))["item_popularity"]
    assert _row(pop, "2026-01-06", item_id="i1").unique_buyers_30d == 2
    assert _row(pop, "2026-01-11", item_id="i1").unique_buyers_30d == 2
    # u2 expired, u1 (Jan 10) not
    assert _row(pop, "2026-02-05", item_id="i1").unique_buyers_30d == 1
    # Jan 10 10:00 > Feb 9 - 30d
    assert _row(pop, "2026-02-09", item_id="i1").unique_buyers_30d == 1
    assert not ((pop["item_id"] == "i1")
                & (pop["event_timestamp"] >= T("2026-02-10", tz="UTC"))).any()


@pytest.mark.parametrize("interval", [timedelta(days=1), timedelta(hours=1)])
def test_future_event_changes_no_earlier_snapshot(interval: timedelta) -> None:
    before = compute_features(_raw(BASE), interval)
    late = BASE + [("u1", "i3", "purchase", "2026-01-04T06:30:00Z", 3, 20.0),
                   ("u2", "i2", "view", "2026-01-04T06:30:00Z", 1, 5.0)]
    after = compute_features(_raw(late), interval)
    cutoff = T("2026-01-04T06:00:00Z")
    for view in ("user_activity", "item_popularity", "user_category_affinity"):
        old = before[view][before[view]["event_timestamp"] <= cutoff].reset_index(drop=True)
        new = after[view][after[view]["event_timestamp"] <= cutoff].reset_index(drop=True)
        pd.testing.assert_frame_equal(old, new, check_dtype=False)
        assert len(old) > 0
    changed = after["user_activity"][after["user_activity"]["event_timestamp"] > cutoff]
    assert changed["purchases_90d"].max() > before["user_activity"]["purchases_90d"].max()


def test_hourly_snapshots_are_stamped_on_the_hour() -> None:
    ua = compute_features(_raw(BASE), timedelta(hours=1))["user_activity"]
    first = _row(ua, "2026-01-01T10:00:00Z", user_id="u1")  # the 10:00:00 view, at its own instant
    assert (first.views_1d, first.carts_1d) == (1, 0)
    assert _row(ua, "2026-01-01T11:00:00Z", user_id="u1").carts_1d == 1
    assert _row(ua, "2026-01-02T10:00:00Z", user_id="u1").views_1d == 0
    assert (ua["event_timestamp"].dt.minute == 0).all()
