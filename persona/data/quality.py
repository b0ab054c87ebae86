"""Which Great Expectations suite guards which frame; the suites themselves live in expectations/.

Each check raises expectations.gate.DataQualityError on the first failing table, before anything
is written, and otherwise returns the JSON-able summaries that are kept with the data and models.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from expectations.features import feature_suite
from expectations.gate import run_gate
from expectations.raw import events_suite, items_suite, users_suite
from persona.data.raw import RawTables


def check_raw(raw: RawTables, now: pd.Timestamp, docs_dir: Path) -> dict[str, dict]:
    """Users and items first, then events against the known ids (referential integrity)."""
    results = {
        "raw.users": run_gate(users_suite(now), raw.users, docs_dir, raw.paths["users"]),
        "raw.items": run_gate(items_suite(now), raw.items, docs_dir, raw.paths["items"]),
        "raw.events": run_gate(
            events_suite(now, known_users=set(raw.users["user_id"]),
                         known_items=set(raw.items["item_id"])),
            raw.events, docs_dir, raw.paths["events"]),
    }
    return {name: result.summary() for name, result in results.items()}


def check_features(features: dict[str, pd.DataFrame], now: pd.Timestamp,
                   docs_dir: Path) -> dict[str, dict]:
    """Every feature table against its view's suite."""
    return {f"features.{view}": run_gate(feature_suite(view, now), frame, docs_dir).summary()
            for view, frame in features.items()}
