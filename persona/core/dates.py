"""How the DATE options (`--until`, `--as-of`, `--end`) and label horizons (`--horizon 30d`) are
read, and what "today" is."""

from __future__ import annotations

import re

import pandas as pd

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_as_of(text: str) -> pd.Timestamp:
    """A calendar date means the end of that day in UTC (the next midnight, the instant the
    day's last snapshot is stamped); an ISO-8601 timestamp is taken as is, in UTC when it has
    no offset."""
    value = text.strip()
    try:
        stamp = pd.Timestamp(value)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD) or an ISO-8601 timestamp") from exc
    if pd.isna(stamp):
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD) or an ISO-8601 timestamp")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp + pd.Timedelta(days=1) if _DATE_ONLY.match(value) else stamp


def start_of_today() -> pd.Timestamp:
    """Midnight UTC today: where a generated shop ends by default, so its features are current."""
    return pd.Timestamp.now(tz="UTC").normalize()


_HORIZON = re.compile(r"^\s*(\d+)\s*d\s*$")


def parse_horizon(text: str) -> int:
    """'30d' -> 30: a label horizon in whole days."""
    match = _HORIZON.match(text)
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"horizon {text!r}: expected a number of days like '30d' or '7d'")
    return int(match.group(1))
