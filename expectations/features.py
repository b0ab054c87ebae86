"""Suites for the feature tables computed at ingest, before they land in the offline store.

Derived from the one feature schema (`persona.core.schema`): each column's kind is a rule, and
`feature_suite` turns a table's declaration into expectations, so a feature added to the schema
is checked here without a line of its own.
"""

from __future__ import annotations

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd

from expectations.common import (
    at_least,
    exist,
    integers,
    member_of,
    not_null,
    numbers,
    rate,
    row_count,
    strings,
    suite,
    timestamps,
    unique,
)
from persona.core.schema import ALL_TABLES, TIMESTAMP, Column, Kind


def column_expectations(col: Column) -> list[gxe.Expectation]:
    """The expectations a column's kind stands for (value checks skip nulls; a list only has to
    be present: GE 1.x has no check of a list's elements)."""
    column = col.name
    out = [] if col.nullable else not_null([column])
    if col.kind is Kind.STRING:
        out += strings([column])
    elif col.kind is Kind.COUNT:
        out += [integers(column), at_least(column, 0)]
    elif col.kind in (Kind.AMOUNT, Kind.INSTANT):
        out += [numbers(column), at_least(column, 0)]
    elif col.kind is Kind.RATE:
        out += [numbers(column), rate(column)]
    elif col.kind is Kind.FLAG:
        out += [integers(column), member_of(column, [0, 1])]
    return out


def feature_suite(view: str, now: pd.Timestamp) -> gx.ExpectationSuite:
    """The gate of one feature table: keys and timestamp present and not null, one row per
    (keys, timestamp), no timestamp after `now`, at least one row, and every column's rule."""
    table = ALL_TABLES[view]
    row_key = (*table.keys, TIMESTAMP)
    expectations = [
        *exist((*row_key, *table.names)),
        *not_null(row_key),
        *strings(table.keys),
        *timestamps([TIMESTAMP], now),
        unique(row_key),
        row_count(),
    ]
    for column in table.columns:
        expectations += column_expectations(column)
    return suite(f"features.{view}", expectations)
