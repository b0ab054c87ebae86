"""The offline store on disk: versions of partitioned Parquet, published atomically.

A new version is written under a staging directory, renamed into `versions/`, and then the
`current` symlink is swapped to it with one atomic rename, so a reader (Feast's DuckDB store reads
through `current`) sees the previous complete version or the new complete one, never a mix.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from persona.core.catalog import Home
from persona.core.settings import Settings

MANIFEST = "manifest.json"


def _write_view(frame: pd.DataFrame, directory: Path, on_file: Callable[[], None]) -> None:
    """One Parquet file per UTC day of `event_timestamp` (partition `date=YYYY-MM-DD`);
    `on_file()` after each."""
    days = frame["event_timestamp"].dt.strftime("%Y-%m-%d")
    for day, part in frame.groupby(days, sort=True):
        target = directory / f"date={day}"
        target.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False)
        pq.write_table(_texts_not_nulls(table), target / "part-0.parquet")
        on_file()


def _texts_not_nulls(table: pa.Table) -> pa.Table:
    """A column with no value at all (users without any optional attribute) is written as text,
    not as Arrow's null type, which reads back as float64 and fails the string checks of the
    materialization gate. Only text columns can be all None: numbers missing are NaN floats."""
    for i, field in enumerate(table.schema):
        if pa.types.is_null(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(pa.string()))
    return table


def data_hash(version_dir: Path) -> str:
    """SHA-256 over every Parquet file of a version, in path order: the snapshot's identity."""
    digest = hashlib.sha256()
    for path in sorted(version_dir.rglob("*.parquet")):
        digest.update(str(path.relative_to(version_dir)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def publish(root: Path, features: dict[str, pd.DataFrame], info: dict,
            on_progress: Callable[[int, int], None] = lambda done, total: None) -> dict:
    """Write `features` as a new version under `root` and make it current; returns its manifest.
    `on_progress(done, total)` counts the Parquet files written."""
    versions = root / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    staging = root / f".staging-{version}"
    total = sum(int(frame["event_timestamp"].dt.floor("D").nunique())
                for frame in features.values())
    written = 0

    def on_file() -> None:
        nonlocal written
        written += 1
        on_progress(written, total)

    on_progress(written, total)
    for view, frame in features.items():
        _write_view(frame, staging / view, on_file)
    manifest = {
        **info,
        # the home's identity, kept by every version and by a copy of the home
        "home_id": (current_manifest(root) or {}).get("home_id") or uuid.uuid4().hex,
        "version": version,
        "data_hash": data_hash(staging),
        "rows": {view: int(len(frame)) for view, frame in features.items()},
        "published_at": datetime.now(UTC).isoformat(),
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
    os.rename(staging, versions / version)
    link = root / f".current-{version}"
    link.symlink_to(Path("versions") / version)
    os.replace(link, root / "current")
    _prune(root, keep={version, *(_previous(root, version))})
    return manifest


def _previous(root: Path, current: str) -> list[str]:
    names = sorted(p.name for p in (root / "versions").iterdir() if p.name != current)
    return names[-1:]


def _prune(root: Path, keep: set[str]) -> None:
    """Drop old versions and leftovers of interrupted runs; the last good one is kept too."""
    for path in (root / "versions").iterdir():
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
    for path in root.glob(".staging-*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in root.glob(".current-*"):
        path.unlink(missing_ok=True)


def home_of(settings: Settings) -> Home:
    """The home, as models record it: its path and the offline store's home id."""
    return Home(settings.home, (current_manifest(settings.offline_root) or {}).get("home_id"))


def current_manifest(root: Path) -> dict | None:
    """The manifest of the current version, or None before the first ingest."""
    path = root / "current" / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None
