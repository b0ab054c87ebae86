"""How every DATE option (`--until`, `--as-of`) is read."""

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
