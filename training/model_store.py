"""Persona's models in BentoML's model store: XGBoost's own format plus the metadata that
serving relies on. Each task is saved under its own name (`persona.core.catalog.MODELS`). The store
lives under BENTOML_HOME (BentoML reads it on first use)."""

from __future__ import annotations

import logging
import math
from typing import Any, NamedTuple

import bentoml
import xgboost as xgb

from persona.core.catalog import MODELS, Home, foreign_model_warning, newest_for_home, resolve_tag

log = logging.getLogger(__name__)

MODEL_NAME = MODELS["conversion"].model_name  # the default task's name, which serving imports
# The serving service reads these keys; a model without any of them is never saved.
REQUIRED_METADATA = ("task", "feature_service", "features", "training_window", "data_hash",
                     "metrics", "validation", "snapshot_interval_seconds", "home")
WINDOW_KEYS = ("train_from", "train_until", "valid_from", "valid_until")


class ModelMetadataError(ValueError):
    """Metadata that serving could not rely on."""


class ModelNotFoundError(LookupError):
    """No such model (or no model of the task yet) in the BentoML store."""


class StoredModel(NamedTuple):
    """A model read back from the store: its resolved tag ("name:version"), booster, metadata."""

    tag: str
    booster: xgb.Booster
    metadata: dict


def jsonable(value: Any) -> Any:
    """Plain JSON types all the way down: numpy scalars unwrapped, tuples as lists, paths and
    timestamps as strings. BentoML rejects None in metadata, so a dict entry that is None, NaN
    or infinite (an undefined metric, a Data Docs page that was not built) is left out."""
    if isinstance(value, dict):
        out = {str(k): jsonable(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def check_metadata(booster: xgb.Booster, metadata: dict) -> None:
    """Every key serving needs is there, and the feature list is the booster's input order."""
    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if missing:
        raise ModelMetadataError(f"model metadata lacks {missing}")
    window = metadata["training_window"]
    if not isinstance(window, dict) or any(k not in window for k in WINDOW_KEYS):
        raise ModelMetadataError(f"training_window must hold {list(WINDOW_KEYS)}")
    if list(metadata["features"]) != list(booster.feature_names or []):
        raise ModelMetadataError("metadata features differ from the booster's feature names")
    if metadata["task"] not in MODELS:
        raise ModelMetadataError(f"unknown task {metadata['task']!r}; known: {sorted(MODELS)}")


def save_model(booster: xgb.Booster, metadata: dict) -> str:
    """Save `booster` as a new version of its task's model name (`metadata["task"]`, e.g.
    persona-conversion); returns its tag ("name:version").

    Labels repeat the task and feature service, so `bentoml models list` can filter on them.
    """
    check_metadata(booster, metadata)
    clean = jsonable(metadata)
    labels = {"task": str(clean["task"]), "feature_service": str(clean["feature_service"]),
              "data_hash": str(clean["data_hash"])[:12]}
    name = MODELS[clean["task"]].model_name
    model = bentoml.xgboost.save_model(name, booster, metadata=clean, labels=labels)
    return str(model.tag)


def get_model(tag: str | None = None, task: str = "conversion",
              home: Home | None = None) -> StoredModel:
    """The model `tag` ("name:version", or just a version of the task's model), the task's
    latest version when None, with the tag resolved to its version. A model of another task is
    an error, so a pinned tag cannot silently answer the wrong question. With `home`, the
    latest is the latest trained on that home (`catalog.newest_for_home`), and a pinned model
    of another home is served with a warning."""
    if task not in MODELS:
        raise ModelMetadataError(f"unknown task {task!r}; known: {sorted(MODELS)}")
    name = MODELS[task].model_name
    if tag is None and home is not None:
        try:
            versions = bentoml.models.list(name)
        except bentoml.exceptions.NotFound:
            versions = []
        chosen = newest_for_home(versions, home, task)
        if chosen is None:
            raise ModelNotFoundError(f"no model {name} in the BentoML model store; train one "
                                     f"with persona train --task {task}")
        tag = str(chosen.tag)
    wanted = resolve_tag(name, tag)
    try:
        model = bentoml.models.get(wanted)
    except bentoml.exceptions.NotFound:
        raise ModelNotFoundError(f"no model {wanted} in the BentoML model store; train one with "
                                 f"persona train --task {task}") from None
    metadata = dict(model.info.metadata)
    if metadata.get("task") != task:
        raise ModelMetadataError(f"model {model.tag} was trained for task "
                                 f"{metadata.get('task')!r}, not {task!r}")
    warning = home is not None and foreign_model_warning(str(model.tag), metadata, home)
    if warning:
        log.warning("%s", warning)
    return StoredModel(str(model.tag), bentoml.xgboost.load_model(model), metadata)


def load_model(tag: str | None = None, task: str = "conversion",
               home: Home | None = None) -> tuple[xgb.Booster, dict]:
    """The booster and metadata of `tag` (see `get_model`), the task's latest when None."""
    stored = get_model(tag, task, home)
    return stored.booster, stored.metadata
