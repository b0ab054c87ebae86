"""User-level answers: purchase propensity (with churn risk) and the profile of a shopper.

`PropensityScorer` scores users with the propensity model over its feature service (propensity_v1);
`Profiler` reads a user's profile (user_profile_v1), adds the propensity when a model is served and
evaluates the profile tags and segments of feature_repo/profile_tags.yaml. No BentoML here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from persona.profiling.expressions import QUANTILES
from persona.profiling.tags import TagBook
from serving.schemas import (
    Freshness,
    ProfileRequest,
    ProfileResponse,
    PropensityRequest,
    PropensityResponse,
    UserPropensity,
)
from serving.scoring import explained
from serving.users import ProfileReader, UserFeatureReader

if TYPE_CHECKING:
    import xgboost as xgb

# Model metadata the service relies on, beyond the feature list and feature service.
PROPENSITY_METADATA = ("task", "feature_service", "features", "horizon_days")
TASK = "propensity"


def short_name(feature: str) -> str:
    """"user_activity__spend_90d" -> "spend_90d"; a short name is returned as is."""
    return feature.rpartition("__")[2]


def stored_quantiles(metadata: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """The model's reference quantiles, keyed by short feature name and by q as the tag rules
    look it up ("0.9"); {} when the model has none."""
    out: dict[str, dict[str, float]] = {}
    for feature, values in (metadata.get("reference_quantiles") or {}).items():
        out[short_name(feature)] = {str(float(q)): float(v) for q, v in values.items()}
    return out


@dataclass(frozen=True)
class PropensityScorer:
    """The propensity booster, the reader that builds its matrix, and what its metadata says."""

    booster: xgb.Booster
    reader: UserFeatureReader
    model_tag: str
    horizon_days: float
    reference: dict[str, dict[str, float]] = field(default_factory=dict)
    calibration: Mapping[str, Any] | None = None  # training.calibration's map, if any
    categories: Mapping[str, Sequence[str]] | None = None  # the model's categorical columns

    @classmethod
    def from_metadata(cls, booster: xgb.Booster, metadata: Mapping[str, Any], model_tag: str,
                      store) -> PropensityScorer:
        """Refuses metadata that lacks what serving needs, naming the model and the keys."""
        missing = [k for k in PROPENSITY_METADATA if k not in metadata]
        if missing:
            raise ValueError(f"propensity model {model_tag}: metadata lacks {missing}")
        if metadata["task"] != TASK:
            raise ValueError(f"model {model_tag} was trained for task {metadata['task']!r}, "
                             f"not {TASK!r}")
        reader = UserFeatureReader(store, metadata["feature_service"], metadata["features"],
                                   metadata.get("categories"))
        return cls(booster, reader, model_tag, float(metadata["horizon_days"]),
                   stored_quantiles(metadata), metadata.get("calibration"),
                   metadata.get("categories"))

    def scores(self, user_ids: Sequence[str]) -> list[UserPropensity]:
        rows = self.reader.rows(user_ids)
        p, why = explained(self.booster, self.reader.columns, rows.matrix, self.calibration,
                           self.categories)
        return [
            UserPropensity(user_id=user, propensity=float(prob), cold_user=bool(cold),
                           churn_risk=None if cold else 1.0 - float(prob),
                           stale_user=bool(stale), reasons=r)
            for user, prob, cold, stale, r in zip(user_ids, p, rows.cold_user, rows.stale_user,
                                                  why)
        ]

    def score(self, request: PropensityRequest) -> PropensityResponse:
        return PropensityResponse(model_tag=self.model_tag, horizon_days=self.horizon_days,
                                  users=self.scores(request.user_ids))


def freshness_of(stamp: datetime | None, ttl_seconds: float | None, now: datetime) -> Freshness:
    """When a view's row was written, how old it is at `now`, and whether that is past the
    view's TTL (unknown without a row or a TTL)."""
    age = None if stamp is None else (now - stamp).total_seconds()
    stale = None if age is None or ttl_seconds is None else age > ttl_seconds
    return Freshness(event_timestamp=stamp, age_seconds=age, stale=stale)


@dataclass(frozen=True)
class Profiler:
    """A shopper's profile: online features, freshness, scores, tags and segment."""

    reader: ProfileReader
    book: TagBook
    propensity: PropensityScorer | None = None

    def profile(self, request: ProfileRequest, now: datetime | None = None) -> ProfileResponse:
        now = now or datetime.now(UTC)
        found = self.reader.read(request.user_id)
        score = self.propensity.scores([request.user_id])[0] if self.propensity else None
        tags, segment = self.tags(found.features, score.propensity if score else None,
                                  score.churn_risk if score else None)
        freshness = {view: freshness_of(ts, found.ttls.get(view), now)
                     for view, ts in found.timestamps.items()}
        return ProfileResponse(
            user_id=request.user_id, cold_user=found.cold_user, features=found.features,
            freshness=freshness, stale_views=[v for v, f in freshness.items() if f.stale],
            tags=tags, segment=segment,
            propensity=score.propensity if score else None,
            churn_risk=score.churn_risk if score else None,
            propensity_model_tag=self.propensity.model_tag if self.propensity else None,
        )

    def tags(self, features: Mapping[str, Any], propensity: float | None,
             churn_risk: float | None) -> tuple[list[str], str | None]:
        """Tags and segment of one shopper. Quantile rules compare with the propensity model's
        reference population; a quantile it does not give is missing (the rule is false), since
        one shopper is no population to take quantiles of."""
        row = {**features, "propensity": propensity, "churn_risk": churn_risk}
        frame = pd.DataFrame([{k: np.nan if v is None else v for k, v in row.items()}])
        reference = self.propensity.reference if self.propensity else {}
        reference = {name: {**dict.fromkeys(map(str, QUANTILES), np.nan),
                            **reference.get(name, {})} for name in self.book.names}
        out = self.book.evaluate(frame, reference=reference).iloc[0]
        segment = out["segment"]
        return list(out["tags"]), None if pd.isna(segment) else str(segment)
