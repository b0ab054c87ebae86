"""The Persona BentoML service: conversion scores for (user, item) pairs, purchase propensity and
profiles of shoppers, from online features, each score with its reasons.

A thin shell around `serving.scoring.Scorer` and `serving.profiles`. The conversion model is
declared at class scope so that a built Bento references it; which model is read from the
settings (PERSONA_MODEL_TAG, which `persona serve` pins to the latest trained on the home; else
the latest `persona-conversion`) when this module is imported. The propensity model is optional
and loaded from the model store when the service starts (see `stored_propensity_model` for why
it is not declared at class scope). Which online store is read
from PERSONA_HOME / PERSONA_REDIS_URL when the service starts. BentoML adds /livez, /readyz,
/healthz, /metrics and the OpenAPI document at /docs.json.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import bentoml
import redis.exceptions
from bentoml.exceptions import NotFound, ServiceUnavailable
from pydantic_core import to_json
from starlette.responses import JSONResponse, Response

from persona.core.catalog import WrongHomeError, newest_for_home
from persona.core.settings import PROPENSITY_TAG, Settings, library_defaults
from serving import (
    MODEL_NAME,
    PROPENSITY_MODEL_NAME,
    SERVICE_NAME,
    resolve_model_tag,
    resolve_propensity_tag,
)
from serving.auth import ApiKeyMiddleware
from serving.breaker import Breaker
from serving.docs_page import DocsMiddleware
from serving.json_only import JsonOnlyMiddleware
from serving.schemas import (
    PredictRequest,
    PredictResponse,
    ProfileRequest,
    ProfileResponse,
    PropensityRequest,
    PropensityResponse,
    RankRequest,
    RankResponse,
    RecommendRequest,
    RecommendResponse,
)

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)  # BentoML leaves other loggers at WARNING: say what is served
_UNREACHABLE = (ConnectionError, TimeoutError, redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError)
NO_PROPENSITY_MODEL = "no propensity model trained: run `persona train --task propensity`"
NO_RECOMMEND_MODEL = ("no recommendation models trained on this home: run `persona train --task "
                      "retrieval`, `persona train --task recommend` and `persona materialize`")
ONLINE_STORE_DOWN = "online store unavailable: retry later"
READY_CACHE_SECONDS = 1.0  # /readyz probes the online store at most once a second
RETRY_AFTER_SECONDS = 1  # after an online-store failure, 503 at once for this long (Breaker)
LOADED_REFRESH_SECONDS = 30.0  # how often /metrics' last-load times are read from the store


class ModelRefused(RuntimeError):
    """A stored model the service will not serve: unreadable, or not matching its feature
    service. Raised at start-up, so the server stops with this message instead of serving."""


def stop_server(refused: ModelRefused) -> None:
    """Stop the whole `bentoml serve` process, not just this worker: BentoML restarts a worker
    whose start-up failed, forever, and a model that cannot be served will not get better on a
    retry. Only when the parent process is BentoML's server (never, say, a test runner)."""
    logger.critical("refusing to start: %s", refused)
    parent = os.getppid()
    try:
        command = Path(f"/proc/{parent}/cmdline").read_bytes()
    except OSError:
        return
    if b"bentoml" in command and b"serve" in command:
        os.kill(parent, signal.SIGTERM)


def online_store_name(config) -> str:
    """The online store a log line may name: the SQLite file, or Redis' first address (never
    its password)."""
    online = config.online_store
    if hasattr(online, "connection_string"):
        return f"redis {online.connection_string.split(',')[0]}"
    return f"sqlite {online.path}"


def load_booster(stored: bentoml.Model):
    """The booster of a stored model, set up for low-latency single-threaded prediction (one
    thread per prediction and a passive OpenMP wait policy, set before xgboost is imported)."""
    library_defaults()
    import bentoml.xgboost  # noqa: PLC0415  (imports xgboost)

    try:
        booster = bentoml.xgboost.load_model(stored)
    except Exception as exc:  # XGBoostError, OSError, ...: the files are missing or corrupted
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise ModelRefused(f"model {stored.tag} cannot be loaded from {stored.path}: its files "
                           f"are missing or corrupted ({type(exc).__name__}: {first_line})"
                           ) from exc
    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    if objective != "binary:logistic":
        raise ModelRefused(f"model {stored.tag} has objective {objective!r}; the service reads "
                           "probabilities off binary:logistic margins")
    booster.set_param({"nthread": 1})
    return booster


def check_inputs(booster, features: list[str], tag: str) -> None:
    """The metadata's feature list is the booster's input, in the booster's order."""
    names = booster.feature_names
    if booster.num_features() != len(features) or (names and list(names) != list(features)):
        raise ModelRefused(f"model {tag}: metadata features do not match the booster's inputs")


def stored_propensity_model(settings: Settings | None = None) -> bentoml.Model | None:
    """The propensity model to serve: the settings' PERSONA_PROPENSITY_TAG, else the latest
    trained on the settings' home; None when there is none (or only other homes' models). A
    pinned version that is not in the store is an error.

    Loaded here, from the store, and not declared at class scope like the conversion model:
    BentoML 1.4 resolves every class-scope `BentoModel` before the server starts, and
    `bentoml build` does too, and both fail on a missing one ("Model persona-propensity:latest
    could not be found locally and failed to fetch from remote"), while the service must start
    without it. The price: a built Bento does not carry the propensity model; it serves the one
    in the model store of the machine it runs on, if any.
    """
    from persona.data.offline import home_of  # noqa: PLC0415 (pandas: not in the supervisor)

    settings = settings or Settings.from_env()
    if settings.propensity_tag is None:
        try:
            versions = bentoml.models.list(PROPENSITY_MODEL_NAME)
        except NotFound:
            return None
        try:
            return newest_for_home(versions, home_of(settings), "propensity")
        except WrongHomeError as exc:
            logger.warning("serving without a propensity model: %s", exc)
            return None
    wanted = resolve_propensity_tag(settings=settings)
    try:
        return bentoml.models.get(wanted)
    except NotFound:
        raise NotFound(f"propensity model {wanted} (pinned by {PROPENSITY_TAG}) is not in "
                       "the model store") from None


@bentoml.service(name=SERVICE_NAME, workers=1, traffic={"timeout": 30})
class PersonaService:
    """Ranks candidate items for a shopper, scores (user, item) pairs, scores shoppers' purchase
    propensity and describes their profile."""

    model = bentoml.models.BentoModel(resolve_model_tag(settings=Settings.from_env()))

    def __init__(self) -> None:
        library_defaults()  # before anything below imports xgboost
        # Imported here, in the worker: `bentoml serve` also imports this module in its
        # supervising process, which needs the API definitions but not Feast (seconds to import).
        from persona.featurestore.config import feature_store
        from persona.profiling.tags import TagBook
        from serving.item_cache import ItemCache
        from serving.profiles import Profiler
        from serving.redis_online import online_reader
        from serving.scoring import Scorer
        from serving.served_metrics import ServedMetrics
        from serving.users import ProfileReader

        stored = self._stored_model()
        metadata = stored.info.metadata
        settings = Settings.from_env()
        store = feature_store(settings)
        try:
            booster = load_booster(stored)
            check_inputs(booster, metadata["features"], str(stored.tag))
            try:
                reader = online_reader(store, metadata["feature_service"],
                                       metadata["features"], ItemCache.from_settings(settings),
                                       metadata.get("categories"))
            except ValueError as exc:
                raise ModelRefused(f"model {stored.tag} does not match the registered feature "
                                   f"service: {exc}") from exc
            self.scorer = Scorer(booster, reader, str(stored.tag), metadata.get("calibration"),
                                 metadata.get("categories"))
            served = {"conversion": (str(stored.tag), metadata)}
            self.propensity_scorer = self._propensity_scorer(store, settings, served)
            self.recommender = self._recommender(store, settings, served)
        except ModelRefused as exc:
            stop_server(exc)
            raise
        self.profiler = Profiler(ProfileReader(store), TagBook.load(), self.propensity_scorer)
        self._breaker = Breaker(cool_off=RETRY_AFTER_SECONDS)
        self._ready_lock = threading.Lock()
        self._ready_at, self._ready = float("-inf"), False
        self._store_config, self._loaded_at = store.config, float("-inf")
        self._metrics = ServedMetrics()
        self._metrics.models(served)
        self._warm_up()
        for task, (tag, meta) in served.items():
            logger.info("serving %s model %s (feature service %s), trained on home %s, offline "
                        "version %s", task, tag, meta.get("feature_service"),
                        meta.get("home", "(not recorded)"), meta.get("offline_version", "?"))
        logger.info("online store: %s", online_store_name(store.config))

    @staticmethod
    def _propensity_scorer(store, settings: Settings, served: dict):
        """The propensity model's scorer (recorded in `served`), None without one."""
        from serving.profiles import PropensityScorer

        stored = stored_propensity_model(settings)
        if stored is None:
            logger.warning("%s; /propensity answers 503", NO_PROPENSITY_MODEL)
            return None
        served["propensity"] = (str(stored.tag), stored.info.metadata)
        booster = load_booster(stored)
        check_inputs(booster, stored.info.metadata["features"], str(stored.tag))
        try:
            return PropensityScorer.from_metadata(booster, stored.info.metadata, str(stored.tag),
                                                  store)
        except ValueError as exc:
            raise ModelRefused(f"model {stored.tag} does not match the registered feature "
                               f"service: {exc}") from exc

    @staticmethod
    def _recommender(store, settings: Settings, served: dict):
        """The /recommend answerer (its models recorded in `served`): this home's latest ranker
        and retrieval model; None without both."""
        from persona.core.catalog import RECOMMEND_SERVICE
        from persona.data.offline import home_of
        from persona.recommend.rules import RuleBook
        from serving.item_cache import ItemCache
        from serving.recommender import Recommender
        from serving.redis_online import online_reader
        from training.candidate_training import item_info, load, stored_retrieval
        from training.model_store import ModelNotFoundError, get_model
        from training.recommend_ranker import RETRIEVAL_FEATURES, Ranker

        retrieval = stored_retrieval(settings)
        try:
            ranker = get_model(None, "recommend", home_of(settings))
        except (ModelNotFoundError, WrongHomeError):
            ranker = None
        if retrieval is None or ranker is None:
            logger.warning("%s; /recommend answers 503", NO_RECOMMEND_MODEL)
            return None
        ranker.booster.set_param({"nthread": 1})
        served["recommend"] = (ranker.tag, ranker.metadata)
        served["retrieval"] = (str(retrieval.tag), retrieval.info.metadata)
        generators, metadata = load(retrieval)
        columns = list(ranker.metadata["features"])[len(RETRIEVAL_FEATURES):]
        try:
            reader = online_reader(store, RECOMMEND_SERVICE, columns,
                                   ItemCache.from_settings(settings))
            return Recommender(store, reader, Ranker.of(ranker.booster, ranker.metadata),
                               generators, item_info(retrieval), RuleBook.load(),
                               {"recommend": ranker.tag, "retrieval": str(retrieval.tag)},
                               int(metadata.get("candidates", 200)))
        except ValueError as exc:
            raise ModelRefused(f"model {ranker.tag} does not match the registered feature "
                               f"service: {exc}") from exc

    def _warm_up(self) -> None:
        """One pass through every path, so the first request does not pay for lazy set-up. An
        unreachable online store does not stop the start-up: /readyz says not ready until it
        answers, and requests get 503 meanwhile."""
        try:
            rows = self.scorer.reader.for_user("warm-up", ["warm-up"])
            self.scorer.explained(rows.matrix)
            self.profiler.profile(ProfileRequest(user_id="warm-up"))
            if self.recommender is not None:
                self.recommender.recommend(RecommendRequest(user_id="warm-up"))
        except _UNREACHABLE as exc:
            logger.warning("warm-up skipped, %s (%s)", ONLINE_STORE_DOWN, type(exc).__name__)

    def __is_ready__(self) -> bool:
        """BentoML's readiness hook (/readyz): can the online store be read? One single-key read
        through Feast, the path requests take (bounded by the store's timeouts), cached for
        READY_CACHE_SECONDS so probes cannot load the store."""
        with self._ready_lock:
            if time.monotonic() - self._ready_at < READY_CACHE_SECONDS:
                return self._ready
            try:
                self.scorer.reader.categories(["readyz-probe"])
                ready = True
                self._breaker.reset()
                self._refresh_loaded()
            except _UNREACHABLE as exc:
                logger.warning("not ready: %s (%s)", ONLINE_STORE_DOWN, type(exc).__name__)
                ready = False
            self._ready_at, self._ready = time.monotonic(), ready
            return ready

    def _refresh_loaded(self) -> None:
        """/metrics' end of the last load per view, read from the store's own record at most
        every LOADED_REFRESH_SECONDS (on readiness probes)."""
        from persona.featurestore import online_state

        if time.monotonic() - self._loaded_at >= LOADED_REFRESH_SECONDS:
            self._metrics.loaded_until(online_state.loaded_until(self._store_config))
            self._loaded_at = time.monotonic()

    def _stored_model(self) -> bentoml.Model:
        """The model to load. Served from a built Bento, it is the version the Bento recorded:
        the class attribute's `:latest` would otherwise be resolved again, at start-up, to
        whatever is newest in the model store (BentoML re-pins only Hugging Face models).
        Otherwise the settings' tag (PERSONA_MODEL_TAG, else the latest) in the model store as
        the instance starts: the class attribute resolves once per process, and several
        services with other model stores can live in one (tests/worlds.in_process_service)."""
        bento = PersonaService.bento
        if bento is None:
            return bentoml.models.get(resolve_model_tag(settings=Settings.from_env()))
        info = next(s for s in bento.info.services if s.name == SERVICE_NAME)
        return bentoml.models.get(next(m.tag for m in info.models if m.tag.name == MODEL_NAME))

    @bentoml.api(route="/rank")
    def rank(self, request: RankRequest, /) -> RankResponse:
        """Rank candidate items for a shopper by the probability that a view converts to a purchase within the conversion model's label horizon (7 days unless trained with `--horizon`), highest first. Unknown shoppers and items are scored with their features missing and flagged `cold_user` / `cold_item`."""  # noqa: E501 (one line: it is the OpenAPI description)
        return self._answer(self._json(self.scorer.rank), request)

    @bentoml.api(route="/recommend")
    def recommend(self, request: RecommendRequest, /) -> RecommendResponse:
        """Top k items (1-100) for a shopper from the whole catalogue: retrieval's candidates for the shopper (the popular items of their region for a cold one), ordered by the recommendation ranker, then the business rules (feature_repo/recommend_rules.yaml); each item with its probability of a cart or purchase within 7 days, the generators that proposed it and reasons. Answers 503 when no recommendation models were trained on this home."""  # noqa: E501 (one line: it is the OpenAPI description)
        if self.recommender is None:
            return JSONResponse({"error": NO_RECOMMEND_MODEL}, status_code=503)
        return self._answer(self._json(self.recommender.recommend), request)

    @bentoml.api(route="/echo")
    def echo(self, request: RankRequest, /) -> dict:
        """Takes a /rank request and answers its user id and number of candidate items without reading features or scoring: what HTTP, JSON and validation cost alone, the floor /rank's speed is measured against (bench/rank_http.py)."""  # noqa: E501 (one line: it is the OpenAPI description)
        return {"user_id": request.user_id, "item_ids": len(request.item_ids)}

    @bentoml.api(route="/predict")
    def predict(self, request: PredictRequest, /) -> PredictResponse:
        """Conversion probability for each (user, item) pair, in request order."""
        return self._answer(self._json(self.scorer.predict), request)

    @bentoml.api(route="/propensity")
    def propensity(self, request: PropensityRequest, /) -> PropensityResponse:
        """Probability that each shopper makes a purchase within the propensity model's horizon, with churn risk (1 - propensity) for previously active shoppers and the top 3 reasons; in request order. Answers 503 when no propensity model was trained."""  # noqa: E501 (one line: it is the OpenAPI description)
        if self.propensity_scorer is None:
            return JSONResponse({"error": NO_PROPENSITY_MODEL}, status_code=503)
        return self._answer(self.propensity_scorer.score, request)

    @bentoml.api(route="/profile")
    def profile(self, request: ProfileRequest, /) -> ProfileResponse:
        """A shopper's current profile: user_profile attributes and user_activity features, their freshness, propensity and churn risk (when a propensity model is served), tags and segment. An unknown shopper is cold with no features, not an error."""  # noqa: E501 (one line: it is the OpenAPI description)
        return self._answer(self.profiler.profile, request)

    @staticmethod
    def _json(call):
        """`call`, its plain answer serialized by pydantic's core: the scorer builds the
        response's fields itself (its tests check them against the response model)."""
        return lambda request: Response(to_json(call(request)), media_type="application/json")

    def _guard(self, call, request):
        """An unreachable online store is ServiceUnavailable (retry later), not a generic error,
        and for the breaker's cool-off the next requests get it without trying the store.
        Logged as one line without the request: no ids, no feature values."""
        if self._breaker.is_open():
            raise ServiceUnavailable(ONLINE_STORE_DOWN)
        try:
            return call(request)
        except _UNREACHABLE as exc:
            self._breaker.trip()
            logger.warning("%s (%s: %s)", ONLINE_STORE_DOWN, type(exc).__name__, exc)
            raise ServiceUnavailable(ONLINE_STORE_DOWN) from exc

    def _answer(self, call, request):
        """`call` through `_guard`, its 503 answered here with a JSON body that says why
        (BentoML would turn ServiceUnavailable into a generic "unexpected error" message)."""
        try:
            return self._guard(call, request)
        except ServiceUnavailable as exc:
            self._ready_at = float("-inf")  # the next /readyz probes again
            return JSONResponse({"error": str(exc)}, status_code=503,
                                headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


# Optional API keys (PERSONA_API_KEYS), for every route but the probes, metrics and docs.
PersonaService.add_asgi_middleware(ApiKeyMiddleware)
# JSON bodies only: BentoML's form and multipart parsing answers some malformed bodies with 500.
PersonaService.add_asgi_middleware(
    JsonOnlyMiddleware, routes=frozenset(f"/{name}" for name in PersonaService.apis))
# The OpenAPI document with Persona's version and description, and a docs page at / that loads
# nothing from another machine (BentoML's page embeds Google Tag Manager): serving/docs_page.py.
PersonaService.add_asgi_middleware(DocsMiddleware, service=PersonaService)
