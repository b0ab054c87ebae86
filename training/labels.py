"""Labels of Persona's two tasks.

Conversion: a view (user, item, t) is positive when the same user buys the same item in
(t, t + horizon]. Propensity: a user at snapshot time T is positive when they buy anything in
(T, T + horizon]. Only rows whose whole horizon lies inside the observed log are labelled: a row
near the end of the log with no purchase yet is unknown, not negative, and labelling it 0 would
teach the model that recent activity converts less.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

KEYS = ["user_id", "item_id", "event_timestamp"]
COLUMNS = ["user_id", "item_id", "category", "event_timestamp", "label"]
DEFAULT_HORIZON = timedelta(days=7)
PROPENSITY_COLUMNS = ["user_id", "event_timestamp", "label"]
DAY = timedelta(days=1)


class LabelError(ValueError):
    """The event log cannot produce conversion labels (no views, unknown items, ...)."""


def _utc(ts: pd.Timestamp | str) -> pd.Timestamp:
    """A timestamp in UTC; a naive one is taken to be UTC already, as everywhere in Persona."""
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _observed_views(events: pd.DataFrame, horizon: timedelta, until: pd.Timestamp) -> pd.DataFrame:
    """Distinct views whose horizon ends no later than `until`, sorted by time for merge_asof."""
    views = events.loc[events["event_type"] == "view", KEYS]
    if views.empty:
        # One short line: the CLI prints it as the whole error.
        raise LabelError("conversion needs view events; the log has none (try --task propensity)")
    views = views.drop_duplicates()
    views = views[views["event_timestamp"] + horizon <= until]
    if views.empty:
        raise LabelError(f"no view has a fully observed {horizon} horizon before "
                         f"{until.isoformat()}; the log is too short for this horizon")
    return views.sort_values("event_timestamp", kind="stable")


def _next_purchase(views: pd.DataFrame, events: pd.DataFrame) -> pd.Series:
    """For each view, the time of the same user's first purchase of the same item strictly after
    it (NaT when there is none)."""
    buys = events.loc[events["event_type"] == "purchase", KEYS].drop_duplicates()
    buys = buys.rename(columns={"event_timestamp": "purchased_at"}).sort_values("purchased_at")
    joined = pd.merge_asof(views, buys, left_on="event_timestamp", right_on="purchased_at",
                           by=["user_id", "item_id"], direction="forward",
                           allow_exact_matches=False)
    return joined["purchased_at"].set_axis(views.index)


def _categories(item_ids: pd.Series, items: pd.DataFrame) -> pd.Series:
    """The item's catalogue category: Feast joins `user_category_affinity` on it."""
    category = item_ids.map(items.drop_duplicates("item_id").set_index("item_id")["category"])
    unknown = category.isna()
    if unknown.any():
        examples = item_ids[unknown].unique()[:5].tolist()
        raise LabelError(f"{int(unknown.sum())} views are of items missing from the catalogue "
                         f"(or without a category), e.g. {examples}")
    return category


def conversion_labels(
    events: pd.DataFrame,
    items: pd.DataFrame,
    horizon: timedelta = DEFAULT_HORIZON,
    until: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """One row per distinct view (user, item, t) with a fully observed horizon, labelled 1 when
    the user buys the item in (t, t + horizon].

    `until` is where the observed log ends (default: its last event); events after it are
    ignored, so labels are reproducible from any later copy of the log. Columns: user_id,
    item_id, category, event_timestamp, label (int64), sorted by time, then user, then item.
    """
    if horizon <= timedelta(0):
        raise ValueError(f"horizon must be positive, got {horizon}")
    if events.empty:
        raise LabelError("conversion needs view events; the log is empty")
    until = _utc(until) if until is not None else events["event_timestamp"].max()
    events = events[events["event_timestamp"] <= until]
    views = _observed_views(events, horizon, until)
    purchased_at = _next_purchase(views, events)
    labels = views.assign(
        category=_categories(views["item_id"], items),
        label=(purchased_at - views["event_timestamp"] <= horizon).astype("int64"),
    )
    return labels[COLUMNS].sort_values(KEYS, kind="stable").reset_index(drop=True)


def snapshot_times(first_event: pd.Timestamp, until: pd.Timestamp, horizon: timedelta,
                   interval: timedelta, every: timedelta) -> pd.DatetimeIndex:
    """Snapshot times T, `every` apart, whose horizon (T, T + horizon] ends at or before `until`,
    from the latest such T back to the first at or after `first_event`.

    Every T is a multiple (since the epoch) of the ingest's snapshot interval and the end of a
    day: a multiple of the interval when it is whole days, of a day when the interval divides
    one. So T is exactly an offline snapshot's timestamp and the features as of T are the ones
    the snapshot stamped T holds. `every` is rounded up to a multiple of that unit.
    """
    if horizon <= timedelta(0) or every <= timedelta(0) or interval <= timedelta(0):
        raise ValueError("horizon, every and interval must be positive")
    unit = max(interval, DAY)
    step = -(-every // unit) * unit
    epoch = pd.Timestamp(0, tz="UTC")
    last = epoch + ((_utc(until) - horizon - epoch) // unit) * unit
    first = _utc(first_event)
    if last < first:
        return pd.DatetimeIndex([], tz="UTC")
    count = (last - first) // step + 1
    return pd.DatetimeIndex([last - i * step for i in range(count)][::-1])


def propensity_labels(
    events: pd.DataFrame,
    horizon: timedelta = timedelta(days=30),
    until: pd.Timestamp | None = None,
    interval: timedelta = DAY,
    every: timedelta = timedelta(days=7),
) -> pd.DataFrame:
    """One row per (user, snapshot time T) for every user with any event at or before T,
    labelled 1 when the user purchases anything in (T, T + horizon].

    Snapshot times come from `snapshot_times` (aligned to the ingest's grid, `every` apart, the
    latest one the last whose horizon is fully observed by `until`). `until` is where the
    observed log ends (default: its last event); later events are ignored. Columns: user_id,
    event_timestamp (= T), label (int64), sorted by time, then user.
    """
    if events.empty:
        raise LabelError("the propensity task needs events, and the event log is empty")
    until = _utc(until) if until is not None else events["event_timestamp"].max()
    events = events[events["event_timestamp"] <= until]
    if events.empty:
        raise LabelError(f"the event log has no event at or before {until.isoformat()}")
    times = snapshot_times(events["event_timestamp"].min(), until, horizon, interval, every)
    if times.empty:
        raise LabelError(f"no snapshot has a fully observed {horizon} horizon before "
                         f"{until.isoformat()}; the log is too short for this horizon")
    first_seen = events.groupby("user_id")["event_timestamp"].min()
    buys = events.loc[events["event_type"] == "purchase", ["user_id", "event_timestamp"]]
    buys = buys.sort_values("event_timestamp", kind="stable")
    parts = []
    for t in times:
        users = first_seen.index[first_seen <= t]
        window = buys[(buys["event_timestamp"] > t) & (buys["event_timestamp"] <= t + horizon)]
        bought = users.isin(window["user_id"].unique())
        parts.append(pd.DataFrame({"user_id": users.to_numpy(dtype=object), "event_timestamp": t,
                                   "label": bought.astype("int64")}))
    labels = pd.concat(parts, ignore_index=True)
    labels["event_timestamp"] = labels["event_timestamp"].astype("datetime64[ns, UTC]")
    return labels[PROPENSITY_COLUMNS].sort_values(["event_timestamp", "user_id"],
                                                  kind="stable").reset_index(drop=True)
