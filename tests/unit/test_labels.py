"""Conversion labels from hand-built event logs: what counts as a conversion, and what is
unknown."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from training.labels import COLUMNS, LabelError, conversion_labels

T0 = pd.Timestamp("2026-09-01 12:00", tz="UTC")
DAY = pd.Timedelta(days=1)
ITEMS = pd.DataFrame({"item_id": ["i1", "i2"], "category": ["books", "toys"]})


def log(*rows: tuple[str, str, str, pd.Timestamp]) -> pd.DataFrame:
    """Events from (user, item, type, time) rows, plus a late event by another user so the
    log is observed well past every view's horizon unless a test says otherwise."""
    rows = (*rows, ("zz", "i2", "cart", T0 + 30 * DAY))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "event_timestamp"])


def label_of(events: pd.DataFrame, **kwargs) -> list[int]:
    return conversion_labels(events, ITEMS, **kwargs)["label"].tolist()


@pytest.mark.parametrize("delay, expected", [
    (pd.Timedelta(seconds=1), 1),
    (3 * DAY, 1),
    (7 * DAY, 1),  # the boundary is inside the horizon
    (7 * DAY + pd.Timedelta(seconds=1), 0),
    (pd.Timedelta(0), 0),  # a purchase at the very instant of the view is not after it
    (-DAY, 0),  # a purchase before the view is not a conversion of that view
])
def test_purchase_of_same_item_within_horizon(delay: pd.Timedelta, expected: int) -> None:
    events = log(("u1", "i1", "view", T0), ("u1", "i1", "purchase", T0 + delay))
    assert label_of(events) == [expected]


@pytest.mark.parametrize("buyer, bought", [("u2", "i1"), ("u1", "i2")])
def test_other_users_or_other_items_purchase_does_not_count(buyer: str, bought: str) -> None:
    events = log(("u1", "i1", "view", T0), (buyer, bought, "purchase", T0 + DAY))
    labels = conversion_labels(events, ITEMS)
    first = labels[(labels.user_id == "u1") & (labels.item_id == "i1")]
    assert first["label"].tolist() == [0]


def test_cart_is_not_a_purchase() -> None:
    events = log(("u1", "i1", "view", T0), ("u1", "i1", "cart", T0 + DAY))
    assert label_of(events) == [0]


def test_later_purchase_after_an_early_one_outside_horizon_still_counts_for_later_view() -> None:
    events = log(("u1", "i1", "view", T0), ("u1", "i1", "view", T0 + 9 * DAY),
                 ("u1", "i1", "purchase", T0 + 10 * DAY))
    assert label_of(events) == [0, 1]


def test_columns_category_and_types() -> None:
    events = log(("u1", "i2", "view", T0), ("u1", "i2", "purchase", T0 + DAY))
    labels = conversion_labels(events, ITEMS)
    assert list(labels.columns) == COLUMNS
    assert labels.loc[0, "category"] == "toys"
    assert labels["label"].dtype == "int64"
    assert labels.loc[0, "event_timestamp"] == T0


def test_identical_views_are_deduplicated() -> None:
    events = log(("u1", "i1", "view", T0), ("u1", "i1", "view", T0), ("u1", "i1", "view", T0 + DAY))
    labels = conversion_labels(events, ITEMS)
    assert labels["event_timestamp"].tolist() == [T0, T0 + DAY]


def test_views_with_unobserved_horizon_are_dropped() -> None:
    events = log(("u1", "i1", "view", T0), ("u1", "i1", "view", T0 + 23 * DAY),
                 ("u1", "i1", "view", T0 + 24 * DAY))  # log ends at T0 + 30 days
    labels = conversion_labels(events, ITEMS)
    assert labels["event_timestamp"].tolist() == [T0, T0 + 23 * DAY]  # 23 + 7 = 30 is kept


def test_horizon_is_configurable() -> None:
    events = log(("u1", "i1", "view", T0), ("u1", "i1", "purchase", T0 + 2 * DAY))
    assert label_of(events, horizon=timedelta(days=1)) == [0]
    assert label_of(events, horizon=timedelta(days=2)) == [1]


def test_events_after_until_change_nothing() -> None:
    until = T0 + 10 * DAY
    base = log(("u1", "i1", "view", T0), ("u1", "i1", "view", T0 + 2 * DAY),
               ("u2", "i2", "view", T0 + 3 * DAY), ("u2", "i2", "purchase", T0 + 9 * DAY))
    later = pd.concat([base, log(
        ("u1", "i1", "purchase", until + pd.Timedelta(seconds=1)),  # would convert the 2nd view
        ("u1", "i1", "view", until + DAY),
        ("u3", "i1", "view", T0 + 40 * DAY))], ignore_index=True)
    expected = conversion_labels(base, ITEMS, until=until)
    actual = conversion_labels(later, ITEMS, until=until)
    pd.testing.assert_frame_equal(actual, expected)
    assert expected["label"].tolist() == [0, 0, 1]
    assert expected["event_timestamp"].max() + 7 * DAY <= until


def test_until_defaults_to_last_event_and_accepts_naive_utc() -> None:
    events = log(("u1", "i1", "view", T0))
    naive = (T0 + 30 * DAY).tz_localize(None)
    pd.testing.assert_frame_equal(conversion_labels(events, ITEMS, until=naive),
                                  conversion_labels(events, ITEMS))


def test_no_views_is_a_clear_error() -> None:
    events = log(("u1", "i1", "purchase", T0))
    with pytest.raises(LabelError, match="needs view events"):
        conversion_labels(events, ITEMS)
    with pytest.raises(LabelError, match="needs view events"):
        conversion_labels(events.iloc[:0], ITEMS)


def test_no_fully_observed_view_is_a_clear_error() -> None:
    events = log(("u1", "i1", "view", T0 + 29 * DAY))
    with pytest.raises(LabelError, match="fully observed"):
        conversion_labels(events, ITEMS)


def test_view_of_item_missing_from_catalogue_is_an_error() -> None:
    events = log(("u1", "i9", "view", T0))
    with pytest.raises(LabelError, match="missing from the catalogue"):
        conversion_labels(events, ITEMS)
