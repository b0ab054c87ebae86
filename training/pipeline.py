"""`persona train`: labels -> point-in-time features (gated) -> time split -> fit -> evaluate ->
report -> model store. Only wiring; each stage lives in its own module."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pandas as pd

from persona.offline import current_manifest
from persona.raw import RawTables, read_raw
from persona.settings import Settings
from persona.store import feature_store
from training import report
from training.evaluate import evaluate, summary
from training.labels import conversion_labels
from training.model import FitResult, ModelParams, fit, predict
from training.model_store import MODEL_NAME, save_model
from training.retrieval import TrainingFrame, training_frame
from training.split import TimeSplit, time_split

SERVICE = "conversion_v1"
TASK = "conversion"
Step = Callable[[str], None]


class TrainingError(ValueError):
    """Training cannot start: nothing ingested yet, or the raw data is gone."""


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced; `metrics` is the same dict the model's metadata holds."""

    tag: str
    metrics: dict
    report_path: Path
    n_train: int
    n_valid: int


def _manifest(settings: Settings) -> dict:
    manifest = current_manifest(settings.offline_root)
    if manifest is None:
        raise TrainingError(f"no offline data under {settings.offline_root}: run persona ingest "
                            "first")
    return manifest


def _raw(manifest: dict, raw: RawTables | None) -> RawTables:
    """The raw tables the current offline version was computed from (or the ones given)."""
    if raw is not None:
        return raw
    raw_dir = manifest.get("raw_dir")
    if not raw_dir or not Path(raw_dir).exists():
        raise TrainingError(f"the raw directory of offline version {manifest.get('version')} "
                            f"({raw_dir}) is not available; re-run persona ingest")
    return read_raw(Path(raw_dir))


def _labels_until(manifest: dict, until: pd.Timestamp | None) -> pd.Timestamp | None:
    """Label only what the offline features cover: at most the ingested events' end."""
    ingested = manifest.get("events_until")
    if ingested is None:
        return until
    ingested = pd.Timestamp(ingested)
    return ingested if until is None else min(pd.Timestamp(until), ingested)


def _metadata(manifest: dict, settings: Settings, tf: TrainingFrame, split: TimeSplit,
              fitted: FitResult, metrics: dict, horizon_days: int) -> dict:
    """The metadata serving relies on (see training.model_store.REQUIRED_METADATA), plus how
    the model was fitted."""
    return {
        "task": TASK,
        "feature_service": SERVICE,
        "features": list(tf.features),
        "training_window": split.window(),
        "data_hash": manifest["data_hash"],
        "metrics": metrics,
        "validation": {"ingest": manifest.get("validation", {}), "training_frame": tf.gate},
        "snapshot_interval_seconds": manifest.get(
            "snapshot_interval_seconds", settings.snapshot_interval.total_seconds()),
        "label_horizon_days": horizon_days,
        "offline_version": manifest.get("version"),
        "best_iteration": fitted.best_iteration,
        "n_train": len(split.train),
        "n_valid": len(split.valid),
    }


def _report_and_save(settings: Settings, manifest: dict, tf: TrainingFrame, split: TimeSplit,
                     fitted: FitResult, horizon_days: int, gap: timedelta,
                     on_step: Step) -> tuple[str, dict, Path]:
    """Plots first (into a staging directory), then the model, then the page that names its
    tag; the report is published only once the model is saved."""
    evaluation = evaluate(split.train, split.valid,
                          predict(fitted.booster, split.valid, tf.features))
    metrics = summary(evaluation)
    on_step("writing the report")
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    staging = settings.reports_dir / f".staging-{uuid.uuid4().hex[:8]}"
    try:
        report.write_plots(evaluation, fitted.booster, staging)
        on_step("saving the model")
        tag = save_model(fitted.booster, _metadata(manifest, settings, tf, split, fitted,
                                                   metrics, horizon_days))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    info = {"tag": tag, "horizon_days": horizon_days, "feature_service": SERVICE,
            "features": tf.features, "data_hash": manifest["data_hash"],
            "training_window": split.window(), "n_train": len(split.train),
            "n_holdout": fitted.n_holdout, "best_iteration": fitted.best_iteration,
            "n_valid": len(split.valid), "gap_days": gap / timedelta(days=1)}
    (staging / report.REPORT).write_text(report.render(evaluation, fitted.booster, info))
    path = report.publish(staging, settings.reports_dir, tag.removeprefix(f"{MODEL_NAME}:"))
    return tag, metrics, path


def train(
    settings: Settings,
    *,
    horizon_days: int = 7,
    valid_days: int = 7,
    gap_days: int | None = None,
    until: pd.Timestamp | None = None,
    raw: RawTables | None = None,
    params: ModelParams = ModelParams(),
    on_step: Step = lambda _: None,
) -> TrainResult:
    """Train, evaluate, report and save the conversion model on the current offline version.

    `gap_days` (default: the horizon) separates train from validation so that no training
    label is decided by a purchase inside the validation period. `raw` replaces reading the
    raw directory recorded by ingest. Nothing is saved unless every stage succeeded.
    """
    manifest = _manifest(settings)
    on_step("labelling views")
    raw = _raw(manifest, raw)
    labels = conversion_labels(raw.events, raw.items, timedelta(days=horizon_days),
                               _labels_until(manifest, until))
    del raw
    on_step(f"retrieving point-in-time features for {len(labels)} views")
    tf = training_frame(feature_store(settings), labels, SERVICE, settings.docs_dir)
    del labels
    gap = timedelta(days=horizon_days if gap_days is None else gap_days)
    split = time_split(tf.frame, timedelta(days=valid_days), gap)
    tf = tf._replace(frame=None)  # the split holds the rows it needs
    on_step(f"fitting on {len(split.train)} rows")
    fitted = fit(split.train, tf.features, params)
    on_step(f"evaluating on {len(split.valid)} rows")
    tag, metrics, path = _report_and_save(settings, manifest, tf, split, fitted, horizon_days,
                                          gap, on_step)
    return TrainResult(tag, metrics, path, len(split.train), len(split.valid))
