"""Suites for the feature tables computed at ingest, before they land in the offline store.

Declared as data: per view, its entity keys and a rule for every feature column. One function,
`feature_suite`, turns a declaration into expectations, so adding a feature is one line here.
Column names match the feature views in `feature_repo/definitions.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd

from expectations.common import (
    at_least,
    exist,
    integers,
    not_null,
    numbers,
    rate,
    row_count,
    strings,
    suite,
    timestamps,
    unique,
)

TIMESTAMP = "event_timestamp"
WINDOWS = (1, 7, 30, 90)


class Kind(Enum):
    STRING = "string"  # str values
    COUNT = "count"  # integers >= 0
    AMOUNT = "amount"  # numbers >= 0
    RATE = "rate"  # numbers in [0, 1]


@dataclass(frozen=True)
class Rule:
    """What a feature column must hold; `nullable` allows missing values (checked when present)."""

    kind: Kind
    nullable: bool = False


STRING, COUNT, AMOUNT, RATE = (Rule(kind) for kind in Kind)


def nullable(rule: Rule) -> Rule:
    return replace(rule, nullable=True)


@dataclass(frozen=True)
class FeatureTable:
    """One feature view's frame: its entity keys (strings) and its feature columns."""

    name: str
    keys: tuple[str, ...]
    columns: dict[str, Rule]


FEATURE_TABLES: dict[str, FeatureTable] = {t.name: t for t in (
    FeatureTable("user_profile", ("user_id",), {
        "age_band": nullable(STRING),
        "gender": nullable(STRING),
        "region": nullable(STRING),
        "membership_level": nullable(STRING),
    }),
    FeatureTable("item_catalog", ("item_id",), {
        "category": STRING,
        "brand": STRING,
        "list_price": AMOUNT,
    }),
    FeatureTable("user_activity", ("user_id",), {
        **{f"{kind}_{w}d": COUNT for w in WINDOWS for kind in ("views", "carts", "purchases")},
        **{f"spend_{w}d": AMOUNT for w in WINDOWS},
        "aov_90d": AMOUNT,
        "days_since_last_event": AMOUNT,
        "days_since_last_purchase": nullable(AMOUNT),
        "view_to_purchase_rate_90d": RATE,
        "cart_to_purchase_rate_90d": RATE,
        "distinct_categories_90d": COUNT,
        "favourite_category": nullable(STRING),
    }),
    FeatureTable("item_popularity", ("item_id",), {
        "views_7d": COUNT,
        "views_30d": COUNT,
        "carts_30d": COUNT,
        "purchases_7d": COUNT,
        "purchases_30d": COUNT,
        "unique_buyers_30d": COUNT,
        "conversion_rate_30d": RATE,
    }),
    FeatureTable("user_category_affinity", ("user_id", "category"), {
        "category_events_90d": COUNT,
        "category_event_share_90d": RATE,
        "category_purchase_share_90d": RATE,
    }),
)}


def column_expectations(column: str, rule: Rule) -> list[gxe.Expectation]:
    """The expectations one rule stands for (value checks skip nulls)."""
    out = [] if rule.nullable else not_null([column])
    if rule.kind is Kind.STRING:
        out += strings([column])
    elif rule.kind is Kind.COUNT:
        out += [integers(column), at_least(column, 0)]
    elif rule.kind is Kind.AMOUNT:
        out += [numbers(column), at_least(column, 0)]
    elif rule.kind is Kind.RATE:
        out += [numbers(column), rate(column)]
    return out


def feature_suite(view: str, now: pd.Timestamp) -> gx.ExpectationSuite:
    """The gate of one feature table: keys and timestamp present and not null, one row per
    (keys, timestamp), no timestamp after `now`, at least one row, and every column's rule."""
    table = FEATURE_TABLES[view]
    row_key = (*table.keys, TIMESTAMP)
    expectations = [
        *exist((*row_key, *table.columns)),
        *not_null(row_key),
        *strings(table.keys),
        *timestamps([TIMESTAMP], now),
        unique(row_key),
        row_count(),
    ]
    for column, rule in table.columns.items():
        expectations += column_expectations(column, rule)
    return suite(f"features.{view}", expectations)
