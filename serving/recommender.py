"""/recommend: top-k items from the whole catalogue for a shopper, from online features.

The same steps as `persona recommend` (persona/jobs/recommend.py), on the online store: the
user's user_candidates row (retrieval's lists, materialized like every view), else the popular
items of their region from the retrieval model (a cold user); the recommend_v1 features of
each candidate through the same reader /rank uses (`serving.redis_online.online_reader`);
the stored ranker (`training.recommend_ranker.Ranker`); the business rules
(`training.recommend_ranker.apply_rules`: "bought" from the user x item history, "unavailable"
from item_availability, both among the features just read).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from feast import FeatureStore

from persona.recommend.rules import RuleBook
from serving.schemas import RecommendRequest
from training.candidates import GENERATORS, Generators, cold_candidates, from_lists
from training.recommend_ranker import (
    AVAILABLE,
    BOUGHT,
    RETRIEVAL_FEATURES,
    Ranker,
    apply_rules,
)

LISTS = ["candidate_items", "candidate_sources", "candidate_scores",
         *(f"{f}s" for f in RETRIEVAL_FEATURES)]
VIEWS_COLUMN = "user_item_history__pair_views_lifetime"


class Recommender:
    """Answers /recommend for one ranker, one retrieval model and the declared rules."""

    def __init__(self, store: FeatureStore, reader, ranker: Ranker, generators: Generators,
                 info: dict[str, dict], rules: RuleBook, tags: dict[str, str], size: int):
        self._store, self._reader, self.ranker = store, reader, ranker
        self._generators, self._info, self._rules = generators, info, rules
        self.tags, self._size = tags, size
        self._service_columns = ranker.features[len(RETRIEVAL_FEATURES):]
        if list(reader.columns) != list(self._service_columns):
            raise ValueError("the ranker's inputs are not retrieval's then its service's")
        self._rule_columns = [(BOUGHT, self._service_columns.index(BOUGHT)),
                              (AVAILABLE, self._service_columns.index(AVAILABLE))]
        self._views = (self._service_columns.index(VIEWS_COLUMN)
                       if VIEWS_COLUMN in self._service_columns else None)
        self._candidate_refs = [f"user_candidates:{c}" for c in LISTS]

    def candidates(self, user_id: str) -> tuple[list[dict], bool]:
        """The user's candidates online, or the cold list; and whether the user is cold."""
        row = self._store.get_online_features(features=self._candidate_refs,
                                              entity_rows=[{"user_id": user_id}]).to_dict()
        listed = from_lists({c: row[c][0] for c in LISTS})
        if listed is not None:
            return listed, False
        region = self._store.get_online_features(
            features=["user_profile:region"], entity_rows=[{"user_id": user_id}]).to_dict()
        return cold_candidates(self._generators, region["region"][0], self._size), True

    def recommend(self, request: RecommendRequest) -> dict:
        listed, cold = self.candidates(request.user_id)
        if request.context.category is not None:
            listed = [c for c in listed
                      if self._info.get(c["item_id"], {}).get("category")
                      == request.context.category]
        items = [c["item_id"] for c in listed]
        if not items:
            return self._answer(request.user_id, [], cold)
        rows = self._reader.for_user(request.user_id, items)
        retrieval = np.array([[c[f] for f in RETRIEVAL_FEATURES] for c in listed], np.float64)
        relevance, score = self.ranker.scores(np.hstack([retrieval, rows.matrix]))
        order = np.argsort(-relevance, kind="stable")
        ranked = [{**listed[i], "score": float(score[i]), "relevance": float(relevance[i]),
                   "views": float(rows.matrix[i, self._views]) if self._views is not None
                   else np.nan,
                   **{name: rows.matrix[i, j] for name, j in self._rule_columns}}
                  for i in order]
        kept = apply_rules(self._rules, ranked, request.k, self._info,
                           exclude=request.exclude_item_ids)
        return self._answer(request.user_id, kept, cold)

    def _answer(self, user_id: str, kept: Sequence[dict], cold: bool) -> dict:
        return {"user_id": user_id, "cold_user": cold, "model_tags": self.tags,
                "items": [{"item_id": c["item_id"], "score": min(max(c["score"], 0.0), 1.0),
                           "relevance": c["relevance"], "source": c["source"],
                           "sources": _sources(c), "reasons": _reasons(c, cold)}
                          for c in kept]}


def _sources(candidate: dict) -> list[str]:
    return [g for g in GENERATORS if not np.isnan(candidate[f"{g}_rank"])]


def _reasons(candidate: dict, cold: bool) -> list[str]:
    """In words: which lists hold the item, and the shopper's own history with it."""
    if cold:
        out = [f"popular lately (rank {int(candidate['popularity_rank'])})"]
    else:
        out = [f"{g} list, rank {int(candidate[f'{g}_rank'])}" for g in _sources(candidate)]
    views = candidate.get("views")
    if views is not None and not np.isnan(views) and views > 0:
        out.append(f"viewed {int(views)} time{'s' if views != 1 else ''} before")
    return out
