"""The served world shared by the integration, service and end-to-end tiers, and what its tests
need to know about it. Plain helpers and data classes: the fixtures that build each of these once
per session live in tests/conftest.py.

* `build_world`: a small populated feature store (offline store and registry of the session's
  small shop), SQLite materialized, an unmaterialized copy of the home for Redis, and a small
  real conversion model saved into the world's own BentoML home;
* `build_propensity`: a small propensity model trained on point-in-time propensity_v1 features,
  saved into the world's model store, with a copy of the store taken before (conversion only);
* `check_reasons`: served reasons against XGBoost's contributions computed in-process;
* `in_process_service`: the BentoML service in this process through its ASGI app;
* `start_server_retrying` and `start_redis`: real processes on free ports, started again when
  the port was taken between picking it and binding it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from bentoml._internal.configuration.containers import BentoMLContainer
from bentoml._internal.models import ModelStore
from redis_server import RedisProcess

from persona.core.settings import VARIABLES, Settings
from persona.data import offline
from persona.data.raw import PLAIN_READ, RawTables
from persona.data.snapshots import compute_features
from persona.featurestore.config import feature_store
from persona.featurestore.registry import apply_definitions
from persona.jobs.materialize import materialize
from persona.synthetic_shop import Shop, write_shop
from serving.run import ServerError, ServerHandle, start_server
from training.candidate_training import train_retrieval
from training.explain import contributions
from training.labels import conversion_labels
from training.model_store import save_model
from training.recommend_training import train_recommend
from training.retrieval import feature_columns

SERVICE = "conversion_v1"
PROPENSITY_SERVICE = "propensity_v1"
TRAINING_ROWS = 3000
HORIZON = timedelta(days=30)
QUANTILES = ("0.5", "0.75", "0.9", "0.95")
SERVER_START = 300.0  # seconds a `bentoml serve` may take to be ready on a busy 2-core machine
PORT_TRIES = 3  # a free port picked can be taken before the server binds it: start again


@dataclass(frozen=True)
class World:
    """A populated store, a trained model, and what the tests need to know about them."""

    settings: Settings  # offline store, registry, (materialized) SQLite, the world's BentoML home
    redis_home: Path  # the same offline store and registry, never materialized: copy it first
    shop: Shop
    model_tag: str
    features: list[str]
    snapshot_time: pd.Timestamp  # the latest snapshot: what the online store holds

    @property
    def bentoml_home(self) -> Path:
        assert self.settings.bentoml_home is not None
        return self.settings.bentoml_home

    @property
    def warm_users(self) -> list[str]:
        """Users with a behaviour snapshot at the latest snapshot time."""
        activity = pd.read_parquet(self.settings.offline_current / "user_activity")
        latest = activity[activity["event_timestamp"] == self.snapshot_time]
        return sorted(latest["user_id"].unique())

    @property
    def items(self) -> list[str]:
        return sorted(self.shop.items["item_id"])

    def prediction_requests(self) -> list[tuple[str, dict]]:
        """One request per prediction endpoint, for a warm user: (route, body)."""
        user = self.warm_users[0]
        return [("/rank", {"user_id": user, "item_ids": self.items[:5]}),
                ("/predict", {"pairs": [{"user_id": user, "item_id": self.items[0]}]}),
                ("/propensity", {"user_ids": [user]}),
                ("/profile", {"user_id": user})]

    def home_copy(self, home: Path, online_url: str | None = None) -> Settings:
        """Settings of a fresh copy of the unmaterialized home at `home` (for an online store of
        its own), with the world's reports dir and BentoML home."""
        shutil.copytree(self.redis_home, home, symlinks=True)
        return replace(self.settings, home=home, online_url=online_url)

    def store_for(self, kind: str, request: pytest.FixtureRequest):
        """The feature store a server of `kind` ("sqlite" or "redis") reads."""
        if kind == "sqlite":
            return feature_store(self.settings)
        return feature_store(request.getfixturevalue("redis_settings"))


@contextmanager
def model_store(bentoml_home: Path) -> Iterator[ModelStore]:
    """BentoML's in-process model store pointed at `bentoml_home` for the block only."""
    (bentoml_home / "models").mkdir(parents=True, exist_ok=True)
    store = ModelStore(bentoml_home / "models")
    with BentoMLContainer.model_store.patch(store):
        yield store


def build_world(root: Path, shop: Shop) -> World:
    settings = Settings(home=root / "home", reports_dir=root / "reports",
                        bentoml_home=root / "bentoml")
    features = compute_features(RawTables(shop.events, shop.users, shop.items, {}),
                                settings.snapshot_interval)
    write_shop(shop, root / "raw")  # what retrieval and the ranker read (the log itself)
    offline.publish(settings.offline_root, features, {
        "source": "tests/worlds.py", "raw_dir": str(root / "raw"),
        "read_options": PLAIN_READ.record()})
    apply_definitions(settings)
    assert settings.bentoml_home is not None
    with model_store(settings.bentoml_home):
        train_retrieval(settings)  # also publishes the users' candidate lists
    shutil.copytree(settings.home, root / "redis-home", symlinks=True)
    materialize(settings)
    tag, columns = _train_and_save(settings, shop)
    with model_store(settings.bentoml_home):
        train_recommend(settings)
    snapshot = pd.Timestamp(features["user_activity"]["event_timestamp"].max())
    return World(settings, root / "redis-home", shop, tag, columns, snapshot)


def _train_and_save(settings: Settings, shop: Shop) -> tuple[str, list[str]]:
    """A small real booster on point-in-time features of the service, saved the way training
    saves it (training.model_store), into the settings' BentoML home."""
    store = feature_store(settings)
    labels = conversion_labels(shop.events, shop.items)
    entity_df = labels.sample(n=min(TRAINING_ROWS, len(labels)), random_state=0)
    frame = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service(SERVICE), full_feature_names=True,
    ).to_df()
    columns = feature_columns(store, SERVICE, frame)
    matrix = xgb.DMatrix(frame[columns].astype("float64"), label=frame["label"],
                         feature_names=columns)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.3,
                         "nthread": 1}, matrix, num_boost_round=30)
    first, last = (frame["event_timestamp"].min().isoformat(),
                   frame["event_timestamp"].max().isoformat())
    window = {"train_from": first, "valid_from": first, "train_until": last, "valid_until": last}
    metadata = {
        "task": "conversion", "feature_service": SERVICE, "features": columns,
        "training_window": window, "data_hash": "test", "metrics": {}, "validation": {},
        "snapshot_interval_seconds": settings.snapshot_interval.total_seconds(),
        "home": str(settings.home), "home_id": offline.home_of(settings).id,
    }
    assert settings.bentoml_home is not None
    with model_store(settings.bentoml_home):
        return save_model(booster, metadata), columns


def stored_booster(bentoml_home: Path, tag: str) -> xgb.Booster:
    """A model of the BentoML home `bentoml_home`, loaded in-process."""
    import bentoml.xgboost

    return bentoml.xgboost.load_model(ModelStore(bentoml_home / "models").get(tag))


def check_reasons(served: list[list[dict]], probabilities: list[float], booster: xgb.Booster,
                  features: list[str], matrix: np.ndarray) -> None:
    """Served reasons are the 3 largest of XGBoost's contributions on the same matrix computed
    in-process, which sum with the bias to the booster's margin, whose sigmoid is the served
    probability; each names its feature and that feature's value (null when missing)."""
    contribs = contributions(booster, matrix)
    margin = booster.predict(xgb.DMatrix(matrix, feature_names=features, missing=np.nan),
                             output_margin=True)
    np.testing.assert_allclose(contribs.sum(axis=1), margin, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-margin)), rtol=1e-5, atol=1e-6)
    assert len(served) == len(matrix)
    for row, reasons in enumerate(served):
        assert len(reasons) == 3
        largest = np.sort(np.abs(contribs[row, :-1]))[::-1][:3]
        np.testing.assert_allclose([abs(r["contribution"]) for r in reasons], largest,
                                   rtol=1e-5, atol=1e-7)
        for reason in reasons:
            j = features.index(reason["feature"])
            assert reason["contribution"] == pytest.approx(contribs[row, j], rel=1e-5, abs=1e-7)
            if np.isnan(matrix[row, j]):
                assert reason["value"] is None
            else:
                assert reason["value"] == pytest.approx(matrix[row, j])


@dataclass(frozen=True)
class Propensity:
    """The propensity model saved into the world's model store, and a store without it."""

    tag: str
    booster: xgb.Booster
    features: list[str]
    conversion_only_home: Path  # a BentoML home holding the conversion model alone (no
    # propensity, retrieval or recommendation model)


def build_propensity(world: World) -> Propensity:
    import bentoml

    from serving import PROPENSITY_MODEL_NAME

    conversion_only = world.bentoml_home.parent / "bentoml-conversion-only"
    shutil.copytree(world.bentoml_home, conversion_only)
    for other in ("persona-retrieval", "persona-recommend"):
        shutil.rmtree(conversion_only / "models" / other, ignore_errors=True)
    booster, features, metadata = _train_propensity(world)
    with model_store(world.bentoml_home):
        model = bentoml.xgboost.save_model(PROPENSITY_MODEL_NAME, booster, metadata=metadata)
    return Propensity(str(model.tag), booster, features, conversion_only)


def _train_propensity(world: World) -> tuple[xgb.Booster, list[str], dict]:
    """A small real booster: every signed-up user at weekly snapshot times T whose 30 days are
    observed, labelled 1 when they buy anything in (T, T + 30 days], with propensity_v1
    features as of T; metadata like training's (reference quantile keys are full names)."""
    events, users = world.shop.events, world.shop.users
    store = feature_store(world.settings)
    last = (events["event_timestamp"].max() - HORIZON).floor("D")
    times = [t for t in pd.date_range(end=last, periods=5, freq="7D")
             if t > events["event_timestamp"].min()]
    buys = events[events["event_type"] == "purchase"]
    rows = []
    for t in times:
        window = buys[(buys["event_timestamp"] > t) & (buys["event_timestamp"] <= t + HORIZON)]
        who = users.loc[users["signup_timestamp"] <= t, "user_id"]
        rows.append(pd.DataFrame({"user_id": who, "event_timestamp": t,
                                  "label": who.isin(window["user_id"]).astype(int)}))
    entity_df = pd.concat(rows, ignore_index=True)
    service = store.get_feature_service(PROPENSITY_SERVICE)
    frame = store.get_historical_features(entity_df=entity_df, features=service,
                                          full_feature_names=True).to_df()
    features = [f"{p.name_to_use()}__{f.name}" for p in service.feature_view_projections
                for f in p.features]
    matrix = frame[features].astype("float64")
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.3,
                         "nthread": 1},
                        xgb.DMatrix(matrix, label=frame["label"], feature_names=features),
                        num_boost_round=30)
    latest = matrix[frame["event_timestamp"] == frame["event_timestamp"].max()]
    reference = {f: {q: float(latest[f].quantile(float(q))) for q in QUANTILES}
                 for f in features if latest[f].notna().any()}
    first, until = times[0].isoformat(), times[-1].isoformat()
    metadata = {
        "task": "propensity", "feature_service": PROPENSITY_SERVICE, "features": features,
        "training_window": {"train_from": first, "train_until": until, "valid_from": first,
                            "valid_until": until},
        "data_hash": "test", "metrics": {}, "validation": {},
        "snapshot_interval_seconds": world.settings.snapshot_interval.total_seconds(),
        "home": str(world.settings.home), "home_id": offline.home_of(world.settings).id,
        "horizon_days": HORIZON.days,
        "reference_quantiles": reference,
    }
    return booster, features, metadata


@contextmanager
def in_process_service(settings: Settings, bentoml_home: Path | None = None,
                       keys: Sequence[str] | None = None) -> Iterator:
    """The Persona service in this process: `PersonaService.to_asgi()` driven by Starlette's
    TestClient (an httpx.Client), whose lifespan start-up creates the service instance.

    The service reads its settings from the environment and its models from BentoML's
    in-process store; both are set to `settings` (with API `keys`, when given) and the model
    store of `bentoml_home` (default the settings') only while the instance and its middleware
    are built, then put back, so several services can live side by side in one process (each
    with Prometheus metrics of its own).
    """
    from starlette.testclient import TestClient

    home = bentoml_home or settings.bentoml_home
    assert home is not None, "a BentoML home for the service's models"
    if keys is not None:
        settings = replace(settings, api_keys=tuple(keys))
    wanted = settings.environment(base={})
    with (pytest.MonkeyPatch.context() as env, model_store(home),
          BentoMLContainer.metrics_client.patch(_own_metrics())):
        for name in VARIABLES:
            if name.startswith("PERSONA_"):
                if name in wanted:
                    env.setenv(name, wanted[name])
                else:
                    env.delenv(name, raising=False)
        from serving.service import PersonaService

        client = TestClient(PersonaService.to_asgi(), raise_server_exceptions=False)
        client.__enter__()  # lifespan start-up: the service instance, the middleware stack
    try:
        yield client
    finally:
        client.__exit__(None, None, None)


def _own_metrics():
    """A Prometheus client with a registry of its own: each in-process app registers BentoML's
    request metrics once, and the process-wide registry refuses the same names twice."""
    from bentoml._internal.server.metrics.prometheus import PrometheusClient
    from prometheus_client import CollectorRegistry

    client = PrometheusClient(multiproc=False)
    client._registry = CollectorRegistry()
    return client


def start_server_retrying(settings: Settings, **options) -> ServerHandle:
    """`serving.run.start_server` on a free port, started again (up to PORT_TRIES times) when
    the port it picked was taken before the server bound it; ready within SERVER_START."""
    options.setdefault("timeout", SERVER_START)
    for attempt in range(PORT_TRIES):
        try:
            handle = start_server(settings, **options)
        except ServerError as exc:
            if "address already in use" in str(exc).lower() and attempt + 1 < PORT_TRIES:
                continue
            raise
        assert handle.running(), handle.logs()[-3000:]  # it, not another process on the port
        return handle
    raise AssertionError("unreachable")


def start_redis(directory: Path, timeout: float = 120.0) -> RedisProcess:
    """A started private `redis-server` on a free port (tried again if the port was taken)."""
    for attempt in range(PORT_TRIES):
        server = RedisProcess(directory / f"try-{attempt}")
        try:
            server.start(timeout)
        except RuntimeError as exc:
            if "address already in use" in str(exc).lower() and attempt + 1 < PORT_TRIES:
                continue
            raise
        return server
    raise AssertionError("unreachable")
