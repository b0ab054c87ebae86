"""The user-level purchase-propensity task without a feature store: snapshot times and labels
from hand-built logs, the RFM and recency baselines, the lift and reference quantiles. Training
end to end on a generated shop is tests/integration/test_propensity.py."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from persona.core.dates import parse_horizon
from training.evaluate import recency_score, rfm_score, top_decile_lift
from training.labels import PROPENSITY_COLUMNS, LabelError, propensity_labels, snapshot_times
from training.reference import QUANTILES, reference_quantiles

DAY = pd.Timedelta(days=1)
T0 = pd.Timestamp("2026-09-01", tz="UTC")  # a snapshot time: midnight UTC, end of Aug 31
H = timedelta(days=30)


def log(*rows: tuple[str, str, pd.Timestamp]) -> pd.DataFrame:
    """Events from (user, type, time) rows, plus a late event by another user so that the log
    is observed 86 days after T0 (T0 is then a weekly snapshot) unless a test says otherwise."""
    rows = (*rows, ("zz", "view", T0 + 86 * DAY))
    frame = pd.DataFrame(rows, columns=["user_id", "event_type", "event_timestamp"])
    return frame.assign(item_id="i1")


def labels_at(events: pd.DataFrame, when: pd.Timestamp = T0, **kwargs) -> dict[str, int]:
    labels = propensity_labels(events, H, **kwargs)
    at = labels[labels["event_timestamp"] == when]
    return dict(zip(at["user_id"], at["label"]))


# --- snapshot times -------------------------------------------------------------------------

def test_snapshot_times_are_weekly_day_ends_whose_horizon_is_observed() -> None:
    until = pd.Timestamp("2026-10-20 15:30", tz="UTC")
    times = snapshot_times(pd.Timestamp("2026-07-02 08:00", tz="UTC"), until, H, DAY,
                           timedelta(days=7))
    assert times[-1] == pd.Timestamp("2026-09-20", tz="UTC")  # 09-20 + 30d = 10-20 00:00
    assert times[-1] + H <= until < times[-1] + H + DAY
    assert (times == times.normalize()).all()  # midnight UTC: the end of a day
    assert (np.diff(times.asi8) == 7 * 86_400 * 10**9).all()
    assert times[0] >= pd.Timestamp("2026-07-02 08:00", tz="UTC") > times[0] - timedelta(days=7)


def test_snapshot_times_with_hourly_interval_stay_on_day_ends() -> None:
    until = pd.Timestamp("2026-10-20 15:30", tz="UTC")
    hourly = snapshot_times(T0, until, H, timedelta(hours=1), timedelta(days=7))
    daily = snapshot_times(T0, until, H, DAY, timedelta(days=7))
    assert list(hourly) == list(daily)


def test_snapshot_times_of_a_log_shorter_than_the_horizon_are_empty() -> None:
    assert snapshot_times(T0, T0 + 20 * DAY, H, DAY, timedelta(days=7)).empty


# --- labels ---------------------------------------------------------------------------------

@pytest.mark.parametrize("delay, expected", [
    (pd.Timedelta(seconds=1), 1),
    (29 * DAY, 1),
    (30 * DAY, 1),  # the end of the horizon is inside it
    (30 * DAY + pd.Timedelta(seconds=1), 0),
    (pd.Timedelta(0), 0),  # a purchase at T itself is known at T: not in the future
    (-DAY, 0),
])
def test_any_purchase_within_the_horizon_after_the_snapshot(delay: pd.Timedelta,
                                                            expected: int) -> None:
    events = log(("u1", "view", T0 - 3 * DAY), ("u1", "purchase", T0 + delay))
    assert labels_at(events)["u1"] == expected


def test_views_and_carts_are_not_purchases_and_other_users_do_not_count() -> None:
    events = log(("u1", "view", T0 - DAY), ("u1", "view", T0 + DAY), ("u1", "cart", T0 + DAY),
                 ("u2", "view", T0 - DAY), ("u2", "purchase", T0 + DAY))
    assert labels_at(events) == {"u1": 0, "u2": 1}


def test_only_users_with_activity_at_or_before_the_snapshot() -> None:
    events = log(("old", "purchase", T0 - 60 * DAY), ("edge", "view", T0),
                 ("new", "view", T0 + pd.Timedelta(seconds=1)),
                 ("new", "purchase", T0 + DAY))
    assert labels_at(events) == {"old": 0, "edge": 0}  # "new" appears at the next snapshot
    assert labels_at(events, T0 + 7 * DAY)["new"] == 0  # its purchase was before that one


def test_purchase_only_log_labels_users() -> None:
    events = log(("u1", "purchase", T0 - 10 * DAY), ("u1", "purchase", T0 + 12 * DAY),
                 ("u2", "purchase", T0 - 40 * DAY))
    assert labels_at(events) == {"u1": 1, "u2": 0}


def test_columns_order_and_types() -> None:
    events = log(("u2", "view", T0 - DAY), ("u1", "view", T0 - 2 * DAY))
    labels = propensity_labels(events, H)
    assert list(labels.columns) == PROPENSITY_COLUMNS
    assert labels["label"].dtype == "int64"
    assert str(labels["event_timestamp"].dtype) == "datetime64[ns, UTC]"
    assert labels.equals(labels.sort_values(["event_timestamp", "user_id"]).reset_index(drop=True))
    assert labels["event_timestamp"].max() + H <= events["event_timestamp"].max()


def test_events_after_until_change_nothing() -> None:
    until = T0 + 40 * DAY
    base = log(("u1", "view", T0 - DAY), ("u2", "purchase", T0 + 5 * DAY))
    later = pd.concat([base, log(("u1", "purchase", until + pd.Timedelta(seconds=1)),
                                 ("u3", "view", until + DAY))], ignore_index=True)
    expected = propensity_labels(base, H, until=until)
    pd.testing.assert_frame_equal(propensity_labels(later, H, until=until), expected)
    assert expected["event_timestamp"].max() + H <= until
    assert "u3" not in set(expected["user_id"])


def test_too_short_or_empty_log_is_a_clear_error() -> None:
    events = log(("u1", "view", T0))
    with pytest.raises(LabelError, match="fully observed"):
        propensity_labels(events, timedelta(days=200))
    with pytest.raises(LabelError, match="empty"):
        propensity_labels(events.iloc[:0], H)


def test_parse_horizon() -> None:
    assert parse_horizon("30d") == 30 and parse_horizon(" 14d ") == 14
    for bad in ("30", "2w", "0d", "-3d", "d"):
        with pytest.raises(ValueError, match="horizon"):
            parse_horizon(bad)


# --- baselines, lift, reference quantiles -------------------------------------------------

def _features(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    defaults = {"user_activity__days_since_last_event": [1.0] * n,
                "user_activity__days_since_last_purchase": [np.nan] * n,
                "user_activity__purchases_90d": [0.0] * n, "user_activity__spend_90d": [0.0] * n}
    return pd.DataFrame({"event_timestamp": T0, **defaults,
                         **{f"user_activity__{k}": v for k, v in columns.items()}})


def test_rfm_ranks_recent_frequent_big_buyers_first_and_never_buyers_last() -> None:
    frame = _features(days_since_last_purchase=[2.0, 20.0, np.nan, np.nan, 2.0],
                      days_since_last_event=[2.0, 1.0, 0.5, 30.0, 2.0],
                      purchases_90d=[3.0, 1.0, 0.0, 0.0, 3.0],
                      spend_90d=[300.0, 10.0, 0.0, 0.0, 90.0])
    score = rfm_score(frame)
    assert score[0] > score[4] > score[1] > score[2] > score[3]
    assert (recency_score(frame)[[2, 1, 0, 3]] == [-0.5, -1.0, -2.0, -30.0]).all()


def test_rfm_ranks_within_each_snapshot() -> None:
    one = _features(purchases_90d=[1.0, 2.0], spend_90d=[1.0, 2.0],
                    days_since_last_purchase=[5.0, 5.0])
    two = one.assign(event_timestamp=T0 + 7 * DAY, user_activity__purchases_90d=[10.0, 20.0],
                     user_activity__spend_90d=[10.0, 20.0])
    score = rfm_score(pd.concat([one, two], ignore_index=True))
    np.testing.assert_allclose(score[:2], score[2:])


def test_missing_features_rank_last() -> None:
    frame = _features(days_since_last_event=[np.nan, 50.0])
    assert recency_score(frame)[0] < recency_score(frame)[1]
    assert rfm_score(frame)[0] < rfm_score(frame)[1]


def test_top_decile_lift() -> None:
    y = np.array([1] + [0] * 9 + [1] * 2 + [0] * 8)  # 20 rows, 3 positives
    scores = -np.arange(20.0)  # the first two rows are the top decile: one positive
    assert top_decile_lift(y, scores) == pytest.approx((1 / 2) / (3 / 20))
    assert np.isnan(top_decile_lift(np.zeros(5, int), np.arange(5.0)))


def test_reference_quantiles_use_the_snapshot_rows_only() -> None:
    frame = pd.DataFrame({"event_timestamp": [T0] * 102 + [T0 - 7 * DAY],
                          "f": [0.0, *range(101), 1000.0], "g": [np.nan] * 101 + [5.0, 7.0]})
    q = reference_quantiles(frame, ["f", "g"], T0)
    # over the users with a value: zeros (no purchase, no spend) and missing values left out
    assert q["f"] == {str(level): pytest.approx(1 + level * 99) for level in QUANTILES}
    assert q["g"]["0.5"] == 5.0
    with pytest.raises(ValueError, match="no rows"):
        reference_quantiles(frame, ["f"], T0 + DAY)
