"""Scoring requests: online features -> booster -> the response models' fields, each score with
its reasons.
No BentoML here, so the same code runs in the service and in plain tests.

Reasons come from XGBoost's per-row contributions, as in `training.explain`, so a reason reads
the same in the batch scores and over HTTP. The contribution pass is the costliest step of a
request, so it runs only over the rows whose reasons are answered: when that is every row, the
one pass also gives the probabilities (the contributions sum to the margin); when a /rank answer
leaves rows out (`top_k`, dropped unknown items) or reasons out, the probabilities come from
XGBoost's margin and the contributions from the returned rows alone. The two margins agree to
float32 rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xgboost as xgb

from serving.online import OnlineFeatureReader
from serving.redis_online import RedisFeatureReader
from serving.schemas import REASONS_PER_SCORE, PredictRequest, RankRequest
from training.calibration import Calibration, apply
from training.categories import Categories, category_of
from training.explain import top_contributions


def explained(booster: xgb.Booster, columns: list[str], matrix: np.ndarray,
              calibration: Calibration | None = None, categories: Categories | None = None
              ) -> tuple[np.ndarray, list[list[dict]]]:
    """P(positive) per row and its top reasons (the fields of `Reason`), from one pass over the
    trees: a row's contributions and the bias sum to its margin (XGBoost's identity, checked in
    the tests), whose sigmoid is the probability of a binary:logistic model, which every Persona
    model is (`serving.service.load_booster` refuses others), then mapped by the model's
    calibration (`training.calibration.apply`, as training and batch scoring do). A separate
    prediction cost 0.2 ms for 50 rows and 1.1 ms for 500."""
    if len(matrix) == 0:
        return np.empty(0), []
    contribs = contributions(booster, matrix)
    margin = contribs.sum(axis=1, dtype=np.float64)
    order, values, pushes = top_contributions(matrix, contribs, REASONS_PER_SCORE)
    names = np.asarray(columns, dtype=object)[order].tolist()
    values = np.where(np.isnan(values), None, values).tolist()  # a missing value is null
    reasons = [[reason(f, v, c, categories) for f, v, c in zip(*row)]
               for row in zip(names, values, pushes.tolist())]
    return probability(margin, calibration), reasons


def contributions(booster: xgb.Booster, matrix: np.ndarray) -> np.ndarray:
    """`training.explain.contributions` with one thread and without its per-call feature-name
    handling (a tenth of a millisecond of a 50-row request, in Python): the served matrix has
    the booster's columns in its order (`serving.service.check_inputs`). Equal value for value
    (tests/unit/test_serving_units.py)."""
    dmatrix = xgb.DMatrix(matrix, missing=np.nan, feature_types=booster.feature_types,
                          enable_categorical=True, nthread=1)
    return booster.predict(dmatrix, pred_contribs=True, approx_contribs=True,
                           validate_features=False)


def probabilities(booster: xgb.Booster, matrix: np.ndarray,
                  calibration: Calibration | None = None) -> np.ndarray:
    """P(positive) per row without the contribution pass, from XGBoost's own margin (the
    matrix's columns are the booster's, in its order: `serving.service.check_inputs`)."""
    margin = booster.inplace_predict(matrix, predict_type="margin", validate_features=False)
    return probability(np.asarray(margin, dtype=np.float64), calibration)


def probability(margin: np.ndarray, calibration: Calibration | None) -> np.ndarray:
    """A binary:logistic margin's probability, calibrated."""
    return apply(calibration, 1.0 / (1.0 + np.exp(-margin)))


def reason(feature: str, value: float | None, contribution: float,
           categories: Categories | None) -> dict:
    """A `Reason`'s fields; a categorical feature's code is named by its category."""
    if categories and feature in categories:
        return {"feature": feature, "value": None, "contribution": contribution,
                "category": category_of(categories, feature, value)}
    return {"feature": feature, "value": value, "contribution": contribution}


def rank_order(p: np.ndarray, cold_item: np.ndarray, unknown_items: str) -> list[int]:
    """Row positions, highest probability first (ties keep the request's order), with the items
    the catalogue does not know mixed in ("rank"), after every known one ("last") or left out
    ("drop"): with no item features their probability says little about the item."""
    order = np.argsort(-p, kind="stable")
    if unknown_items == "rank":
        return order.tolist()
    known, unknown = order[~cold_item[order]].tolist(), order[cold_item[order]].tolist()
    return known if unknown_items == "drop" else known + unknown


@dataclass(frozen=True)
class Scorer:
    """A loaded booster and the reader that builds its input matrix.

    Answers are the response models' fields as plain, JSON-ready values (checked against the
    models in the tests): for 500 candidates, building and validating the models took longer
    than reading their features.
    """

    booster: xgb.Booster
    reader: OnlineFeatureReader | RedisFeatureReader
    model_tag: str
    calibration: Calibration | None = None
    categories: Categories | None = None

    def explained(self, matrix: np.ndarray) -> tuple[np.ndarray, list[list[dict]]]:
        """P(conversion) and reasons per row."""
        return explained(self.booster, self.reader.columns, matrix, self.calibration,
                         self.categories)

    def rank(self, request: RankRequest) -> dict:
        """A `RankResponse`: unique items by probability, unknown ones placed (or dropped) as
        `unknown_items` says, at most `top_k`, with reasons unless `reasons` is false."""
        item_ids = list(dict.fromkeys(request.item_ids))  # dedupe, first occurrence kept
        rows = self.reader.for_user(request.user_id, item_ids)
        answered = len(item_ids)
        if request.unknown_items == "drop":
            answered -= int(rows.cold_item.sum())
        if request.reasons and request.top_k >= answered:  # every answered row's reasons
            p, why = self.explained(rows.matrix)
            chosen = rank_order(p, rows.cold_item, request.unknown_items)
            why = [why[i] for i in chosen]
        else:
            p = probabilities(self.booster, rows.matrix, self.calibration)
            chosen = rank_order(p, rows.cold_item, request.unknown_items)[:request.top_k]
            why = self.explained(rows.matrix[chosen])[1] if request.reasons else []
        scores, cold_item = p.tolist(), rows.cold_item.tolist()
        items = []
        for n, i in enumerate(chosen):
            item = {"item_id": item_ids[i], "probability": scores[i], "score": scores[i],
                    "cold_item": cold_item[i]}
            if request.reasons:
                item["reasons"] = why[n]
            items.append(item)
        cold_user = bool(rows.cold_user[0]) if len(rows.cold_user) else True
        stale_user = bool(rows.stale_user[0]) if len(rows.stale_user) else False
        return {"user_id": request.user_id, "model_tag": self.model_tag, "cold_user": cold_user,
                "stale_user": stale_user, "items": items}

    def predict(self, request: PredictRequest) -> dict:
        """A `PredictResponse`."""
        users = [p.user_id for p in request.pairs]
        items = [p.item_id for p in request.pairs]
        rows = self.reader.rows(users, items)
        p, why = self.explained(rows.matrix)
        scores = p.tolist()
        predictions = [
            {"user_id": u, "item_id": i, "probability": p, "cold_user": cu, "stale_user": su,
             "cold_item": ci, "reasons": r}
            for u, i, p, cu, su, ci, r in zip(users, items, scores, rows.cold_user.tolist(),
                                              rows.stale_user.tolist(), rows.cold_item.tolist(),
                                              why)
        ]
        return {"model_tag": self.model_tag, "predictions": predictions}
