"""`persona ingest`: raw directory -> validated point-in-time snapshots -> offline store ->
registry.

Nothing is written until every gate passed: the raw tables, then the computed feature tables.
A rejected batch leaves the previous published version and the registry untouched. Retrieval's
lists (`persona train --task retrieval`) and availability updates (`persona availability`) are
carried into the new version.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from persona.core.schema import RETRIEVAL_TABLES
from persona.core.settings import Settings
from persona.data import offline, quality
from persona.data.locking import exclusive
from persona.data.raw import PLAIN_READ, ReadOptions, read_raw
from persona.data.snapshots import compute_features
from persona.featurestore.registry import apply_definitions
from persona.jobs.progress import Count

Step = Callable[[str], None]


def ingest(settings: Settings, raw_dir: Path, on_step: Step = lambda _: None,
           lock_wait: float = 120.0, options: ReadOptions = PLAIN_READ,
           on_progress: Count = lambda done, total: None) -> dict:
    """Validate, compute, publish and register; returns the published version's manifest.
    A second writer on the same home waits up to `lock_wait` seconds, then fails clearly.
    `options` (timestamp layout, dedupe) are recorded, so training re-reads the log alike.
    `on_step` names each stage; `on_progress` counts the feature tables computed, then the
    files published."""
    with exclusive(settings.lock_path, lock_wait):
        on_step("reading raw tables")
        raw = read_raw(raw_dir, options)
        now = pd.Timestamp.now(tz="UTC")
        on_step("validating raw tables")
        raw_results = quality.check_raw(raw, now, settings.docs_dir)
        on_step("computing feature tables")
        features = compute_features(raw, settings.snapshot_interval, settings.prior_strength,
                                    on_progress=on_progress)
        on_step("validating feature tables")
        feature_results = quality.check_features(features, now, settings.docs_dir)
        on_step("publishing files to the offline store")
        events = raw.events["event_timestamp"]
        manifest = offline.publish(settings.offline_root, features, {
            "raw_dir": str(Path(raw_dir).resolve()),
            "read_options": options.record(),
            "duplicate_event_ids_dropped": raw.duplicate_ids_dropped,
            "snapshot_interval_seconds": settings.snapshot_interval.total_seconds(),
            "events_from": events.min().isoformat() if len(events) else None,
            "events_until": events.max().isoformat() if len(events) else None,
            "validation": {**raw_results, **feature_results},
        }, on_progress=on_progress, carry=(*RETRIEVAL_TABLES, "item_availability"))
        on_step("registering feature definitions")
        apply_definitions(settings)
        return manifest
