"""`persona train`: labels -> point-in-time features (gated) -> time split -> fit -> evaluate ->
report -> model store, for either task (conversion or propensity). Only wiring; each stage
lives in its own module and what differs between tasks in `training.tasks`."""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path

import pandas as pd

from persona.core.settings import Settings
from persona.data.offline import current_manifest
from persona.data.raw import RawTables, read_ingested
from persona.featurestore.config import feature_store
from persona.profiling.segments import report_section
from training import report
from training.calibration import apply
from training.categories import learn
from training.evaluate import evaluate, summary
from training.model import FitResult, ModelParams, fit, predict
from training.model_store import save_model
from training.reference import reference_quantiles
from training.retrieval import TrainingFrame, training_frame
from training.split import TimeSplit, time_split
from training.tasks import TrainingTask, training_task
from training.tuning import tune as search

log = logging.getLogger(__name__)

TASK = "conversion"
SNAPSHOT_EVERY_DAYS = 7
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
    try:
        return read_ingested(manifest)
    except FileNotFoundError as exc:
        raise TrainingError(str(exc)) from None


def _labels_until(manifest: dict, until: pd.Timestamp | None) -> pd.Timestamp | None:
    """Label only what the offline features cover: at most the ingested events' end. A log
    that ends before `until` is observed only up to its last event: a quiet week after it
    may be a week that was never exported."""
    ingested = manifest.get("events_until")
    if ingested is None:
        return until
    ingested = pd.Timestamp(ingested)
    if until is not None and pd.Timestamp(until) > ingested:
        log.warning("--until %s is after the ingested log's last event (%s): labels end there",
                    pd.Timestamp(until).isoformat(), ingested.isoformat())
    return ingested if until is None else min(pd.Timestamp(until), ingested)


def _interval(manifest: dict, settings: Settings) -> timedelta:
    """The snapshot interval the current offline version was computed with."""
    seconds = manifest.get("snapshot_interval_seconds")
    return timedelta(seconds=seconds) if seconds else settings.snapshot_interval


@dataclass(frozen=True)
class Labelled:
    """A gated training frame and how it was made: what `train` fits on, and what a test of
    --until compares between two homes."""

    task: TrainingTask
    frame: TrainingFrame
    manifest: dict
    horizon_days: int
    until: pd.Timestamp | None  # the --until cut, None for the whole log
    every_days: int
    service: str  # the feature service the frame was retrieved through
    categories: dict[str, list[str]] | None = None  # learnt from the training rows at the split


def labelled_frame(
    settings: Settings,
    task: str = TASK,
    *,
    horizon_days: int | None = None,
    until: pd.Timestamp | None = None,
    every_days: int = SNAPSHOT_EVERY_DAYS,
    raw: RawTables | None = None,
    features: str | None = None,
    on_step: Step = lambda _: None,
) -> Labelled:
    """Label the task's rows from the raw log as known at `until` (default: all of it), join
    their point-in-time features through `features` (default the task's feature service; any
    version of it) and gate the frame.

    With `until`, no event after it is read: rows are at or before it and every label's horizon
    ends at or before it, so a copy of the log with later events gives the same frame.
    """
    spec = training_task(task)
    service = spec.feature_service(features)
    horizon = spec.default_horizon_days if horizon_days is None else horizon_days
    manifest = _manifest(settings)
    on_step(f"labelling {spec.name} rows")
    labels = spec.label(_raw(manifest, raw), timedelta(days=horizon),
                        _labels_until(manifest, until), _interval(manifest, settings),
                        timedelta(days=every_days))
    on_step(f"retrieving point-in-time features for {len(labels)} rows")
    tf = training_frame(feature_store(settings), labels, service, settings.docs_dir, spec.rows)
    return Labelled(spec, tf, manifest, horizon, until, every_days, service)


def _split(data: Labelled, valid_days: int | None, gap_days: int | None) -> TimeSplit:
    """Conversion: validate on the latest week of views, after a gap of one horizon.
    Propensity: validate on the latest fully labelled snapshot; train on snapshots whose
    horizon ends at or before it (T + horizon <= validation T), so no training label sees the
    validation period's purchases."""
    frame, horizon = data.frame.frame, data.horizon_days
    if data.task.per_user_ranking:
        valid = 7 if valid_days is None else valid_days
        gap = horizon if gap_days is None else gap_days
    else:
        valid = data.every_days if valid_days is None else valid_days
        gap = max(horizon - valid, 0) if gap_days is None else gap_days
    return time_split(frame, timedelta(days=valid), timedelta(days=gap))


def _metadata(data: Labelled, settings: Settings, split: TimeSplit, fitted: FitResult,
              metrics: dict, tuning: dict | None) -> dict:
    """The metadata serving relies on (see training.model_store.REQUIRED_METADATA), plus how
    the model was fitted and, for propensity, the reference quantiles of its features."""
    manifest, tf = data.manifest, data.frame
    meta = {
        "task": data.task.name,
        "feature_service": data.service,
        "features": list(tf.features),
        "categories": data.categories or {},
        "calibration": fitted.calibration,
        "training_window": split.window(),
        "data_hash": manifest["data_hash"],
        "metrics": metrics,
        "validation": {"ingest": manifest.get("validation", {}), "training_frame": tf.gate},
        "snapshot_interval_seconds": manifest.get(
            "snapshot_interval_seconds", settings.snapshot_interval.total_seconds()),
        "horizon_days": data.horizon_days,
        "label_horizon_days": data.horizon_days,
        "offline_version": manifest.get("version"),
        "home": str(settings.home),
        "home_id": manifest.get("home_id"),
        "best_iteration": fitted.best_iteration,
        "n_train": len(split.train),
        "n_valid": len(split.valid),
    }
    if tuning is not None:
        meta["tuning"] = tuning
    if data.until is not None:
        meta["until"] = pd.Timestamp(data.until).isoformat()
    if not data.task.per_user_ranking:
        meta["snapshot_every_days"] = data.every_days
        meta["reference_quantiles_at"] = split.valid_until.isoformat()
        numeric = [f for f in tf.features if f not in (data.categories or {})]
        meta["reference_quantiles"] = reference_quantiles(split.valid, numeric,
                                                          split.valid_until)
    return meta


def _report_info(data: Labelled, tag: str, split: TimeSplit, fitted: FitResult,
                 tuning: dict | None, params: ModelParams) -> dict:
    """What the report page says about the run."""
    spec = data.task
    notes = [] if spec.per_user_ranking else [
        f"snapshots every {data.every_days} days; churn risk of a previously active user is "
        "1 - propensity",
        f"reference quantiles (0.5/0.75/0.9/0.95) of every feature over the users at "
        f"{split.valid_until.isoformat()} are saved with the model"]
    return {"tag": tag, "title": spec.title, "positive": spec.positive,
            "baselines_text": spec.baselines_text, "horizon_days": data.horizon_days,
            "feature_service": data.service, "features": data.frame.features,
            "data_hash": data.manifest["data_hash"], "training_window": split.window(),
            "n_train": len(split.train), "n_holdout": fitted.n_holdout,
            "best_iteration": fitted.best_iteration, "n_valid": len(split.valid),
            "gap_days": (split.valid_from - split.train_until) / timedelta(days=1),
            "until": None if data.until is None else pd.Timestamp(data.until).isoformat(),
            "calibration": fitted.calibration["method"], "tuning": tuning, "notes": notes,
            "params": asdict(params), "train_positives": int(split.train["label"].sum())}


def _report_and_save(settings: Settings, data: Labelled, split: TimeSplit, fitted: FitResult,
                     on_step: Step, params: ModelParams, tuning: dict | None = None
                     ) -> tuple[str, dict, Path]:
    """Plots first (into a staging directory), then the model, then the page that names its
    tag; the report is published only once the model is saved."""
    spec = data.task
    raw = predict(fitted.booster, split.valid, data.frame.features, data.categories)
    probabilities = apply(fitted.calibration, raw)
    evaluation = evaluate(split.train, split.valid, probabilities, spec.baselines,
                          ndcg=spec.per_user_ranking, uncalibrated=raw,
                          fitted=spec.fitted_baselines(data.frame.features, data.horizon_days))
    metrics = summary(evaluation)
    on_step("writing the report")
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    staging = settings.reports_dir / f".staging-{uuid.uuid4().hex[:8]}"
    try:
        report.write_plots(evaluation, fitted.booster, staging)
        segments = ("\n" + report_section(split.valid, probabilities, staging)
                    if spec.name == "propensity" else "")
        on_step("saving the model")
        tag = save_model(fitted.booster, _metadata(data, settings, split, fitted, metrics,
                                                   tuning))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    page = report.render(evaluation, fitted.booster,
                         _report_info(data, tag, split, fitted, tuning, params))
    page += segments
    (staging / report.REPORT).write_text(page)
    path = report.publish(staging, settings.reports_dir, tag.split(":", 1)[1],
                          report.latest_name(spec.name))
    return tag, metrics, path


def train(
    settings: Settings,
    *,
    task: str = TASK,
    horizon_days: int | None = None,
    valid_days: int | None = None,
    gap_days: int | None = None,
    until: pd.Timestamp | None = None,
    every_days: int = SNAPSHOT_EVERY_DAYS,
    raw: RawTables | None = None,
    features: str | None = None,
    params: ModelParams | None = None,
    tune: bool = False,
    on_step: Step = lambda _: None,
) -> TrainResult:
    """Train, evaluate, report and save the task's model on the current offline version.

    Defaults per task: conversion labels views over 7 days and validates on the latest week
    after a gap of one horizon; propensity labels weekly snapshots (`every_days`) over 30 days
    and validates on the latest fully labelled one. `until` trains on what was known then.
    `raw` replaces reading the raw directory recorded by ingest; `features` names another
    version of the task's feature service; `params` replaces the task's booster defaults
    (training.tasks); `tune` searches the booster's parameters on the end
    of the training period first (training.tuning). Nothing is saved unless every stage
    succeeded.
    """
    data = labelled_frame(settings, task, horizon_days=horizon_days, until=until,
                          every_days=every_days, raw=raw, features=features, on_step=on_step)
    return train_labelled(settings, data, valid_days=valid_days, gap_days=gap_days,
                          params=params, tune=tune, on_step=on_step)


def train_labelled(
    settings: Settings,
    data: Labelled,
    *,
    valid_days: int | None = None,
    gap_days: int | None = None,
    params: ModelParams | None = None,
    tune: bool = False,
    on_step: Step = lambda _: None,
) -> TrainResult:
    """Split, (tune,) fit, evaluate, report and save from a frame `labelled_frame` built."""
    split = _split(data, valid_days, gap_days)
    params = data.task.params if params is None else params
    data = replace(data, frame=data.frame._replace(frame=None),  # the split holds the rows
                   categories=learn(split.train, data.frame.features))
    tuning = None
    if tune:
        params, tuning = search(split.train, data.frame.features, params, data.categories,
                                on_step=on_step)
    on_step(f"fitting on {len(split.train)} rows")
    fitted = fit(split.train, data.frame.features, params, data.categories)
    on_step(f"evaluating on {len(split.valid)} rows")
    tag, metrics, path = _report_and_save(settings, data, split, fitted, on_step, params, tuning)
    return TrainResult(tag, metrics, path, len(split.train), len(split.valid))
