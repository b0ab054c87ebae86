"""Point-in-time training frames from the feature store, validated before anything is fitted.

The feature service is the only list of features: the model's input columns are derived from it
here and stored with the model, so serving asks for exactly what training saw, in the same order.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import pandas as pd
from feast import FeatureStore
from feast.errors import FeatureViewNotFoundException
from feast.feature_view_projection import FeatureViewProjection

from expectations.gate import run_gate
from expectations.training import training_suite

log = logging.getLogger(__name__)

ENTITY_COLUMNS = ["user_id", "item_id", "category", "event_timestamp"]
LABEL = "label"
SORT = ["event_timestamp", "user_id", "item_id"]


class RetrievalError(RuntimeError):
    """The store returned a frame that does not match the entity rows asked for."""


class TrainingFrame(NamedTuple):
    """Keys, label and features; the model's input columns in order; the gate's summary."""

    frame: pd.DataFrame
    features: list[str]
    gate: dict


def _declared_order(store: FeatureStore, projection: FeatureViewProjection) -> list[str]:
    """The projection's features in their view's declared order.

    A service projection built from `view.schema` comes back from the registry in set order,
    which changes between processes; the view's `features` list keeps the declared order.
    """
    try:
        view = store.get_feature_view(projection.name)
    except FeatureViewNotFoundException:  # an on-demand view
        view = store.get_on_demand_feature_view(projection.name)
    rank = {f.name: i for i, f in enumerate(view.features)}
    return sorted((f.name for f in projection.features), key=lambda n: rank.get(n, len(rank)))


def feature_columns(store: FeatureStore, service: str, frame: pd.DataFrame) -> list[str]:
    """The service's numeric features as `view__feature` columns: views in the service's order,
    features in each view's declared order. Non-numeric features are left out (with a warning):
    the booster takes numbers only."""
    columns: list[str] = []
    for projection in store.get_feature_service(service).feature_view_projections:
        prefix = projection.name_to_use()
        for name in _declared_order(store, projection):
            column = f"{prefix}__{name}"
            if column not in frame.columns:
                raise RetrievalError(f"feature {column} of {service} is missing from the frame")
            if pd.api.types.is_numeric_dtype(frame[column]) and not pd.api.types.is_bool_dtype(
                    frame[column]):
                columns.append(column)
            else:
                log.warning("%s: leaving out non-numeric feature %s (%s)", service, column,
                            frame[column].dtype)
    return columns


def _check_rows(entity_df: pd.DataFrame, frame: pd.DataFrame) -> None:
    """Every entity row must come back exactly once: an offline store that drops rows whose
    entity only has later feature rows (Feast's dask store does) would bias the training set."""
    if len(frame) != len(entity_df):
        raise RetrievalError(f"asked for {len(entity_df)} entity rows, the store returned "
                             f"{len(frame)}")
    if frame.duplicated(["user_id", "item_id", "event_timestamp"]).any():
        raise RetrievalError("the entity frame has duplicated (user_id, item_id, event_timestamp)")


def training_frame(
    store: FeatureStore,
    entity_df: pd.DataFrame,
    service: str = "conversion_v1",
    docs_dir: Path | None = None,
) -> TrainingFrame:
    """Join the service's features onto labelled entity rows as of each row's time, keep the
    keys, label and numeric features (sorted by time, user, item), and run the training-frame
    gate on the result: a frame that fails it raises DataQualityError and is never fitted."""
    missing = [c for c in (*ENTITY_COLUMNS, LABEL) if c not in entity_df.columns]
    if missing:
        raise RetrievalError(f"entity frame lacks column(s) {missing}")
    retrieved = store.get_historical_features(
        entity_df=entity_df[[*ENTITY_COLUMNS, LABEL]],
        features=store.get_feature_service(service),
        full_feature_names=True,
    ).to_df()
    _check_rows(entity_df, retrieved)
    features = feature_columns(store, service, retrieved)
    frame = retrieved[[*ENTITY_COLUMNS, LABEL, *features]]
    frame = frame.sort_values(SORT, kind="stable").reset_index(drop=True)
    frame[LABEL] = frame[LABEL].astype("int64")
    gate = run_gate(training_suite(features, name=f"training.{service}"), frame, docs_dir)
    return TrainingFrame(frame, features, gate.summary())
