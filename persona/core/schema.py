"""The feature schema, declared once: every feature table's keys and columns, with kind and meaning.

Three things derive from it: the Feast fields (`feature_repo/definitions.py`), the GE suites of
the computed tables (`expectations/features.py`), and what the snapshot SQL must produce
(`persona/data/snapshots.py` reads the windows here; `tests/unit/test_schema.py` checks its
output against these declarations column by column). Adding a feature starts here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
import pandas as pd

TIMESTAMP = "event_timestamp"
# The request time of the recency transforms: the row's time offline, the request's online.
REQUEST_TIME = "request_epoch_s"
USER_WINDOWS = (1, 7, 30, 90)  # days of the user_activity rolling counts
ITEM_WINDOWS = (7, 30)  # days of the item_popularity rolling counts
ACTIVITY_KINDS = ("views", "carts", "purchases")


class Kind(Enum):
    """What a column holds; each kind has one storage type and one data-quality rule."""

    STRING = "string"  # text
    COUNT = "count"  # integers >= 0
    AMOUNT = "amount"  # numbers >= 0
    RATE = "rate"  # numbers in [0, 1]
    INSTANT = "instant"  # a moment, as seconds since the Unix epoch (UTC); not a model input
    FLAG = "flag"  # 1 (yes) or 0 (no)
    TEXT_LIST = "text list"  # ids, one per listed item (a candidate or neighbour list)
    NUMBER_LIST = "number list"  # numbers, one per listed item (NaN where there is none)

    @property
    def numeric(self) -> bool:
        return self in (Kind.COUNT, Kind.AMOUNT, Kind.RATE, Kind.INSTANT, Kind.FLAG)

    @property
    def listed(self) -> bool:
        return self in (Kind.TEXT_LIST, Kind.NUMBER_LIST)

    @property
    def model_input(self) -> bool:
        """Numbers a model may read: an instant only through the days elapsed since it, which
        the recency transforms compute at request time (`feature_repo/transforms.py`)."""
        return self.numeric and self is not Kind.INSTANT


@dataclass(frozen=True)
class Column:
    """One feature column; `nullable` allows missing values (the rule is checked when present)."""

    name: str
    kind: Kind
    description: str
    nullable: bool = False


@dataclass(frozen=True)
class FeatureTable:
    """One feature view's table: its entity keys (strings), then its feature columns in order."""

    name: str
    keys: tuple[str, ...]
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


def _counts(kinds: tuple[str, ...], windows: tuple[int, ...], what: str) -> list[Column]:
    return [Column(f"{kind}_{w}d", Kind.COUNT, f"{kind} {what} in the last {w} days")
            for w in windows for kind in kinds]


USER_PROFILE = FeatureTable("user_profile", ("user_id",), (
    Column("age_band", Kind.STRING, "Age band given at sign-up", nullable=True),
    Column("gender", Kind.STRING, "Gender given at sign-up", nullable=True),
    Column("region", Kind.STRING, "Shipping region", nullable=True),
    Column("membership_level", Kind.STRING, "Loyalty membership level", nullable=True),
))

USER_ACTIVITY = FeatureTable("user_activity", ("user_id",), (
    *_counts(ACTIVITY_KINDS, USER_WINDOWS, "events"),
    *[Column(f"spend_{w}d", Kind.AMOUNT, f"Purchase value in the last {w} days")
      for w in USER_WINDOWS],
    Column("aov_90d", Kind.AMOUNT, "Average purchase value, 90 days (0 if none)"),
    Column("days_since_last_event", Kind.AMOUNT, "Days from the last event to the snapshot"),
    Column("days_since_last_purchase", Kind.AMOUNT, "Days from the last purchase (null if never)",
           nullable=True),
    Column("view_to_purchase_rate_90d", Kind.RATE, "Purchases per view, 90 days, capped at 1"),
    Column("cart_to_purchase_rate_90d", Kind.RATE,
           "Purchases per cart add, 90 days, capped at 1"),
    Column("distinct_categories_90d", Kind.COUNT, "Categories touched in 90 days"),
    Column("favourite_category", Kind.STRING, "Category with most events in 90 days",
           nullable=True),
))

ITEM_CATALOG = FeatureTable("item_catalog", ("item_id",), (
    Column("category", Kind.STRING, "Item category"),
    Column("brand", Kind.STRING, "Item brand"),
    Column("list_price", Kind.AMOUNT, "Catalogue price"),
))

# Whether an item may be recommended: the items table's optional `available` at ingest, then
# each `persona availability` update, stamped when it was made.
ITEM_AVAILABILITY = FeatureTable("item_availability", ("item_id",), (
    Column("available", Kind.FLAG, "1 when the item can be bought, 0 when it cannot"),
))

ITEM_POPULARITY = FeatureTable("item_popularity", ("item_id",), (
    *_counts(("views",), ITEM_WINDOWS, "views of the item"),
    Column("carts_30d", Kind.COUNT, "Cart adds of the item in 30 days"),
    *_counts(("purchases",), ITEM_WINDOWS, "purchases of the item"),
    Column("conversion_rate_30d", Kind.RATE,
           "Smoothed purchases per view over 30 days: (p + 1) / (max(v, p) + 50)"),
    Column("unique_buyers_30d", Kind.COUNT, "Distinct buyers in 30 days"),
))

USER_CATEGORY_AFFINITY = FeatureTable("user_category_affinity", ("user_id", "category"), (
    Column("category_events_90d", Kind.COUNT, "User's events in the category, 90 days"),
    Column("category_event_share_90d", Kind.RATE, "Share of the user's events in the category"),
    Column("category_purchase_share_90d", Kind.RATE,
           "Share of the user's purchases in the category"),
))

# The lifetime views: every count over the whole history, rows written at each instant the
# entity changes (its sign-up or creation, then each distinct event time) and never expiring, so
# a customer quiet for a year still has them. A row holds the events strictly before its
# timestamp (persona/data/lifetime.py). Conversion priors are shrunk towards the shop's rate
# up to then, with the prior strength of the settings (PERSONA_PRIOR_STRENGTH).
PRIOR = "(purchases + m * shop rate) / (max(views, purchases) + m)"


def _lifetime_counts(prefix: str, what: str) -> list[Column]:
    return [Column(f"{prefix}{kind}_lifetime", Kind.COUNT, f"{kind.capitalize()} {what}, ever")
            for kind in ACTIVITY_KINDS]


USER_LIFETIME = FeatureTable("user_lifetime", ("user_id",), (
    *_lifetime_counts("", "by the user"),
    Column("purchase_days_lifetime", Kind.COUNT, "Distinct days with a purchase, ever"),
    Column("spend_lifetime", Kind.AMOUNT, "Purchase value, ever"),
    Column("conversion_prior", Kind.RATE, f"The user's smoothed conversion rate: {PRIOR}"),
    Column("mean_purchase_gap_days", Kind.AMOUNT,
           "Mean days between purchase days (null before two)", nullable=True),
    Column("last_purchase_gap_days", Kind.AMOUNT,
           "Days between the last two purchase days (null before two)", nullable=True),
    Column("signup_at", Kind.INSTANT, "When the user signed up"),
    Column("first_event_at", Kind.INSTANT, "The user's first event (null before)",
           nullable=True),
    Column("last_event_at", Kind.INSTANT, "The user's latest event (null before)",
           nullable=True),
    Column("first_purchase_at", Kind.INSTANT, "The user's first purchase (null before)",
           nullable=True),
    Column("last_purchase_at", Kind.INSTANT, "The user's latest purchase (null before)",
           nullable=True),
))

ITEM_LIFETIME = FeatureTable("item_lifetime", ("item_id",), (
    *_lifetime_counts("item_", "of the item"),
    Column("item_buyers_lifetime", Kind.COUNT, "Distinct buyers of the item, ever"),
    Column("item_conversion_prior", Kind.RATE, f"The item's smoothed conversion rate: {PRIOR}"),
))

USER_CATEGORY_LIFETIME = FeatureTable("user_category_lifetime", ("user_id", "category"), (
    *_lifetime_counts("category_", "of the user in the category"),
    Column("category_conversion_prior", Kind.RATE,
           f"The user's smoothed conversion rate in the category: {PRIOR}"),
))

# The user's own history with one item: only pairs that had an event get rows.
USER_ITEM_HISTORY = FeatureTable("user_item_history", ("user_id", "item_id"), (
    *_lifetime_counts("pair_", "of the item by the user"),
    *[Column(f"pair_last_{kind}_at", Kind.INSTANT,
             f"The user's latest {kind} of the item (null before)", nullable=True)
      for kind in ("view", "cart", "purchase")],
))

# The tables `persona ingest` computes from the raw log.
FEATURE_TABLES: dict[str, FeatureTable] = {t.name: t for t in (
    USER_PROFILE, USER_ACTIVITY, ITEM_CATALOG, ITEM_AVAILABILITY, ITEM_POPULARITY,
    USER_CATEGORY_AFFINITY, USER_LIFETIME, ITEM_LIFETIME, USER_CATEGORY_LIFETIME,
    USER_ITEM_HISTORY)}

# Retrieval's lists (training/candidates.py), written by `persona train --task retrieval` with
# the generators' date as timestamp: a row per user (their candidates, best first, the union of
# the kept generators) and per item (its nearest items by behaviour). The lists of a row have
# one entry per listed item; a generator's score and rank are NaN where it did not list it.
CANDIDATE_GENERATORS = ("als", "item2vec", "popularity")
USER_CANDIDATES = FeatureTable("user_candidates", ("user_id",), (
    Column("candidate_items", Kind.TEXT_LIST, "The user's candidate items, best first"),
    Column("candidate_sources", Kind.TEXT_LIST,
           "The generator that proposed each candidate first"),
    Column("candidate_scores", Kind.NUMBER_LIST, "Each candidate's score in that generator"),
    *[Column(f"{g}_{what}s", Kind.NUMBER_LIST,
             f"Each candidate's {what} in the {g} generator's list (NaN when not in it)")
      for g in CANDIDATE_GENERATORS for what in ("score", "rank")],
))
ITEM_NEIGHBOURS = FeatureTable("item_neighbours", ("item_id",), (
    Column("neighbour_items", Kind.TEXT_LIST,
           "The items nearest the item by behaviour (item2vec), nearest first"),
    Column("neighbour_scores", Kind.NUMBER_LIST, "Their cosine similarity to the item"),
))
RETRIEVAL_TABLES: dict[str, FeatureTable] = {t.name: t for t in (USER_CANDIDATES,
                                                                 ITEM_NEIGHBOURS)}
ALL_TABLES: dict[str, FeatureTable] = {**FEATURE_TABLES, **RETRIEVAL_TABLES}


def epoch_seconds(timestamps: pd.Series) -> np.ndarray:
    """UTC timestamps as seconds since the Unix epoch (float64), the unit of every instant."""
    stamps = pd.to_datetime(timestamps, utc=True)
    return (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy("float64")
