"""The conversion model in BentoML's model store: XGBoost's own format plus the metadata that
serving relies on. The store lives under BENTOML_HOME (BentoML reads it on first use)."""

from __future__ import annotations

import math
from typing import Any

import bentoml
import xgboost as xgb

MODEL_NAME = "persona-conversion"
# The serving service reads these keys; a model without any of them is never saved.
REQUIRED_METADATA = ("task", "feature_service", "features", "training_window", "data_hash",
                     "metrics", "validation", "snapshot_interval_seconds")
WINDOW_KEYS = ("train_from", "train_until", "valid_from", "valid_until")


class ModelMetadataError(ValueError):
    """Metadata that serving could not rely on."""


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


def save_model(booster: xgb.Booster, metadata: dict) -> str:
    """Save `booster` as a new version of MODEL_NAME; returns its tag ("name:version").

    Labels repeat the task and feature service, so `bentoml models list` can filter on them.
    """
    check_metadata(booster, metadata)
    clean = jsonable(metadata)
    labels = {"task": str(clean["task"]), "feature_service": str(clean["feature_service"]),
              "data_hash": str(clean["data_hash"])[:12]}
    model = bentoml.xgboost.save_model(MODEL_NAME, booster, metadata=clean, labels=labels)
    return str(model.tag)


def load_model(tag: str | None = None) -> tuple[xgb.Booster, dict]:
    """The booster and metadata of `tag` ("name:version", or just the version), the latest
    version when None."""
    if tag is None:
        tag = f"{MODEL_NAME}:latest"
    elif ":" not in tag:
        tag = f"{MODEL_NAME}:{tag}"
    model = bentoml.models.get(tag)
    booster = bentoml.xgboost.load_model(model)
    return booster, dict(model.info.metadata)
