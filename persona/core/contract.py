"""The raw data contract: the three tables a shop hands to Persona, and how they are read.

Declared once here so the generator, the reader, the expectation suites and the docs agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

EVENT_TYPES: tuple[str, ...] = ("view", "cart", "purchase")


@dataclass(frozen=True)
class TableSpec:
    """Columns of one raw table: required ones, optional ones, and which hold timestamps."""

    name: str
    key: tuple[str, ...]  # what must be unique (its missing values never clash)
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    timestamps: tuple[str, ...] = ()
    strings: tuple[str, ...] = ()


# Events are unique by their optional `event_id` (an order line or event id) only: without one,
# rows alike in every column are separate transactions (a date-stamped export of a customer who
# bought the same item twice that day), never merged or refused.
EVENTS = TableSpec(
    name="events",
    key=("event_id",),
    required=("user_id", "item_id", "event_type", "event_timestamp"),
    optional=("quantity", "price", "event_id"),
    timestamps=("event_timestamp",),
    strings=("user_id", "item_id", "event_type", "event_id"),
)
USERS = TableSpec(
    name="users",
    key=("user_id",),
    required=("user_id", "signup_timestamp"),
    optional=("age_band", "gender", "region", "membership_level"),
    timestamps=("signup_timestamp",),
    strings=("user_id", "age_band", "gender", "region", "membership_level"),
)
ITEMS = TableSpec(
    name="items",
    key=("item_id",),
    required=("item_id", "category", "brand", "list_price", "created_timestamp"),
    optional=("available",),  # true/false (1/0); without it every item is available
    timestamps=("created_timestamp",),
    strings=("item_id", "category", "brand"),
)
TABLES: dict[str, TableSpec] = {t.name: t for t in (EVENTS, USERS, ITEMS)}


class ContractError(ValueError):
    """A raw table does not follow the data contract; the message names file and column."""


def find_table(raw_dir: Path, name: str) -> Path:
    """The file holding table `name` in `raw_dir`: `<name>.parquet` or `<name>.csv`."""
    for suffix in (".parquet", ".csv"):
        path = raw_dir / f"{name}{suffix}"
        if path.exists():
            return path
    raise ContractError(f"{raw_dir}: no {name}.parquet or {name}.csv")
