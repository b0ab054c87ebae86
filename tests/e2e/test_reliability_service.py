"""The service under faults, for real: a `redis-server` this module starts, stopped while the
service runs and started again on the same port, or frozen (SIGSTOP) and thawed, under a server
with API keys on; models the service must refuse to serve, which stop the server's start-up.
Reuses the session's world (populated store, conversion model) and propensity model
(tests/worlds.py); API keys in process are tests/service/test_auth.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import bentoml
import httpx
import numpy as np
import pytest
import xgboost as xgb
from bentoml._internal.models import ModelStore
from redis_server import RedisProcess
from worlds import Propensity, World, model_store, start_redis, start_server_retrying

from persona.core.settings import Settings
from persona.jobs.materialize import materialize
from serving import MODEL_NAME
from serving.run import ServerError, ServerHandle
from serving.service import ONLINE_STORE_DOWN

pytestmark = [pytest.mark.integration, pytest.mark.redis]

KEYS = ["k-alpha-0123456789", "k-beta-9876543210"]
# persona/featurestore/config.py: 0.5 s to connect, 1 s per command, no retries; plus slack
TIMEOUT = 1.5
READY_AGAIN = 120.0  # seconds the service may take to be ready once Redis answers again
REFUSED_START = 300.0  # seconds a server refusing its model may take to stop, on a busy machine


@pytest.fixture(scope="module")
def outage_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server binary")
    server = start_redis(tmp_path_factory.mktemp("outage-redis"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_home(world: World, outage_redis: RedisProcess,
               tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A copy of the world's home of the module's own, materialized into the outage Redis."""
    settings = world.home_copy(tmp_path_factory.mktemp("outage-home") / "home", outage_redis.url)
    materialize(settings, full=True)
    return settings


@pytest.fixture(scope="module")
def server(world: World, redis_home: Settings,
           propensity: Propensity) -> Iterator[ServerHandle]:
    """On Redis, with a propensity model, with API keys on."""
    with start_server_retrying(redis_home, model_tag=world.model_tag, keys=KEYS) as handle:
        assert handle.propensity_tag == propensity.tag
        yield handle


def _client(server: ServerHandle) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30, trust_env=False,
                        headers={"Authorization": f"Bearer {KEYS[0]}"})


def _wait_ready(http: httpx.Client) -> None:
    deadline = time.monotonic() + READY_AGAIN
    while http.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, f"not ready {READY_AGAIN:.0f} s after Redis is back"
        time.sleep(0.2)


def _timed(http: httpx.Client, route: str, body: dict) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    reply = http.post(route, json=body)
    return reply, time.monotonic() - started


@contextmanager
def _stalled(redis_server: RedisProcess, http: httpx.Client) -> Iterator[None]:
    """redis-server frozen (SIGSTOP): the kernel still accepts connections but nothing answers,
    so only the socket timeout ends a read. Thawed on the way out; then the service is ready."""
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    _wait_ready(http)


def _comparable(body: dict) -> dict:
    """A body without what changes with the time of the request (profile ages)."""
    return {k: v for k, v in body.items() if k != "freshness"}


def _answers(http: httpx.Client, world: World) -> dict[str, dict]:
    """Every route's answer to its request, which must be 200."""
    answers = {}
    for route, body in world.prediction_requests():
        reply = http.post(route, json=body)
        assert reply.status_code == 200, (route, reply.text)
        answers[route] = _comparable(reply.json())
    return answers


def test_redis_outage_is_a_fast_503_and_recovers_without_restart(
        server: ServerHandle, outage_redis: RedisProcess, world: World) -> None:
    with _client(server) as http:
        before = _answers(http, world)
        assert http.get("/readyz").status_code == 200

        outage_redis.stop(keep_data=True)  # SAVE to dump.rdb, then SIGTERM
        for route, body in world.prediction_requests():
            started = time.monotonic()
            reply = http.post(route, json=body)
            elapsed = time.monotonic() - started
            assert reply.status_code == 503, (route, reply.text)
            assert reply.json() == {"error": ONLINE_STORE_DOWN}, route
            assert reply.headers["retry-after"] == "1"
            assert elapsed < TIMEOUT, (route, elapsed)
        ready = http.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert http.get("/livez").status_code == 200  # alive: no reason to restart it

        outage_redis.start()  # same port, loads dump.rdb: the same data
        _wait_ready(http)
        assert _answers(http, world) == before
    logs = server.logs()
    assert ONLINE_STORE_DOWN in logs
    assert "Traceback" not in logs, logs[-3000:]
    assert world.warm_users[0] not in logs  # no request bodies, so no ids and no features
    assert not any(key in logs for key in KEYS)  # nor the API keys the requests presented


def test_a_stalled_redis_is_a_503_within_the_socket_timeout_and_recovers(
        server: ServerHandle, outage_redis: RedisProcess, world: World) -> None:
    with _client(server) as http:
        before = _answers(http, world)
        with _stalled(outage_redis, http):
            for route, body in world.prediction_requests():
                reply, elapsed = _timed(http, route, body)
                assert reply.status_code == 503, (route, reply.text)
                assert reply.json() == {"error": ONLINE_STORE_DOWN}, route
                assert elapsed < TIMEOUT, (route, elapsed)
            assert http.get("/livez").status_code == 200
        assert _answers(http, world) == before
    logs = server.logs()
    assert "TimeoutError" in logs  # the 503s came from redis-py's read timeout
    assert "Traceback" not in logs, logs[-3000:]


def test_concurrent_requests_during_a_stall_all_end_within_the_socket_timeout(
        server: ServerHandle, outage_redis: RedisProcess, world: World) -> None:
    requests = world.prediction_requests()
    with (_client(server) as http, ThreadPoolExecutor(len(requests)) as pool,
          _stalled(outage_redis, http)):
        replies = list(pool.map(lambda request: _timed(http, *request), requests))
    assert [(r.status_code, r.json()) for r, _ in replies] == [
        (503, {"error": ONLINE_STORE_DOWN})] * len(requests)
    elapsed = sorted(round(seconds, 2) for _, seconds in replies)
    assert elapsed[-1] < TIMEOUT, f"seconds per request: {elapsed}"  # no pile-up (Breaker)


def _store_copy(world: World, name: str) -> Path:
    """A copy of the world's model store, to spoil without touching the world's."""
    copy = world.bentoml_home.parent / name
    shutil.copytree(world.bentoml_home, copy)
    return copy


def _refused(world: World, home: Path, tag: str) -> str:
    """Starting a server on `tag` from model store `home` fails: the server stops itself (it
    does not merely fail to be ready in time); returns the server's log."""
    log = home / "serve.log"
    with pytest.raises(ServerError, match="server exited"):
        start_server_retrying(replace(world.settings, bentoml_home=home), model_tag=tag,
                              log_path=log, timeout=REFUSED_START)
    return log.read_text(errors="replace")


def test_a_corrupted_model_stops_the_start_up(world: World) -> None:
    home = _store_copy(world, "bentoml-corrupted")
    model = ModelStore(home / "models").get(world.model_tag)
    spoilt = [f for f in Path(model.path).iterdir() if f.name not in ("model.yaml",)]
    assert spoilt
    for path in spoilt:
        path.write_bytes(path.read_bytes()[:40] + b"\x00garbage")
    log = _refused(world, home, world.model_tag)
    assert f"model {world.model_tag} cannot be loaded" in log
    assert "missing or corrupted" in log


def test_a_model_not_matching_its_feature_service_is_refused(world: World) -> None:
    home = _store_copy(world, "bentoml-mismatched")
    stored = ModelStore(home / "models").get(world.model_tag)
    features = world.features[:-1]  # trained without the service's last column
    rng = np.random.default_rng(0)
    booster = xgb.train({"objective": "binary:logistic", "nthread": 1},
                        xgb.DMatrix(rng.random((50, len(features))),
                                    label=rng.integers(0, 2, 50), feature_names=features),
                        num_boost_round=2)
    metadata = {**stored.info.metadata, "features": features}
    with model_store(home):
        tag = str(bentoml.xgboost.save_model(MODEL_NAME, booster, metadata=metadata).tag)
    log = _refused(world, home, tag)
    assert f"model {tag} does not match the registered feature service" in log
    assert world.features[-1] in log
