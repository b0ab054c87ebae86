"""The lifetime feature tables, exact to the event: counts over the whole history, smoothed
conversion priors, the user's history with each item and the instants recency is measured from.

Unlike the snapshots (`persona.data.snapshots`, one row per interval for 90 days after activity),
a lifetime row is written only when its entity changes: at the user's sign-up or the item's
creation (all zeros), then at each distinct instant the entity had events. A row stamped T holds
the events strictly before T: rows are stamped one microsecond after their events, so Feast's
"latest row at or before t" is the history before t to the microsecond, the same day's earlier
events included, and the views never expire (a customer quiet for a year keeps their counts).

Priors are empirical-Bayes shrinkage towards the shop's own rate up to that instant:
(purchases + m * rate) / (max(views, purchases) + m), with m the prior strength. The tables run
on the `ev` events table `persona.data.snapshots` builds in the same DuckDB connection; their
columns are declared in `persona.core.schema`.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from persona.core.schema import TIMESTAMP

DAY_US = 86_400_000_000
US = 1_000_000  # microseconds per second: instants are stored as seconds since the epoch

_KINDS = {"views": "view", "carts": "cart", "purchases": "purchase"}


def _stamped(frame: pd.DataFrame, keys: int) -> pd.DataFrame:
    """Replace the `stamp_us` column with the row's UTC `event_timestamp`, after the keys."""
    stamps = pd.to_datetime(frame.pop("stamp_us"), unit="us", utc=True)
    frame.insert(keys, TIMESTAMP, stamps)
    return frame


def _counts() -> str:
    """Per-group counts of each event kind, as columns v, c and p."""
    return ", ".join(f"count(*) FILTER (event_type = '{kind}') AS {kind[0]}"
                     for kind in _KINDS.values())


def _prior(purchases: str, views: str, m: float) -> str:
    return (f"(({purchases}) + {m} * coalesce(rate, 0)) / "
            f"(greatest({views}, {purchases}) + {m})")


def _shop_rates(con: duckdb.DuckDBPyConnection) -> None:
    """The shop's conversion rate over every event up to and including each event instant."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE shop_rate AS
        SELECT ts_us, sp / greatest(sv, sp, 1) AS rate FROM (
            SELECT ts_us,
                   sum(count(*) FILTER (event_type = 'view')) OVER (ORDER BY ts_us) AS sv,
                   sum(count(*) FILTER (event_type = 'purchase')) OVER (ORDER BY ts_us) AS sp
            FROM ev GROUP BY ts_us)
    """)


def _user_lifetime(con: duckdb.DuckDBPyConnection, users: pd.DataFrame, m: float
                   ) -> pd.DataFrame:
    con.register("lt_users", users[["user_id", "signup_timestamp"]])
    return con.execute(f"""
        WITH signup AS (
            SELECT user_id, epoch_us(signup_timestamp) AS signup_us FROM lt_users),
        ui AS (
            SELECT user_id, ts_us, {_counts()}, sum(value) AS s FROM ev GROUP BY user_id, ts_us),
        -- the first purchase instant of each purchase day, and the days since the previous one
        days AS (
            SELECT user_id, ts_us, day, day - lag(day) OVER (PARTITION BY user_id ORDER BY day)
                   AS gap
            FROM (SELECT user_id, min(ts_us) AS ts_us, ts_us // {DAY_US} AS day
                  FROM ev WHERE event_type = 'purchase' GROUP BY user_id, ts_us // {DAY_US})),
        rolled AS (
            SELECT u.user_id, u.ts_us,
                   sum(v) OVER w AS views, sum(c) OVER w AS carts, sum(p) OVER w AS purchases,
                   count(d.day) OVER w AS purchase_days, sum(s) OVER w AS spend,
                   min(d.day) OVER w AS first_day, max(d.day) OVER w AS last_day,
                   last_value(d.gap IGNORE NULLS) OVER w AS last_gap,
                   min(u.ts_us) OVER w AS first_us,
                   min(CASE WHEN p > 0 THEN u.ts_us END) OVER w AS first_p_us,
                   max(CASE WHEN p > 0 THEN u.ts_us END) OVER w AS last_p_us
            FROM ui u LEFT JOIN days d USING (user_id, ts_us)
            WINDOW w AS (PARTITION BY u.user_id ORDER BY u.ts_us ROWS UNBOUNDED PRECEDING)),
        changed AS (
            SELECT r.user_id, r.ts_us + 1 AS stamp_us,
                   views::BIGINT AS views_lifetime, carts::BIGINT AS carts_lifetime,
                   purchases::BIGINT AS purchases_lifetime,
                   purchase_days::BIGINT AS purchase_days_lifetime, spend::DOUBLE AS spend_lifetime,
                   {_prior("purchases", "views", m)}::DOUBLE AS conversion_prior,
                   CASE WHEN purchase_days > 1
                        THEN (last_day - first_day) / (purchase_days - 1) END::DOUBLE
                       AS mean_purchase_gap_days,
                   last_gap::DOUBLE AS last_purchase_gap_days,
                   (g.signup_us / {US})::DOUBLE AS signup_at,
                   (first_us / {US})::DOUBLE AS first_event_at,
                   (r.ts_us / {US})::DOUBLE AS last_event_at,
                   (first_p_us / {US})::DOUBLE AS first_purchase_at,
                   (last_p_us / {US})::DOUBLE AS last_purchase_at
            FROM rolled r JOIN signup g USING (user_id) JOIN shop_rate USING (ts_us)),
        -- a sign-up before any event: every count zero, the shop's rate before it as the prior
        signed_up AS (
            SELECT g.user_id, g.signup_us AS stamp_us,
                   0::BIGINT, 0::BIGINT, 0::BIGINT, 0::BIGINT, 0::DOUBLE,
                   coalesce(rate, 0)::DOUBLE, NULL::DOUBLE, NULL::DOUBLE,
                   (g.signup_us / {US})::DOUBLE, NULL::DOUBLE, NULL::DOUBLE, NULL::DOUBLE,
                   NULL::DOUBLE
            FROM signup g ASOF LEFT JOIN shop_rate s ON g.signup_us > s.ts_us
            WHERE NOT EXISTS (SELECT 1 FROM ev WHERE ev.user_id = g.user_id
                              AND ev.ts_us + 1 <= g.signup_us))
        SELECT * FROM changed UNION ALL SELECT * FROM signed_up
        ORDER BY user_id, stamp_us
    """).df()


def _item_lifetime(con: duckdb.DuckDBPyConnection, items: pd.DataFrame, m: float
                   ) -> pd.DataFrame:
    con.register("lt_items", items[["item_id", "created_timestamp"]])
    return con.execute(f"""
        WITH ii AS (
            SELECT item_id, ts_us, {_counts()},
                   count(DISTINCT CASE WHEN ts_us = first_buy_us THEN user_id END) AS b
            FROM (SELECT *, min(CASE WHEN event_type = 'purchase' THEN ts_us END)
                                OVER (PARTITION BY item_id, user_id) AS first_buy_us
                  FROM ev)
            GROUP BY item_id, ts_us),
        rolled AS (
            SELECT item_id, ts_us, sum(v) OVER w AS views, sum(c) OVER w AS carts,
                   sum(p) OVER w AS purchases, sum(b) OVER w AS buyers
            FROM ii WINDOW w AS (PARTITION BY item_id ORDER BY ts_us ROWS UNBOUNDED PRECEDING)),
        created AS (
            SELECT item_id, epoch_us(created_timestamp) AS created_us FROM lt_items)
        SELECT item_id, ts_us + 1 AS stamp_us, views::BIGINT AS item_views_lifetime,
               carts::BIGINT AS item_carts_lifetime, purchases::BIGINT AS item_purchases_lifetime,
               buyers::BIGINT AS item_buyers_lifetime,
               {_prior("purchases", "views", m)}::DOUBLE AS item_conversion_prior
        FROM rolled JOIN shop_rate USING (ts_us)
        UNION ALL
        SELECT c.item_id, c.created_us, 0, 0, 0, 0, coalesce(rate, 0)::DOUBLE
        FROM created c ASOF LEFT JOIN shop_rate s ON c.created_us > s.ts_us
        WHERE NOT EXISTS (SELECT 1 FROM ev WHERE ev.item_id = c.item_id
                          AND ev.ts_us + 1 <= c.created_us)
        ORDER BY item_id, stamp_us
    """).df()


def _user_category_lifetime(con: duckdb.DuckDBPyConnection, m: float) -> pd.DataFrame:
    return con.execute(f"""
        WITH uc AS (
            SELECT user_id, category, ts_us, {_counts()} FROM ev
            GROUP BY user_id, category, ts_us),
        rolled AS (
            SELECT user_id, category, ts_us, sum(v) OVER w AS views, sum(c) OVER w AS carts,
                   sum(p) OVER w AS purchases
            FROM uc WINDOW w AS (PARTITION BY user_id, category ORDER BY ts_us
                                 ROWS UNBOUNDED PRECEDING))
        SELECT user_id, category, ts_us + 1 AS stamp_us,
               views::BIGINT AS category_views_lifetime, carts::BIGINT AS category_carts_lifetime,
               purchases::BIGINT AS category_purchases_lifetime,
               {_prior("purchases", "views", m)}::DOUBLE AS category_conversion_prior
        FROM rolled JOIN shop_rate USING (ts_us)
        ORDER BY user_id, category, stamp_us
    """).df()


def _user_item_history(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    latest = ", ".join(
        f"(max(CASE WHEN {kind[0]} > 0 THEN ts_us END) OVER w / {US})::DOUBLE "
        f"AS pair_last_{kind}_at" for kind in _KINDS.values())
    return con.execute(f"""
        WITH pairs AS (
            SELECT user_id, item_id, ts_us, {_counts()} FROM ev GROUP BY user_id, item_id, ts_us)
        SELECT user_id, item_id, ts_us + 1 AS stamp_us,
               (sum(v) OVER w)::BIGINT AS pair_views_lifetime,
               (sum(c) OVER w)::BIGINT AS pair_carts_lifetime,
               (sum(p) OVER w)::BIGINT AS pair_purchases_lifetime,
               {latest}
        FROM pairs
        WINDOW w AS (PARTITION BY user_id, item_id ORDER BY ts_us ROWS UNBOUNDED PRECEDING)
        ORDER BY user_id, item_id, stamp_us
    """).df()


def lifetime_features(con: duckdb.DuckDBPyConnection, users: pd.DataFrame, items: pd.DataFrame,
                      prior_strength: float) -> dict[str, pd.DataFrame]:
    """The four lifetime tables, keyed by feature view name, from the connection's `ev`."""
    if prior_strength <= 0:
        raise ValueError(f"the prior strength must be positive, got {prior_strength}")
    m = float(prior_strength)
    _shop_rates(con)
    return {
        "user_lifetime": _stamped(_user_lifetime(con, users, m), 1),
        "item_lifetime": _stamped(_item_lifetime(con, items, m), 1),
        "user_category_lifetime": _stamped(_user_category_lifetime(con, m), 2),
        "user_item_history": _stamped(_user_item_history(con), 2),
    }
