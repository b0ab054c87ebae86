"""The service under faults, for real: a `redis-server` this module starts, stopped while the
service runs and started again on the same port, or frozen (SIGSTOP) and thawed; API keys over
HTTP; models the service must refuse to serve. Reuses the world of tests/test_serving.py
(populated store, conversion model) and the propensity model of tests/test_profile_api.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import bentoml
import httpx
import numpy as np
import pytest
import xgboost as xgb
from bentoml._internal.configuration.containers import BentoMLContainer
from bentoml._internal.models import ModelStore
from redis_server import RedisProcess
from test_profile_api import Propensity, propensity  # noqa: F401  (fixture)
from test_serving import World, world  # noqa: F401  (fixture)

from persona.jobs.materialize import materialize
from persona.core.settings import Settings
from serving import MODEL_NAME
from persona.core.settings import parse_api_keys
from serving.auth import UNAUTHORIZED, key_matches, presented_key
from serving.run import ServerError, ServerHandle, start_server
from serving.service import ONLINE_STORE_DOWN

pytestmark = pytest.mark.integration

KEYS = ["k-alpha-0123456789", "k-beta-9876543210"]
TIMEOUT = 1.5  # persona/featurestore/config.py: 0.5 s to connect, 1 s per command, no retries; plus slack


@pytest.fixture(scope="module")
def outage_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server binary")
    server = RedisProcess(tmp_path_factory.mktemp("outage-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_home(world: World, outage_redis: RedisProcess) -> Settings:  # noqa: F811
    settings = Settings(home=world.redis_home, reports_dir=world.settings.reports_dir,
                        online_url=outage_redis.url)
    materialize(settings, full=True)
    return settings


@pytest.fixture(scope="module")
def server(world: World, redis_home: Settings,  # noqa: F811
           propensity: Propensity) -> Iterator[ServerHandle]:  # noqa: F811
    """On Redis, with a propensity model, with API keys on."""
    with start_server(redis_home, model_tag=world.model_tag, keys=KEYS) as handle:
        yield handle


def _requests(world: World) -> list[tuple[str, dict]]:  # noqa: F811
    user = world.warm_users[0]
    return [("/rank", {"user_id": user, "item_ids": world.items[:5]}),
            ("/predict", {"pairs": [{"user_id": user, "item_id": world.items[0]}]}),
            ("/propensity", {"user_ids": [user]}),
            ("/profile", {"user_id": user})]


def _client(server: ServerHandle) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30, trust_env=False,
                        headers={"Authorization": f"Bearer {KEYS[0]}"})


def _wait_ready(http: httpx.Client) -> None:
    deadline = time.monotonic() + 10
    while http.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "not ready again 10 s after Redis came back"
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


def _answers(http: httpx.Client, world: World) -> dict[str, dict]:  # noqa: F811
    """Every route's answer to its request, which must be 200."""
    answers = {}
    for route, body in _requests(world):
        reply = http.post(route, json=body)
        assert reply.status_code == 200, (route, reply.text)
        answers[route] = _comparable(reply.json())
    return answers


def test_redis_outage_is_a_fast_503_and_recovers_without_restart(
        server: ServerHandle, outage_redis: RedisProcess, world: World) -> None:  # noqa: F811
    with _client(server) as http:
        before = _answers(http, world)
        assert http.get("/readyz").status_code == 200

        outage_redis.stop(keep_data=True)  # SAVE to dump.rdb, then SIGTERM
        for route, body in _requests(world):
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


def test_a_stalled_redis_is_a_503_within_the_socket_timeout_and_recovers(
        server: ServerHandle, outage_redis: RedisProcess, world: World) -> None:  # noqa: F811
    with _client(server) as http:
        before = _answers(http, world)
        with _stalled(outage_redis, http):
            for route, body in _requests(world):
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
        server: ServerHandle, outage_redis: RedisProcess, world: World) -> None:  # noqa: F811
    requests = _requests(world)
    with (_client(server) as http, ThreadPoolExecutor(len(requests)) as pool,
          _stalled(outage_redis, http)):
        replies = list(pool.map(lambda request: _timed(http, *request), requests))
    assert [(r.status_code, r.json()) for r, _ in replies] == [
        (503, {"error": ONLINE_STORE_DOWN})] * len(requests)
    elapsed = sorted(round(seconds, 2) for _, seconds in replies)
    assert elapsed[-1] < TIMEOUT, f"seconds per request: {elapsed}"  # no pile-up (Breaker)


def test_api_keys_guard_every_prediction_endpoint(server: ServerHandle,
                                                  world: World) -> None:  # noqa: F811
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as http:
        for route, body in _requests(world):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"},
                            {"Authorization": KEYS[0]}, {"X-API-Key": KEYS[0][:-1]},
                            {"Authorization": f"Basic {KEYS[0]}"}):
                reply = http.post(route, json=body, headers=headers)
                assert reply.status_code == 401, (route, headers, reply.text)
                assert reply.json() == UNAUTHORIZED
            for headers in ({"Authorization": f"Bearer {KEYS[0]}"},
                            {"authorization": f"bearer {KEYS[1]}"}, {"X-API-Key": KEYS[1]}):
                reply = http.post(route, json=body, headers=headers)
                assert reply.status_code == 200, (route, headers, reply.text)
        for probe in ("/livez", "/readyz", "/healthz", "/metrics", "/docs.json"):
            assert http.get(probe).status_code == 200, probe
    logs = server.logs()
    assert not any(key in logs for key in KEYS)


def test_api_key_parsing_and_matching() -> None:
    assert parse_api_keys("") == ()
    assert parse_api_keys(" a , b,") == ("a", "b")
    with pytest.raises(ValueError, match="names no key"):
        parse_api_keys(" , ")
    assert presented_key({b"authorization": b"Bearer  k "}) == b"k"
    assert presented_key({b"x-api-key": b"k"}) == b"k"
    assert presented_key({b"authorization": b"Bearer "}) is None
    assert key_matches(b"b", [b"a", b"b"]) and not key_matches(b"c", [b"a", b"b"])
    assert not key_matches(None, [b"a"])


def _store_copy(world: World, name: str) -> Path:  # noqa: F811
    """A copy of the world's model store, to spoil without touching the world's."""
    home = Path(os.environ["BENTOML_HOME"])
    copy = home.parent / name
    shutil.copytree(home, copy)
    return copy


def _refused(world: World, home: Path, tag: str) -> str:  # noqa: F811
    """Starting a server on `tag` from model store `home` fails; returns the server's log."""
    log = home / "serve.log"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("BENTOML_HOME", str(home))
        with pytest.raises(ServerError):
            start_server(world.settings, model_tag=tag, log_path=log, timeout=40)
    return log.read_text(errors="replace")


def test_a_corrupted_model_stops_the_start_up(world: World) -> None:  # noqa: F811
    home = _store_copy(world, "bentoml-corrupted")
    model = ModelStore(home / "models").get(world.model_tag)
    spoilt = [f for f in Path(model.path).iterdir() if f.name not in ("model.yaml",)]
    assert spoilt
    for path in spoilt:
        path.write_bytes(path.read_bytes()[:40] + b"\x00garbage")
    log = _refused(world, home, world.model_tag)
    assert f"model {world.model_tag} cannot be loaded" in log
    assert "missing or corrupted" in log


def test_a_model_not_matching_its_feature_service_is_refused(world: World) -> None:  # noqa: F811
    home = _store_copy(world, "bentoml-mismatched")
    stored = ModelStore(home / "models").get(world.model_tag)
    features = world.features[:-1]  # trained without the service's last column
    rng = np.random.default_rng(0)
    booster = xgb.train({"objective": "binary:logistic", "nthread": 1},
                        xgb.DMatrix(rng.random((50, len(features))),
                                    label=rng.integers(0, 2, 50), feature_names=features),
                        num_boost_round=2)
    metadata = {**stored.info.metadata, "features": features}
    with BentoMLContainer.model_store.patch(ModelStore(home / "models")):
        tag = str(bentoml.xgboost.save_model(MODEL_NAME, booster, metadata=metadata).tag)
    log = _refused(world, home, tag)
    assert f"model {tag} does not match the registered feature service" in log
    assert world.features[-1] in log
