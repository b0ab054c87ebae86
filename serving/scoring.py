"""Scoring requests: online features -> booster -> response models, each score with its reasons.
No BentoML here, so the same code runs in the service and in plain tests.

Reasons come from `training.explain` (XGBoost's per-row contributions), computed once per request
for the whole matrix, so a reason reads the same in the batch scores and over HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from serving.online import OnlineFeatureReader
from serving.redis_online import RedisFeatureReader
from serving.schemas import (
    REASONS_PER_SCORE,
    Prediction,
    PredictRequest,
    PredictResponse,
    RankRequest,
    RankResponse,
)
from training.explain import contributions, top_reasons

if TYPE_CHECKING:
    import xgboost as xgb


def probabilities(booster: xgb.Booster, matrix: np.ndarray) -> np.ndarray:
    """P(positive) per row; `inplace_predict` skips building a DMatrix."""
    if len(matrix) == 0:
        return np.empty(0)
    return np.asarray(booster.inplace_predict(matrix, missing=np.nan), dtype=np.float64)


def reasons(booster: xgb.Booster, columns: list[str], matrix: np.ndarray) -> list[list[dict]]:
    """The top contributing inputs of every row, from one contributions call for the matrix;
    as the fields of `Reason`, which the response model validates in one pass."""
    if len(matrix) == 0:
        return []
    top = top_reasons(columns, matrix, contributions(booster, matrix, nthread=1),
                      REASONS_PER_SCORE)
    return [[{"feature": r.feature, "value": r.value, "contribution": r.contribution}
             for r in row] for row in top]


@dataclass(frozen=True)
class Scorer:
    """A loaded booster and the reader that builds its input matrix."""

    booster: xgb.Booster
    reader: OnlineFeatureReader | RedisFeatureReader
    model_tag: str

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        """P(conversion) per row."""
        return probabilities(self.booster, matrix)

    def reasons(self, matrix: np.ndarray) -> list[list[dict]]:
        return reasons(self.booster, self.reader.columns, matrix)

    def rank(self, request: RankRequest) -> RankResponse:
        item_ids = list(dict.fromkeys(request.item_ids))  # dedupe, first occurrence kept
        rows = self.reader.for_user(request.user_id, item_ids)
        p = self.probabilities(rows.matrix)
        scores = p.tolist()
        why = self.reasons(rows.matrix)
        order = np.argsort(-p, kind="stable")  # ties keep the request's order
        cold_item = rows.cold_item.tolist()
        items = [{"item_id": item_ids[i], "score": scores[i], "cold_item": cold_item[i],
                  "reasons": why[i]} for i in order.tolist()]
        cold_user = bool(rows.cold_user[0]) if len(rows.cold_user) else True
        # One validation of plain fields (pydantic's core) instead of a model per item and reason.
        return RankResponse.model_validate({"user_id": request.user_id, "model_tag": self.model_tag,
                                            "cold_user": cold_user, "items": items})

    def predict(self, request: PredictRequest) -> PredictResponse:
        users = [p.user_id for p in request.pairs]
        items = [p.item_id for p in request.pairs]
        rows = self.reader.rows(users, items)
        scores = self.probabilities(rows.matrix)
        why = self.reasons(rows.matrix)
        predictions = [
            Prediction(user_id=u, item_id=i, probability=float(p),
                       cold_user=bool(cu), cold_item=bool(ci), reasons=r)
            for u, i, p, cu, ci, r in zip(users, items, scores, rows.cold_user, rows.cold_item,
                                          why)
        ]
        return PredictResponse(model_tag=self.model_tag, predictions=predictions)
