"""The Persona BentoML service: conversion scores for (user, item) pairs from online features.

A thin shell around `serving.scoring.Scorer`. The model is declared at class scope so that a built
Bento references it; which model is read from PERSONA_MODEL_TAG (default the latest
`persona-conversion`) when this module is imported. Which online store is read from
PERSONA_HOME / PERSONA_REDIS_URL when the service starts. BentoML adds /livez, /readyz,
/healthz, /metrics and the OpenAPI document at /docs.json.
"""

from __future__ import annotations

import logging
import os

import bentoml
import redis.exceptions
from bentoml.exceptions import ServiceUnavailable

from serving import SERVICE_NAME, resolve_model_tag
from serving.schemas import PredictRequest, PredictResponse, RankRequest, RankResponse

logger = logging.getLogger(__name__)
_UNREACHABLE = (ConnectionError, TimeoutError, redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError)


def passive_openmp() -> None:
    """OpenMP's wait policy is read when OpenMP loads, which is when xgboost is first imported:
    with the default (active) policy on a small machine, predictions were seen 40x slower."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def load_booster(stored: bentoml.Model):
    """The booster of a stored model, set up for low-latency single-threaded prediction (one
    thread per prediction and a passive OpenMP wait policy, set before xgboost is imported)."""
    passive_openmp()
    import bentoml.xgboost  # noqa: PLC0415  (imports xgboost)

    booster = bentoml.xgboost.load_model(stored)
    booster.set_param({"nthread": 1})
    return booster


def check_inputs(booster, features: list[str], tag: str) -> None:
    """The metadata's feature list is the booster's input, in the booster's order."""
    names = booster.feature_names
    if booster.num_features() != len(features) or (names and list(names) != list(features)):
        raise ValueError(f"model {tag}: metadata features do not match the booster's inputs")


@bentoml.service(name=SERVICE_NAME, workers=1, traffic={"timeout": 30})
class PersonaService:
    """Ranks candidate items for a shopper and scores (user, item) pairs."""

    model = bentoml.models.BentoModel(resolve_model_tag())

    def __init__(self) -> None:
        passive_openmp()  # before anything below imports xgboost
        # Imported here, in the worker: `bentoml serve` also imports this module in its
        # supervising process, which needs the API definitions but not Feast (seconds to import).
        from persona.settings import Settings
        from persona.store import feature_store
        from serving.online import OnlineFeatureReader
        from serving.scoring import Scorer

        stored = self._stored_model()
        metadata = stored.info.metadata
        booster = load_booster(stored)
        check_inputs(booster, metadata["features"], str(stored.tag))
        store = feature_store(Settings.from_env())
        reader = OnlineFeatureReader(store, metadata["feature_service"], metadata["features"])
        self.scorer = Scorer(booster, reader, str(stored.tag))
        rows = reader.for_user("warm-up", ["warm-up"])
        self.scorer.probabilities(rows.matrix)
        self.scorer.reasons(rows.matrix)
        logger.info("serving %s with feature service %s", stored.tag, metadata["feature_service"])

    def _stored_model(self) -> bentoml.Model:
        """The model to load. Served from a built Bento, it is the version the Bento recorded:
        the class attribute's `:latest` would otherwise be resolved again, at start-up, to
        whatever is newest in the model store (BentoML re-pins only Hugging Face models)."""
        bento = PersonaService.bento
        if bento is None:
            return self.model
        info = next(s for s in bento.info.services if s.name == SERVICE_NAME)
        return bentoml.models.get(info.models[0].tag)

    @bentoml.api(route="/rank")
    def rank(self, request: RankRequest, /) -> RankResponse:
        """Rank candidate items for a shopper by the probability that a view converts to a purchase within 7 days, highest first. Unknown shoppers and items are scored with their features missing and flagged `cold_user` / `cold_item`."""  # noqa: E501 (one line: it is the OpenAPI description)
        return self._guard(self.scorer.rank, request)

    @bentoml.api(route="/predict")
    def predict(self, request: PredictRequest, /) -> PredictResponse:
        """Conversion probability for each (user, item) pair, in request order."""
        return self._guard(self.scorer.predict, request)

    @staticmethod
    def _guard(call, request):
        """An unreachable online store is a 503 (retry later), not a generic 500."""
        try:
            return call(request)
        except _UNREACHABLE as exc:
            logger.exception("online store unavailable")
            raise ServiceUnavailable(f"online store unavailable: {exc}") from exc
