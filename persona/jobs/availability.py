"""`persona availability FILE`: mark items available or not without a full ingest.

The file (CSV or Parquet: `item_id, available` with true/false, yes/no or 1/0) is checked
against the catalogue and the item_availability suite, stamped with the moment of the update,
published as a partition of a new offline version (`persona.data.offline.extend`: point in
time, so a list as of an earlier date still sees the old flags, and the next `persona ingest`
keeps it) and written to the online store at once, where the service's item cache is dropped.
A file that fails a check changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from persona.core.settings import Settings
from persona.data import offline, quality
from persona.data.locking import exclusive
from persona.data.raw import flags
from persona.featurestore import redis_layout
from persona.featurestore.config import feature_store

VIEW = "item_availability"


@dataclass(frozen=True)
class AvailabilityResult:
    items: int
    unavailable: int
    stamped: pd.Timestamp
    version: str


def update_availability(settings: Settings, path: Path) -> AvailabilityResult:
    """Validate, publish offline and write online the flags of `path`'s items."""
    if offline.current_manifest(settings.offline_root) is None:
        raise FileNotFoundError(f"nothing ingested under {settings.home}: run persona ingest")
    path = Path(path)
    frame = (pd.read_parquet(path) if path.suffix == ".parquet"
             else pd.read_csv(path, dtype={"item_id": "string", "available": "string"}))
    missing = [c for c in ("item_id", "available") if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(missing)} (expected item_id, available)")
    frame = frame.assign(item_id=frame["item_id"].astype("string"))
    if frame["item_id"].isna().any() or frame["item_id"].duplicated().any():
        raise ValueError(f"{path}: item_id must be present and unique on every row")
    unknown = sorted(set(frame["item_id"]) - _catalogue(settings))
    if unknown:
        raise ValueError(f"{path}: {len(unknown)} item(s) not in the catalogue, e.g. "
                         f"{unknown[:3]}")
    now = pd.Timestamp.now(tz="UTC").floor("us")
    rows = pd.DataFrame({"item_id": frame["item_id"].astype(object),
                         "event_timestamp": pd.Series([now] * len(frame),
                                                      dtype="datetime64[us, UTC]"),
                         "available": flags(frame, "available", path).to_numpy()})
    quality.check_features({VIEW: rows}, now + pd.Timedelta(seconds=1), settings.docs_dir)
    with exclusive(settings.lock_path):
        manifest = offline.extend(settings.offline_root, {VIEW: [rows]},
                                  now.strftime("%Y%m%dT%H%M%S%f"),
                                  {"availability_updated_at": now.isoformat()})
        store = feature_store(settings)
        store.write_to_online_store(VIEW, rows)
        if redis_layout.supports(store.config):
            redis_layout.mark_materialized(store.config)  # services drop their cached items
    return AvailabilityResult(len(rows), int((rows["available"] == 0).sum()), now,
                              manifest["version"])


def _catalogue(settings: Settings) -> set[str]:
    """The item ids of the current offline version's catalogue."""
    glob = settings.offline_current / "item_catalog" / "**" / "*.parquet"
    with duckdb.connect() as con:
        rows = con.execute(f"SELECT DISTINCT item_id FROM read_parquet('{glob}', "
                           "hive_partitioning = false)").fetchall()
    return {r[0] for r in rows}
