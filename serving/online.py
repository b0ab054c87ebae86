"""Online features for scoring (user, item) pairs, kept apart from the BentoML service class.

The model's inputs are exactly what its feature service returns with full feature names, in the
order recorded in the model's metadata. Reading them takes two Feast calls:

1. `item_catalog` for the candidate items, which gives each item's category;
2. the feature service for rows `{user_id, item_id, category}`; the category keys the user x
   category affinity, and the on-demand features come from the shared transform through Feast.

A user or item the online store does not know is flagged cold and scored with missing values
(XGBoost routes NaN down each tree's default branch); it is never an error. For a v2 service the
rows also carry the request's arrival as `request_epoch_s` (the recency transforms' "now"), and
a categorical column is turned into the model's codes (`training.categories`), an unseen
category into a missing value.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from feast import FeatureService, FeatureStore
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

from persona.core.schema import REQUEST_TIME
from training.categories import Categories, codes

USER_KEY = "user_id"
ITEM_KEY = "item_id"
CATEGORY_KEY = "category"
CATALOG_VIEW = "item_catalog"
# A row was found (PRESENT) or found with a null value (NULL_VALUE); see found_rows for Redis.
_FOUND = (FieldStatus.PRESENT, FieldStatus.NULL_VALUE)
NUMERIC_KINDS = {"Int32", "Int64", "Float32", "Float64", "Bool"}


@dataclass(frozen=True)
class FeatureRows:
    """The model matrix for some (user, item) pairs, row for row, with cold-start flags."""

    matrix: np.ndarray  # (pairs, features) float64, NaN where a value is missing
    cold_user: np.ndarray  # bool per row: no online behaviour row for the user
    cold_item: np.ndarray  # bool per row: no catalogue row for the item
    # bool per row: a behaviour row of the user is older than its view's TTL by the clock (the
    # online store was not loaded since; `persona materialize` removes rows expired by then)
    stale_user: np.ndarray


class OnlineFeatureReader:
    """Builds model matrices from the online store for one feature service.

    Everything that depends only on the registry (the feature service, which of its columns are
    keyed by the user alone, the catalogue reference) is resolved here, once, at start-up; a model
    that asks for a column its feature service does not return is refused here too.
    """

    def __init__(self, store: FeatureStore, feature_service: str, columns: Sequence[str],
                 categories: Categories | None = None):
        self._store = store
        self._categories = dict(categories or {})
        self._service: FeatureService = resolve_service(store, feature_service, columns,
                                                        self._categories)
        self._request_time = needs_request_time(store, self._service)
        self.columns = list(columns)
        self._user_columns = self._columns_keyed_by({USER_KEY})
        if not self._user_columns:
            raise ValueError(f"feature service {feature_service!r} has no view keyed by {USER_KEY}")
        catalog = store.get_feature_view(CATALOG_VIEW)
        if CATEGORY_KEY not in {f.name for f in catalog.features}:
            raise ValueError(f"{CATALOG_VIEW} has no {CATEGORY_KEY!r} feature")
        self._catalog_ref = [f"{CATALOG_VIEW}:{CATEGORY_KEY}"]

    def for_user(self, user_id: str, item_ids: Sequence[str]) -> FeatureRows:
        """One user against candidate items (the /rank case)."""
        return self.rows([user_id] * len(item_ids), item_ids)

    def rows(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> FeatureRows:
        """Arbitrary (user, item) pairs, in the order given."""
        if len(user_ids) != len(item_ids):
            raise ValueError("user_ids and item_ids must have the same length")
        categories = self.categories(item_ids)
        rows = {
            USER_KEY: list(user_ids),
            ITEM_KEY: list(item_ids),
            # An unknown item has no category: "" matches no affinity row.
            CATEGORY_KEY: [categories.get(i) or "" for i in item_ids],
        }
        response = self._store.get_online_features(
            features=self._service, entity_rows=at_request_time(rows, self._request_time),
            full_feature_names=True).proto
        position = {name: i for i, name in enumerate(response.metadata.feature_names.val)}
        matrix = model_matrix(response, position, self.columns, self._categories)
        user_found = np.zeros(len(item_ids), dtype=bool)
        stale = np.zeros(len(item_ids), dtype=bool)
        now = time.time()
        for column, ttl in self._user_columns.items():
            user_found |= found_rows(response.results[position[column]])
            stale |= expired_rows(response.results[position[column]], ttl, now)
        cold_item = np.array([i not in categories for i in item_ids], dtype=bool)
        return FeatureRows(matrix, ~user_found, cold_item, stale)

    def categories(self, item_ids: Sequence[str]) -> dict[str, str | None]:
        """Step 1: each known item's category (None if its row holds no category); unknown
        items are left out."""
        unique = list(dict.fromkeys(item_ids))
        if not unique:
            return {}
        response = self._store.get_online_features(
            features=self._catalog_ref, entity_rows={ITEM_KEY: unique}
        ).proto
        names = list(response.metadata.feature_names.val)
        result = response.results[names.index(CATEGORY_KEY)]
        found = found_rows(result)
        values = [v.string_val if v.WhichOneof("val") == "string_val" else None
                  for v in result.values]
        return {item: value for item, value, ok in zip(unique, values, found) if ok}

    def _columns_keyed_by(self, join_keys: set[str]) -> dict[str, float | None]:
        """One column of each of the service's (non on-demand) views whose entity key is exactly
        `join_keys`, with the view's TTL: a view's columns share its row, so one tells whether
        the row is there, and how old. For the user, these are the behaviour views whose missing
        row makes a user cold."""
        views = {fv.name: fv for fv in self._store.list_feature_views()}
        columns = {}
        for projection in self._service.feature_view_projections:
            view = views.get(projection.name)
            if view is not None and {c.name for c in view.entity_columns} == join_keys:
                column = f"{projection.name_to_use()}__{projection.features[0].name}"
                columns[column] = ttl_seconds(view)
        return columns


def resolve_service(store: FeatureStore, name: str, columns: Sequence[str],
                    categories: Categories | None = None) -> FeatureService:
    """The feature service a model names, refused unless its columns are exactly the model's
    (in any order: the registry returns a projection's features in no fixed order), all numeric
    but the model's categorical ones. A model trained on another version of the service would
    be fed the wrong inputs."""
    service = store.get_feature_service(name)
    kinds = service_columns(service)
    unknown = [c for c in columns if c not in kinds]
    if unknown:
        raise ValueError(f"feature service {name!r} does not return {unknown}")
    unused = [c for c in kinds if c not in set(columns)]
    if unused:
        raise ValueError(f"feature service {name!r} returns {unused}, which the model does not "
                         "take")
    not_numeric = [c for c in columns
                   if kinds[c] not in NUMERIC_KINDS and c not in (categories or {})]
    if not_numeric:
        raise ValueError(f"model columns must be numeric, got {not_numeric}")
    return service


def service_columns(service: FeatureService) -> dict[str, str]:
    """Full feature name -> Feast dtype name, for every column a feature service returns."""
    return {
        f"{projection.name_to_use()}__{field.name}": str(field.dtype)
        for projection in service.feature_view_projections
        for field in projection.features
    }


def needs_request_time(store: FeatureStore, service: FeatureService) -> bool:
    """Whether an on-demand view of the service reads the request time (the recency views)."""
    on_demand = {v.name: v for v in store.list_on_demand_feature_views()}
    return any(on_demand[p.name].source_request_sources
               for p in service.feature_view_projections if p.name in on_demand)


def at_request_time(rows: dict[str, list], needed: bool) -> dict[str, list]:
    """Entity rows with the request's arrival as `request_epoch_s` when the service's recency
    transforms read it (`needs_request_time`)."""
    if not needed:
        return rows
    n = len(next(iter(rows.values()))) if rows else 0
    return {**rows, REQUEST_TIME: [time.time()] * n}


def model_matrix(response, position: Mapping[str, int], columns: Sequence[str],
                 categories: Categories) -> np.ndarray:
    """The model's columns of a get_online_features response as float64: numbers as they are,
    a categorical column as the codes of its strings (training.categories), NaN for missing."""
    n = len(response.results[0].values) if response.results else 0
    matrix = np.empty((n, len(columns)), dtype=np.float64)
    for j, column in enumerate(columns):
        values = response.results[position[column]].values
        matrix[:, j] = (codes(texts(values), categories[column]) if column in categories
                        else floats(values))
    return matrix


def texts(values) -> list[str | None]:
    """Feast Value protos -> strings, None for null."""
    return [v.string_val if v.WhichOneof("val") == "string_val" else None for v in values]


def floats(values) -> np.ndarray:
    """Feast Value protos -> float64, NaN for null; read field by field, which skips the
    per-value Python type conversion of OnlineResponse.to_dict."""
    out = np.full(len(values), np.nan)
    for i, value in enumerate(values):
        kind = value.WhichOneof("val")
        if kind is not None and kind != "null_val":
            out[i] = getattr(value, kind)
    return out


def expired_rows(vector, ttl_seconds: float | None, now: float) -> np.ndarray:
    """Per row of one feature's response vector: is the stored row older than its view's TTL
    at `now` (epoch seconds)? Feast 0.67 returns such rows as PRESENT, values and all."""
    if not ttl_seconds:
        return np.zeros(len(vector.event_timestamps), dtype=bool)
    return np.fromiter((ts.seconds != 0 and now - ts.seconds > ttl_seconds
                        for ts in vector.event_timestamps), dtype=bool,
                       count=len(vector.event_timestamps))


def ttl_seconds(view) -> float | None:
    """A feature view's TTL in seconds; None when it has none (its rows never expire)."""
    return view.ttl.total_seconds() if view.ttl and view.ttl.total_seconds() > 0 else None


def found_rows(vector) -> np.ndarray:
    """Per row of one feature's response vector: did the online store hold a row for the entity?

    SQLite answers a missing entity with status NOT_FOUND; Redis with PRESENT, an empty value and
    a zero timestamp. A stored row always carries its snapshot's (non-zero) timestamp.
    """
    return np.fromiter(
        (status in _FOUND and (ts.seconds != 0 or value.WhichOneof("val") is not None)
         for status, value, ts in zip(vector.statuses, vector.values, vector.event_timestamps)),
        dtype=bool, count=len(vector.values))
