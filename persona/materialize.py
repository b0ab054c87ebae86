"""`persona materialize`: load the latest feature values of the current offline version into the
online store (SQLite or Redis), after validating exactly the rows that will be loaded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import pandas as pd

from persona import offline, quality
from persona.locking import exclusive
from persona.settings import Settings
from persona.store import feature_store

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class NothingToMaterialize(RuntimeError):
    """No ingested data yet."""


def latest_rows(settings: Settings, view: str) -> pd.DataFrame:
    """Each entity's latest row of a view in the current offline version: what gets loaded."""
    glob = settings.offline_current / view / "**" / "*.parquet"
    keys = {"user_category_affinity": "user_id, category"}.get(view, "user_id" if view.startswith("user") else "item_id")
    query = (f"SELECT * FROM read_parquet('{glob}', hive_partitioning = false) "
             f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY event_timestamp DESC) = 1")
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        frame = con.execute(query).df()
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)  # naive or aware, by DuckDB version
    return frame


def materialize(settings: Settings, end: datetime | None = None, full: bool = False) -> dict[str, int]:
    """Incremental: each view from where its last materialization ended (or from the start of
    its TTL window) up to `end` (default: the last snapshot). `full` reloads the whole TTL window,
    for a new online store: the registry records progress, not which store received it.
    Returns the rows validated per view."""
    manifest = offline.current_manifest(settings.offline_root)
    if manifest is None:
        raise NothingToMaterialize(f"nothing ingested under {settings.home}: run `persona ingest` first")
    with exclusive(settings.lock_path):
        store = feature_store(settings)
        now = pd.Timestamp.now(tz="UTC")
        checked: dict[str, int] = {}
        frames = {}
        for fv in store.list_feature_views():
            frames[fv.name] = latest_rows(settings, fv.name)
            checked[fv.name] = len(frames[fv.name])
        quality.check_features(frames, now, settings.docs_dir)
        last = max(frame["event_timestamp"].max() for frame in frames.values() if len(frame))
        end = end or last.to_pydatetime() + timedelta(seconds=1)
        for fv in store.list_feature_views():
            start = _start(fv, end, full)
            store.materialize(start_date=start, end_date=end, feature_views=[fv.name])
        return checked


def _start(fv, end: datetime, full: bool) -> datetime:
    """Resume after the last materialized interval; first time (or `full`), the TTL window."""
    previous = fv.most_recent_end_time
    if previous is not None and not full:
        return min(previous, end)
    return end - fv.ttl if fv.ttl and fv.ttl > timedelta(0) else EPOCH
