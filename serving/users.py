"""Online features keyed by the user alone: the propensity model's matrix and a user's profile.

Both read a feature service through Feast in one call and decode the response protobuf field by
field, like `serving.online`. A user is "warm" (previously active) when the online store holds a
`user_activity` row for them; a user without one is cold: scored with missing features, never an
error.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from feast import FeatureService, FeatureStore

from persona.core.catalog import PROFILE_SERVICE
from serving.online import (
    USER_KEY,
    at_request_time,
    expired_rows,
    found_rows,
    model_matrix,
    needs_request_time,
    resolve_service,
    ttl_seconds,
)
from serving.schemas import FeatureValue
from training.categories import Categories

ACTIVITY_VIEW = "user_activity"  # a row here means the user was active within its window


@dataclass(frozen=True)
class UserRows:
    """The model matrix for some users, row for row, with the cold-start flag."""

    matrix: np.ndarray  # (users, features) float64, NaN where a value is missing
    cold_user: np.ndarray  # bool per row: no user_activity row for the user
    stale_user: np.ndarray  # bool per row: its user_activity row is older than the view's TTL


class UserFeatureReader:
    """Builds the matrix of a user-level model (one row per user) from its feature service.

    The service must return every model column, numeric, and only views keyed by the user; it
    must include `user_activity`, whose row decides whether a user is cold. Checked once, here.
    """

    def __init__(self, store: FeatureStore, feature_service: str, columns: Sequence[str],
                 categories: Categories | None = None):
        self._store = store
        self._categories = dict(categories or {})
        self._service: FeatureService = resolve_service(store, feature_service, columns,
                                                        self._categories)
        self._request_time = needs_request_time(store, self._service)
        self.columns = list(columns)
        _check_user_keyed(store, self._service)
        self._activity_column = _first_column_of(self._service, ACTIVITY_VIEW)
        self._activity_ttl = ttl_seconds(store.get_feature_view(ACTIVITY_VIEW))

    def rows(self, user_ids: Sequence[str]) -> UserRows:
        """One row per requested user, in order, duplicates included (each user is read once)."""
        unique = list(dict.fromkeys(user_ids))
        response = self._store.get_online_features(
            features=self._service,
            entity_rows=at_request_time({USER_KEY: unique}, self._request_time),
            full_feature_names=True).proto
        position = {name: i for i, name in enumerate(response.metadata.feature_names.val)}
        read = model_matrix(response, position, self.columns, self._categories)
        activity = response.results[position[self._activity_column]]
        found = found_rows(activity)
        stale = expired_rows(activity, self._activity_ttl, time.time())
        index = {user: i for i, user in enumerate(unique)}
        take = np.fromiter((index[u] for u in user_ids), dtype=np.intp, count=len(user_ids))
        return UserRows(read[take], ~found[take], stale[take])


@dataclass(frozen=True)
class Profile:
    """One user's online features (short names) and when each view's row was written."""

    features: dict[str, FeatureValue]  # only the views the store holds a row of
    timestamps: dict[str, datetime | None]  # every view of the service; None when no row
    cold_user: bool  # no user_activity row
    ttls: dict[str, float | None]  # every view's TTL in seconds; None: its rows never expire


class ProfileReader:
    """Reads a user's profile through a feature service of user-keyed views (user_profile_v1).

    Features are answered view by view in the service's order, each view's features in their
    declared order (the registry hands a projection's features back in no fixed order).
    """

    def __init__(self, store: FeatureStore, feature_service: str = PROFILE_SERVICE):
        self._store = store
        self._service: FeatureService = store.get_feature_service(feature_service)
        _check_user_keyed(store, self._service)
        views = {fv.name: fv for fv in store.list_feature_views()}
        self.views = [p.name_to_use() for p in self._service.feature_view_projections]
        self.ttls = {p.name_to_use(): ttl_seconds(views[p.name])
                     for p in self._service.feature_view_projections}
        if ACTIVITY_VIEW not in self.views:
            raise ValueError(f"feature service {feature_service!r} lacks {ACTIVITY_VIEW}")
        self._columns = [  # (view, feature, full name)
            (p.name_to_use(), f.name, f"{p.name_to_use()}__{f.name}")
            for p in self._service.feature_view_projections
            for f in views[p.name].features if f.name in {g.name for g in p.features}
        ]

    def read(self, user_id: str) -> Profile:
        response = self._store.get_online_features(
            features=self._service, entity_rows={USER_KEY: [user_id]}, full_feature_names=True,
        ).proto
        position = {name: i for i, name in enumerate(response.metadata.feature_names.val)}
        features: dict[str, FeatureValue] = {}
        timestamps: dict[str, datetime | None] = dict.fromkeys(self.views)
        for view, feature, column in self._columns:
            vector = response.results[position[column]]
            if not found_rows(vector)[0]:
                continue  # the store holds no row of this view for the user
            features[feature] = python_value(vector.values[0])
            if timestamps[view] is None:
                stamp = vector.event_timestamps[0]
                timestamps[view] = datetime.fromtimestamp(
                    stamp.seconds + stamp.nanos / 1e9, tz=UTC)
        return Profile(features, timestamps, timestamps[ACTIVITY_VIEW] is None, self.ttls)


def python_value(value) -> FeatureValue:
    """A Feast Value proto as a JSON-safe Python scalar; null and NaN are None."""
    kind = value.WhichOneof("val")
    if kind is None or kind == "null_val":
        return None
    out = getattr(value, kind)
    if isinstance(out, float) and not math.isfinite(out):
        return None
    return out if isinstance(out, (str, int, float, bool)) else str(out)


def _check_user_keyed(store: FeatureStore, service: FeatureService) -> None:
    """Every view of the service is keyed by the user alone (one online row per user); its
    on-demand views compute from those."""
    views = {fv.name: fv for fv in store.list_feature_views()}
    on_demand = {v.name for v in store.list_on_demand_feature_views()}
    for projection in service.feature_view_projections:
        if projection.name in on_demand:
            continue
        view = views.get(projection.name)
        if view is None or {c.name for c in view.entity_columns} != {USER_KEY}:
            raise ValueError(f"feature service {service.name!r}: view {projection.name!r} is "
                             f"not keyed by {USER_KEY} alone")


def _first_column_of(service: FeatureService, view: str) -> str:
    for projection in service.feature_view_projections:
        if projection.name == view:
            return f"{projection.name_to_use()}__{projection.features[0].name}"
    raise ValueError(f"feature service {service.name!r} lacks {view}")
