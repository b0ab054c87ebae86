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
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from persona.core.catalog import Home
from persona.core.schema import ALL_TABLES, TIMESTAMP, Kind
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


def _new_version() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


def _link_tree(source: Path, target: Path) -> None:
    """Every file under `source` hard-linked under `target` (a version's files never change
    once published, so versions may share them)."""
    for path in source.rglob("*.parquet"):
        linked = target / path.relative_to(source)
        linked.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, linked)


def publish(root: Path, features: dict[str, pd.DataFrame], info: dict,
            on_progress: Callable[[int, int], None] = lambda done, total: None,
            carry: Sequence[str] = ()) -> dict:
    """Write `features` as a new version under `root` and make it current; returns its manifest.
    The partitions `extend` added to the views named in `carry` (retrieval's lists,
    availability updates) are kept from the current version. `on_progress(done, total)` counts
    the Parquet files written."""
    versions = root / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    version = _new_version()
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
    previous = current_manifest(root) or {}
    rows = {view: int(len(frame)) for view, frame in features.items()}
    for view in carry:
        for part in sorted((root / "current" / view).glob("run=*")):
            _link_tree(part, staging / view / part.name)
        if not (staging / view).is_dir():  # a source Feast can read before any row exists
            (staging / view / "run=none").mkdir(parents=True)
            pq.write_table(empty_table(view), staging / view / "run=none" / "part-0.parquet")
        rows[view] = sum(pq.read_metadata(p).num_rows
                         for p in (staging / view).rglob("*.parquet"))
    _commit(root, staging, version, {**info, "rows": rows}, previous)
    return current_manifest(root)


_ARROW = {Kind.STRING: pa.string(), Kind.COUNT: pa.int64(), Kind.AMOUNT: pa.float64(),
          Kind.RATE: pa.float64(), Kind.INSTANT: pa.float64(), Kind.FLAG: pa.int64(),
          Kind.TEXT_LIST: pa.list_(pa.string()), Kind.NUMBER_LIST: pa.list_(pa.float64())}


def empty_table(view: str) -> pa.Table:
    """No rows of `view`, in the types its rows are written with."""
    table = ALL_TABLES[view]
    return pa.schema([*((k, pa.string()) for k in table.keys),
                      (TIMESTAMP, pa.timestamp("us", tz="UTC")),
                      *((c.name, _ARROW[c.kind]) for c in table.columns)]).empty_table()


def extend(root: Path, views: dict[str, Iterable[pd.DataFrame]], run: str, info: dict) -> dict:
    """A new version holding the current one's files (linked, not copied) and `views`' rows,
    written chunk by chunk as the partition `run=<run>` of each (replacing one of that name),
    made current like `publish`; `info` is added to the current manifest. Returns the new
    manifest. An exception from a chunk leaves the current version as it was."""
    previous = current_manifest(root)
    if previous is None:
        raise FileNotFoundError(f"no offline version under {root} to extend")
    version = _new_version()
    staging = root / f".staging-{version}"
    _link_tree(root / "current", staging)
    rows = dict(previous.get("rows", {}))
    try:
        for view, chunks in views.items():
            part = staging / view / f"run={run}"
            shutil.rmtree(part, ignore_errors=True)
            part.mkdir(parents=True)
            writer = None
            for chunk in chunks:
                table = pa.Table.from_pandas(chunk.reset_index(drop=True), preserve_index=False)
                writer = writer or pq.ParquetWriter(part / "part-0.parquet", table.schema)
                writer.write_table(table)
            if writer is not None:
                writer.close()
            rows[view] = sum(pq.read_metadata(p).num_rows
                             for p in (staging / view).rglob("*.parquet"))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    kept = {k: v for k, v in previous.items()
            if k not in ("version", "data_hash", "published_at", "home_id")}
    _commit(root, staging, version, {**kept, **info, "rows": rows}, previous)
    return current_manifest(root)


def _commit(root: Path, staging: Path, version: str, info: dict, previous: dict) -> None:
    """Seal a staged version with its manifest and make it current, atomically."""
    versions = root / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    manifest = {
        **info,
        # the home's identity, kept by every version and by a copy of the home
        "home_id": previous.get("home_id") or uuid.uuid4().hex,
        "version": version,
        "data_hash": data_hash(staging),
        "published_at": datetime.now(UTC).isoformat(),
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
    os.rename(staging, versions / version)
    link = root / f".current-{version}"
    link.symlink_to(Path("versions") / version)
    os.replace(link, root / "current")
    _prune(root, keep={version, *(_previous(root, version))})


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
