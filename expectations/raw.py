"""Suites for the three raw tables, as `persona.raw.read_raw` hands them over.

The column lists come from the data contract (`persona.core.contract`); the reader has already cast
ids and other strings to `str` (None for missing), timestamps to aware UTC, quantity to int64
and price / list_price to float64, and added any missing optional column.
"""

from __future__ import annotations

from collections.abc import Collection

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
    row_count,
    strings,
    suite,
    timestamps,
    unique,
)
from persona.core.contract import EVENT_TYPES, EVENTS, ITEMS, USERS


def events_suite(
    now: pd.Timestamp,
    known_users: Collection[str] | None = None,
    known_items: Collection[str] | None = None,
) -> gx.ExpectationSuite:
    """Events: the contract's columns, types and event types, positive quantities, non-negative
    prices, no duplicated event, nothing after `now`, and (when the known ids are given) no event
    of an unknown user or item."""
    expectations = [
        *exist(EVENTS.required + EVENTS.optional),
        *not_null(EVENTS.required),
        *strings(EVENTS.strings),
        gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(EVENT_TYPES)),
        integers("quantity"),
        at_least("quantity", 1),
        numbers("price"),
        at_least("price", 0),
        *timestamps(EVENTS.timestamps, now),
        unique(EVENTS.key),
        row_count(),
    ]
    if known_users is not None:
        expectations.append(member_of("user_id", known_users))
    if known_items is not None:
        expectations.append(member_of("item_id", known_items))
    return suite("raw.events", expectations)


def users_suite(now: pd.Timestamp) -> gx.ExpectationSuite:
    """Users: one row per user id, string attributes (nullable), signed up no later than `now`."""
    return suite("raw.users", [
        *exist(USERS.required + USERS.optional),
        *not_null(USERS.required),
        *strings(USERS.strings),
        *timestamps(USERS.timestamps, now),
        unique(USERS.key),
        row_count(),
    ])


def items_suite(now: pd.Timestamp) -> gx.ExpectationSuite:
    """Items: one row per item id, every column present, list price not negative, available
    a 1 or a 0 (as read), created no later than `now`."""
    return suite("raw.items", [
        *exist(ITEMS.required + ITEMS.optional),
        *not_null(ITEMS.required),
        *strings(ITEMS.strings),
        numbers("list_price"),
        at_least("list_price", 0),
        member_of("available", [0, 1]),
        *timestamps(ITEMS.timestamps, now),
        unique(ITEMS.key),
        row_count(),
    ])
