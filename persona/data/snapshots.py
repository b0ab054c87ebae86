"""Point-in-time feature snapshots computed from raw events with DuckDB.

Time is cut into buckets of one snapshot interval. An event at instant t belongs to the first
snapshot T with t <= T (T is a multiple of the interval since the epoch), so the snapshot stamped
T sees exactly the events at or before T and no later event can change it. Rolling windows of w
days cover (T - w, T]. Snapshots are written for every interval while the entity had events in
the longest window, so Feast's "latest row at or before t" is always the value as of t.

The tables' columns are declared in `persona.core.schema`; the user windows are read from there,
and a test checks every table this SQL produces against the schema, column by column.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import duckdb
import pandas as pd

from persona.core.schema import ACTIVITY_KINDS, FEATURE_TABLES, USER_WINDOWS
from persona.core.settings import DEFAULT_PRIOR_STRENGTH
from persona.data.lifetime import lifetime_features
from persona.data.raw import RawTables

DAY_US = 86_400_000_000


def _buckets(days: int, interval_us: int) -> int:
    return days * DAY_US // interval_us


def _ts(frame: pd.DataFrame, interval_us: int) -> pd.DataFrame:
    """Replace the bucket index `k` with the snapshot's UTC `event_timestamp`."""
    stamps = pd.to_datetime(frame.pop("k") * interval_us, unit="us", utc=True)
    frame.insert(1, "event_timestamp", stamps)
    return frame


def _events_view(con: duckdb.DuckDBPyConnection, raw: RawTables, interval_us: int) -> None:
    con.register("raw_events", raw.events)
    con.register("raw_items", raw.items[["item_id", "category"]])
    con.execute(f"""
        CREATE TEMP TABLE ev AS
        SELECT e.user_id, e.item_id, e.event_type, coalesce(i.category, '') AS category,
               epoch_us(e.event_timestamp) AS ts_us,
               (epoch_us(e.event_timestamp) - 1) // {interval_us} + 1 AS k,
               CASE WHEN e.event_type = 'purchase' THEN e.quantity * e.price ELSE 0 END AS value
        FROM raw_events e LEFT JOIN raw_items i USING (item_id)
    """)


def _user_activity(con: duckdb.DuckDBPyConnection, interval_us: int, end_k: int) -> pd.DataFrame:
    w = {d: _buckets(d, interval_us) for d in USER_WINDOWS}
    windows = ", ".join(
        f"w{d} AS (PARTITION BY user_id ORDER BY k "
        f"RANGE BETWEEN {w[d] - 1} PRECEDING AND CURRENT ROW)"
        for d in USER_WINDOWS)
    sums = ", ".join(
        f"sum(v) OVER w{d} AS views_{d}d, sum(c) OVER w{d} AS carts_{d}d, "
        f"sum(p) OVER w{d} AS purchases_{d}d, sum(s) OVER w{d} AS spend_{d}d"
        for d in USER_WINDOWS)
    return con.execute(f"""
        WITH ub AS (
            SELECT user_id, k,
                   count(*) FILTER (event_type = 'view') AS v,
                   count(*) FILTER (event_type = 'cart') AS c,
                   count(*) FILTER (event_type = 'purchase') AS p,
                   sum(value) AS s,
                   max(ts_us) AS last_ev,
                   max(ts_us) FILTER (event_type = 'purchase') AS last_p
            FROM ev GROUP BY user_id, k),
        grid AS (
            SELECT user_id, unnest(range(min(k), least(max(k) + {w[90]}, {end_k + 1}))) AS k
            FROM ub GROUP BY user_id),
        rolled AS (
            SELECT g.user_id, g.k,
                   {sums},
                   max(last_ev) OVER upto AS last_ev, max(last_p) OVER upto AS last_p
            FROM grid g LEFT JOIN (SELECT user_id, k, coalesce(v, 0) AS v, coalesce(c, 0) AS c,
                                          coalesce(p, 0) AS p, coalesce(s, 0) AS s, last_ev, last_p
                                   FROM ub) u USING (user_id, k)
            WINDOW {windows},
                   upto AS (PARTITION BY user_id ORDER BY k ROWS UNBOUNDED PRECEDING)),
        aff AS (
            SELECT user_id, k, count(*) AS n_categories,
                   first(category ORDER BY category_events_90d DESC, category) AS favourite_category
            FROM category_affinity GROUP BY user_id, k)
        SELECT r.user_id, r.k,
               {", ".join(f"coalesce({kind}_{d}d, 0)::BIGINT AS {kind}_{d}d"
                          for d in USER_WINDOWS for kind in ACTIVITY_KINDS)},
               {", ".join(f"coalesce(spend_{d}d, 0)::DOUBLE AS spend_{d}d" for d in USER_WINDOWS)},
               CASE WHEN purchases_90d > 0 THEN spend_90d / purchases_90d ELSE 0 END::DOUBLE
                   AS aov_90d,
               ((r.k * {interval_us} - last_ev) / {DAY_US})::DOUBLE AS days_since_last_event,
               ((r.k * {interval_us} - last_p) / {DAY_US})::DOUBLE AS days_since_last_purchase,
               CASE WHEN views_90d > 0 THEN least(purchases_90d / views_90d, 1) ELSE 0 END::DOUBLE
                   AS view_to_purchase_rate_90d,
               CASE WHEN carts_90d > 0 THEN least(purchases_90d / carts_90d, 1) ELSE 0 END::DOUBLE
                   AS cart_to_purchase_rate_90d,
               coalesce(a.n_categories, 0)::BIGINT AS distinct_categories_90d,
               a.favourite_category
        FROM rolled r LEFT JOIN aff a USING (user_id, k)
        WHERE views_90d + carts_90d + purchases_90d > 0
        ORDER BY r.user_id, r.k
    """).df()


def _category_affinity(con: duckdb.DuckDBPyConnection, interval_us: int, end_k: int) -> None:
    w90 = _buckets(90, interval_us)
    con.execute(f"""
        CREATE TEMP TABLE category_affinity AS
        WITH cb AS (
            SELECT user_id, category, k, count(*) AS n,
                   count(*) FILTER (event_type = 'purchase') AS np
            FROM ev GROUP BY user_id, category, k),
        grid AS (
            SELECT user_id, category,
                   unnest(range(min(k), least(max(k) + {w90}, {end_k + 1}))) AS k
            FROM cb GROUP BY user_id, category),
        rolled AS (
            SELECT g.user_id, g.category, g.k,
                   sum(coalesce(n, 0)) OVER w AS category_events_90d,
                   sum(coalesce(np, 0)) OVER w AS category_purchases_90d
            FROM grid g LEFT JOIN cb USING (user_id, category, k)
            WINDOW w AS (PARTITION BY user_id, category ORDER BY k
                         RANGE BETWEEN {w90 - 1} PRECEDING AND CURRENT ROW)),
        totals AS (
            SELECT user_id, k, sum(category_events_90d) AS events_90d,
                   sum(category_purchases_90d) AS purchases_90d
            FROM rolled GROUP BY user_id, k)
        SELECT r.user_id, r.category, r.k,
               category_events_90d::BIGINT AS category_events_90d,
               (category_events_90d / t.events_90d)::DOUBLE AS category_event_share_90d,
               CASE WHEN t.purchases_90d > 0 THEN category_purchases_90d / t.purchases_90d
                    ELSE 0 END::DOUBLE AS category_purchase_share_90d
        FROM rolled r JOIN totals t USING (user_id, k)
        WHERE category_events_90d > 0
    """)


def _item_popularity(con: duckdb.DuckDBPyConnection, interval_us: int, end_k: int) -> pd.DataFrame:
    w7, w30 = _buckets(7, interval_us), _buckets(30, interval_us)
    return con.execute(f"""
        WITH ib AS (
            SELECT item_id, k,
                   count(*) FILTER (event_type = 'view') AS v,
                   count(*) FILTER (event_type = 'cart') AS c,
                   count(*) FILTER (event_type = 'purchase') AS p
            FROM ev GROUP BY item_id, k),
        buys AS (
            SELECT item_id, user_id, k,
                   lead(k) OVER (PARTITION BY item_id, user_id ORDER BY k) AS nk
            FROM (SELECT DISTINCT item_id, user_id, k FROM ev WHERE event_type = 'purchase')),
        -- a buyer counts from a purchase until 30 days later or their next purchase of the item
        deltas AS (
            SELECT item_id, k, sum(d) AS d FROM (
                SELECT item_id, k, 1 AS d FROM buys
                UNION ALL
                SELECT item_id, least(coalesce(nk, k + {w30}), k + {w30}) AS k, -1 AS d FROM buys)
            GROUP BY item_id, k),
        grid AS (
            SELECT item_id, unnest(range(min(k), least(max(k) + {w30}, {end_k + 1}))) AS k
            FROM ib GROUP BY item_id),
        rolled AS (
            SELECT g.item_id, g.k,
                   sum(coalesce(v, 0)) OVER w7 AS views_7d,
                   sum(coalesce(v, 0)) OVER w30 AS views_30d,
                   sum(coalesce(c, 0)) OVER w30 AS carts_30d,
                   sum(coalesce(p, 0)) OVER w7 AS purchases_7d,
                   sum(coalesce(p, 0)) OVER w30 AS purchases_30d,
                   sum(coalesce(d.d, 0)) OVER (PARTITION BY g.item_id ORDER BY g.k
                                               ROWS UNBOUNDED PRECEDING)
                       AS unique_buyers_30d
            FROM grid g LEFT JOIN ib USING (item_id, k) LEFT JOIN deltas d USING (item_id, k)
            WINDOW w7 AS (PARTITION BY g.item_id ORDER BY g.k
                          RANGE BETWEEN {w7 - 1} PRECEDING AND CURRENT ROW),
                   w30 AS (PARTITION BY g.item_id ORDER BY g.k
                           RANGE BETWEEN {w30 - 1} PRECEDING AND CURRENT ROW))
        SELECT item_id, k,
               views_7d::BIGINT AS views_7d, views_30d::BIGINT AS views_30d,
               carts_30d::BIGINT AS carts_30d,
               purchases_7d::BIGINT AS purchases_7d, purchases_30d::BIGINT AS purchases_30d,
               ((purchases_30d + 1) / (greatest(views_30d, purchases_30d) + 50))::DOUBLE
                   AS conversion_rate_30d,
               unique_buyers_30d::BIGINT AS unique_buyers_30d
        FROM rolled
        WHERE views_30d + carts_30d + purchases_30d > 0
        ORDER BY item_id, k
    """).df()


def compute_features(raw: RawTables, interval: timedelta = timedelta(days=1),
                     prior_strength: float = DEFAULT_PRIOR_STRENGTH,
                     on_progress: Callable[[int, int], None] = lambda done, total: None
                     ) -> dict[str, pd.DataFrame]:
    """All feature tables, keyed by feature view name, each with an `event_timestamp` column:
    the snapshots of this module and the lifetime tables of `persona.data.lifetime`.
    `on_progress(done, total)` counts the tables computed, out of the schema's."""
    interval_us = int(interval.total_seconds() * 1_000_000)
    features: dict[str, pd.DataFrame] = {}

    def done() -> None:
        on_progress(len(features), len(FEATURE_TABLES))

    done()
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        _events_view(con, raw, interval_us)
        end_k = con.execute("SELECT max(k) FROM ev").fetchone()[0]
        if end_k is not None:
            _category_affinity(con, interval_us, end_k)
            features["user_activity"] = _ts(_user_activity(con, interval_us, end_k), interval_us)
            done()
            features["item_popularity"] = _ts(_item_popularity(con, interval_us, end_k),
                                              interval_us)
            done()
            features["user_category_affinity"] = _ts(
                con.execute("SELECT * FROM category_affinity ORDER BY user_id, category, k").df(),
                interval_us)
            done()
            features.update(lifetime_features(con, raw.users, raw.items, prior_strength))
            done()
    finally:
        con.close()
    features["user_profile"] = raw.users.rename(columns={"signup_timestamp": "event_timestamp"})[
        ["user_id", "event_timestamp", "age_band", "gender", "region", "membership_level"]]
    items = raw.items.rename(columns={"created_timestamp": "event_timestamp"})
    features["item_catalog"] = items[["item_id", "event_timestamp", "category", "brand",
                                      "list_price"]]
    features["item_availability"] = items[["item_id", "event_timestamp"]].assign(
        available=(items["available"] if "available" in items else 1)).astype(
        {"available": "int64"})
    done()
    return features
