"""Scoring requests: online features -> booster -> response models. No BentoML here, so the same
code runs in the service and in plain tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from serving.online import OnlineFeatureReader
from serving.schemas import (
    PredictRequest,
    PredictResponse,
    Prediction,
    RankedItem,
    RankRequest,
    RankResponse,
)

if TYPE_CHECKING:  # xgboost is imported by the service, after it sets OpenMP's wait policy
    import xgboost as xgb


@dataclass(frozen=True)
class Scorer:
    """A loaded booster and the reader that builds its input matrix."""

    booster: xgb.Booster
    reader: OnlineFeatureReader
    model_tag: str

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        """P(conversion) per row; `inplace_predict` skips building a DMatrix."""
        if len(matrix) == 0:
            return np.empty(0)
        return np.asarray(self.booster.inplace_predict(matrix, missing=np.nan), dtype=np.float64)

    def rank(self, request: RankRequest) -> RankResponse:
        item_ids = list(dict.fromkeys(request.item_ids))  # dedupe, first occurrence kept
        rows = self.reader.for_user(request.user_id, item_ids)
        scores = self.probabilities(rows.matrix)
        order = np.argsort(-scores, kind="stable")  # ties keep the request's order
        items = [
            RankedItem(item_id=item_ids[i], score=float(scores[i]),
                       cold_item=bool(rows.cold_item[i]))
            for i in order
        ]
        cold_user = bool(rows.cold_user[0]) if len(rows.cold_user) else True
        return RankResponse(user_id=request.user_id, model_tag=self.model_tag,
                            cold_user=cold_user, items=items)

    def predict(self, request: PredictRequest) -> PredictResponse:
        users = [p.user_id for p in request.pairs]
        items = [p.item_id for p in request.pairs]
        rows = self.reader.rows(users, items)
        scores = self.probabilities(rows.matrix)
        predictions = [
            Prediction(user_id=u, item_id=i, probability=float(p),
                       cold_user=bool(cu), cold_item=bool(ci))
            for u, i, p, cu, ci in zip(users, items, scores, rows.cold_user, rows.cold_item)
        ]
        return PredictResponse(model_tag=self.model_tag, predictions=predictions)
