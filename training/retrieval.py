"""Point-in-time training frames from the feature store, validated before anything is fitted.

The feature service is the only list of features: the model's input columns are derived from it
here and stored with the model, so serving asks for exactly what training saw, in the same order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import great_expectations as gx
import pandas as pd
from feast import FeatureStore
from feast.errors import FeatureViewNotFoundException
from feast.feature_view_projection import FeatureViewProjection

from expectations.gate import run_gate
from expectations.training import KEYS as SUITE_KEYS
from expectations.training import training_suite
from persona.core.catalog import CONVERSION_SERVICE
from persona.core.schema import REQUEST_TIME, epoch_seconds
from training.categories import is_categorical

log = logging.getLogger(__name__)

LABEL = "label"
TIME = "event_timestamp"


@dataclass(frozen=True)
class EntityRows:
    """The columns of a task's entity rows: what Feast joins on (`columns`, the timestamp
    last) and what identifies a row (`keys`)."""

    columns: tuple[str, ...]
    keys: tuple[str, ...]

    @property
    def sort(self) -> list[str]:
        """Time first, then the other keys."""
        return [TIME, *(k for k in self.keys if k != TIME)]


# A view of an item: `category` is the item's, the join key of user_category_affinity.
CONVERSION_ROWS = EntityRows(("user_id", "item_id", "category", TIME),
                             ("user_id", "item_id", TIME))
# A user at a snapshot time.
PROPENSITY_ROWS = EntityRows(("user_id", TIME), ("user_id", TIME))


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
    """The service's model inputs as `view__feature` columns: views in the service's order,
    features in each view's declared order. Numbers and strings (categories, encoded by
    `training.categories`); anything else is left out with a warning."""
    columns: list[str] = []
    for projection in store.get_feature_service(service).feature_view_projections:
        prefix = projection.name_to_use()
        for name in _declared_order(store, projection):
            column = f"{prefix}__{name}"
            if column not in frame.columns:
                raise RetrievalError(f"feature {column} of {service} is missing from the frame")
            values = frame[column]
            if is_categorical(values) or (pd.api.types.is_numeric_dtype(values)
                                          and not pd.api.types.is_bool_dtype(values)):
                columns.append(column)
            else:
                log.warning("%s: leaving out non-numeric feature %s (%s)", service, column,
                            frame[column].dtype)
    return columns


def _check_rows(entity_df: pd.DataFrame, frame: pd.DataFrame, keys: tuple[str, ...]) -> None:
    """Every entity row must come back exactly once: an offline store that drops rows whose
    entity only has later feature rows (Feast's dask store does) would bias the training set."""
    if len(frame) != len(entity_df):
        raise RetrievalError(f"asked for {len(entity_df)} entity rows, the store returned "
                             f"{len(frame)}")
    if frame.duplicated(list(keys)).any():
        raise RetrievalError(f"the entity frame has duplicated ({', '.join(keys)})")


def historical_features(
    store: FeatureStore,
    entity_df: pd.DataFrame,
    service: str,
    rows: EntityRows = CONVERSION_ROWS,
    carry: tuple[str, ...] = (),
) -> tuple[pd.DataFrame, list[str]]:
    """The service's features as of each entity row's time (Feast's point-in-time join, with
    the row's time as the request time of the recency transforms): the entity columns, the
    `carry` columns passed through untouched, and the model inputs in model order. Rows come
    back in the store's order, each exactly once."""
    missing = [c for c in (*rows.columns, *carry) if c not in entity_df.columns]
    if missing:
        raise RetrievalError(f"entity frame lacks column(s) {missing}")
    asked = entity_df[[*rows.columns, *carry]].assign(
        **{REQUEST_TIME: epoch_seconds(entity_df[TIME])})
    retrieved = store.get_historical_features(
        entity_df=asked,
        features=store.get_feature_service(service),
        full_feature_names=True,
    ).to_df()
    _check_rows(entity_df, retrieved, rows.keys)
    features = feature_columns(store, service, retrieved)
    return retrieved[[*rows.columns, *carry, *features]], features


def frame_suite(features: list[str], name: str, keys: tuple[str, ...]) -> gx.ExpectationSuite:
    """The training-frame suite for rows identified by `keys`: the conversion suite's checks,
    less those on key columns this task's rows do not have (a user-level row has no item)."""
    suite = training_suite(features, name=name)
    absent = set(SUITE_KEYS) - set(keys)
    if not absent:
        return suite
    kept = [e for e in suite.expectations if getattr(e, "column", None) not in absent]
    return gx.ExpectationSuite(name=suite.name, expectations=kept)


def training_frame(
    store: FeatureStore,
    entity_df: pd.DataFrame,
    service: str = CONVERSION_SERVICE,
    docs_dir: Path | None = None,
    rows: EntityRows = CONVERSION_ROWS,
) -> TrainingFrame:
    """Join the service's features onto labelled entity rows as of each row's time, keep the
    keys, label and numeric features (sorted by time, then the other keys), and run the
    training-frame gate on the result: a frame that fails it raises DataQualityError and is
    never fitted."""
    frame, features = historical_features(store, entity_df, service, rows, carry=(LABEL,))
    frame = frame.sort_values(rows.sort, kind="stable").reset_index(drop=True)
    frame[LABEL] = frame[LABEL].astype("int64")
    gate = run_gate(frame_suite(features, f"training.{service}", rows.keys), frame, docs_dir)
    return TrainingFrame(frame, features, gate.summary())
