"""The Persona BentoML service: conversion scores for (user, item) pairs, purchase propensity and
profiles of shoppers, from online features, each score with its reasons.

A thin shell around `serving.scoring.Scorer` and `serving.profiles`. The conversion model is
declared at class scope so that a built Bento references it; which model is read from
PERSONA_MODEL_TAG (default the latest `persona-conversion`) when this module is imported. The
propensity model is optional and loaded from the model store when the service starts (see
`stored_propensity_model` for why it is not declared at class scope). Which online store is read
from PERSONA_HOME / PERSONA_REDIS_URL when the service starts. BentoML adds /livez, /readyz,
/healthz, /metrics and the OpenAPI document at /docs.json.
"""

from __future__ import annotations

import logging
import os

import bentoml
import redis.exceptions
from bentoml.exceptions import NotFound, ServiceUnavailable
from starlette.responses import JSONResponse

from serving import (
    MODEL_NAME,
    PROPENSITY_TAG_ENV,
    SERVICE_NAME,
    resolve_model_tag,
    resolve_propensity_tag,
)
from serving.schemas import (
    PredictRequest,
    PredictResponse,
    ProfileRequest,
    ProfileResponse,
    PropensityRequest,
    PropensityResponse,
    RankRequest,
    RankResponse,
)

logger = logging.getLogger(__name__)
_UNREACHABLE = (ConnectionError, TimeoutError, redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError)
NO_PROPENSITY_MODEL = "no propensity model trained: run `persona train --task propensity`"


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


def stored_propensity_model(tag: str | None = None) -> bentoml.Model | None:
    """The propensity model to serve: `tag`, else PERSONA_PROPENSITY_TAG, else the latest; None
    when none was trained. A pinned version that is not in the store is an error.

    Loaded here, from the store, and not declared at class scope like the conversion model:
    BentoML 1.4 resolves every class-scope `BentoModel` before the server starts, and
    `bentoml build` does too, and both fail on a missing one ("Model persona-propensity:latest
    could not be found locally and failed to fetch from remote"), while the service must start
    without it. The price: a built Bento does not carry the propensity model; it serves the one
    in the model store of the machine it runs on, if any.
    """
    wanted = resolve_propensity_tag(tag)
    try:
        return bentoml.models.get(wanted)
    except NotFound:
        if wanted.endswith(":latest"):
            return None
        raise NotFound(f"propensity model {wanted} (pinned by {PROPENSITY_TAG_ENV}) is not in "
                       "the model store") from None


@bentoml.service(name=SERVICE_NAME, workers=1, traffic={"timeout": 30})
class PersonaService:
    """Ranks candidate items for a shopper, scores (user, item) pairs, scores shoppers' purchase
    propensity and describes their profile."""

    model = bentoml.models.BentoModel(resolve_model_tag())

    def __init__(self) -> None:
        passive_openmp()  # before anything below imports xgboost
        # Imported here, in the worker: `bentoml serve` also imports this module in its
        # supervising process, which needs the API definitions but not Feast (seconds to import).
        from persona.settings import Settings
        from persona.store import feature_store
        from persona.tags import TagBook
        from serving.online import OnlineFeatureReader
        from serving.profiles import Profiler
        from serving.scoring import Scorer
        from serving.users import ProfileReader

        stored = self._stored_model()
        metadata = stored.info.metadata
        booster = load_booster(stored)
        check_inputs(booster, metadata["features"], str(stored.tag))
        store = feature_store(Settings.from_env())
        reader = OnlineFeatureReader(store, metadata["feature_service"], metadata["features"])
        self.scorer = Scorer(booster, reader, str(stored.tag))
        self.propensity_scorer = self._propensity_scorer(store)
        self.profiler = Profiler(ProfileReader(store), TagBook.load(), self.propensity_scorer)
        self._warm_up()
        logger.info("serving %s with feature service %s; propensity model %s", stored.tag,
                    metadata["feature_service"],
                    self.propensity_scorer.model_tag if self.propensity_scorer else "none")

    @staticmethod
    def _propensity_scorer(store):
        from serving.profiles import PropensityScorer

        stored = stored_propensity_model()
        if stored is None:
            logger.warning("%s; /propensity answers 503", NO_PROPENSITY_MODEL)
            return None
        booster = load_booster(stored)
        check_inputs(booster, stored.info.metadata["features"], str(stored.tag))
        return PropensityScorer.from_metadata(booster, stored.info.metadata, str(stored.tag),
                                              store)

    def _warm_up(self) -> None:
        """One pass through every path, so the first request does not pay for lazy set-up."""
        rows = self.scorer.reader.for_user("warm-up", ["warm-up"])
        self.scorer.probabilities(rows.matrix)
        self.scorer.reasons(rows.matrix)
        self.profiler.profile(ProfileRequest(user_id="warm-up"))

    def _stored_model(self) -> bentoml.Model:
        """The model to load. Served from a built Bento, it is the version the Bento recorded:
        the class attribute's `:latest` would otherwise be resolved again, at start-up, to
        whatever is newest in the model store (BentoML re-pins only Hugging Face models)."""
        bento = PersonaService.bento
        if bento is None:
            return self.model
        info = next(s for s in bento.info.services if s.name == SERVICE_NAME)
        return bentoml.models.get(next(m.tag for m in info.models if m.tag.name == MODEL_NAME))

    @bentoml.api(route="/rank")
    def rank(self, request: RankRequest, /) -> RankResponse:
        """Rank candidate items for a shopper by the probability that a view converts to a purchase within 7 days, highest first. Unknown shoppers and items are scored with their features missing and flagged `cold_user` / `cold_item`."""  # noqa: E501 (one line: it is the OpenAPI description)
        return self._guard(self.scorer.rank, request)

    @bentoml.api(route="/predict")
    def predict(self, request: PredictRequest, /) -> PredictResponse:
        """Conversion probability for each (user, item) pair, in request order."""
        return self._guard(self.scorer.predict, request)

    @bentoml.api(route="/propensity")
    def propensity(self, request: PropensityRequest, /) -> PropensityResponse:
        """Probability that each shopper makes a purchase within the propensity model's horizon, with churn risk (1 - propensity) for previously active shoppers and the top 3 reasons; in request order. Answers 503 when no propensity model was trained."""  # noqa: E501 (one line: it is the OpenAPI description)
        if self.propensity_scorer is None:
            return JSONResponse({"error": NO_PROPENSITY_MODEL}, status_code=503)
        return self._guard(self.propensity_scorer.score, request)

    @bentoml.api(route="/profile")
    def profile(self, request: ProfileRequest, /) -> ProfileResponse:
        """A shopper's current profile: user_profile attributes and user_activity features, their freshness, propensity and churn risk (when a propensity model is served), tags and segment. An unknown shopper is cold with no features, not an error."""  # noqa: E501 (one line: it is the OpenAPI description)
        return self._guard(self.profiler.profile, request)

    @staticmethod
    def _guard(call, request):
        """An unreachable online store is a 503 (retry later), not a generic 500."""
        try:
            return call(request)
        except _UNREACHABLE as exc:
            logger.exception("online store unavailable")
            raise ServiceUnavailable(f"online store unavailable: {exc}") from exc
