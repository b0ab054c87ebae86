"""Shared fixtures of every tier: a small generated shop and an isolated Persona home per test;
and, built once per session, the served world (tests/worlds.py), a Redis, the world
materialized into it, the propensity model, and `bentoml serve` on SQLite and on Redis.

Tiers are directories: unit (pure functions), integration (real Feast, SQLite, Redis, GE),
service (the BentoML service in process) and e2e (real processes). Each test is marked with its
tier, and the session runs them in that order (in reverse under pytest-xdist). Under xdist each
worker builds the session's worlds it needs once.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from persona.core.settings import Settings, library_defaults

library_defaults()  # before a test imports xgboost or GX

from persona.synthetic_shop import Shop, generate_shop, write_shop  # noqa: E402

TIERS = ("unit", "integration", "service", "e2e")
HERE = Path(__file__).parent


def _tier(item: pytest.Item) -> int:
    try:
        relative = Path(item.path).resolve().relative_to(HERE.resolve())
    except ValueError:
        return len(TIERS)
    return TIERS.index(relative.parts[0]) if relative.parts[0] in TIERS else len(TIERS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each test marked with its tier; unit, then integration, service and e2e (a stable sort:
    within a tier, the order pytest chose), so a run stops early at the cheapest failure.
    Under pytest-xdist (`make test`: whole modules per worker) the tiers go in reverse: the
    longest modules (benchmarks, CLI pipelines, real servers) start first and the short unit
    modules fill the workers at the end."""
    for item in items:
        tier = _tier(item)
        if tier < len(TIERS):
            item.add_marker(TIERS[tier])
    items.sort(key=_tier, reverse="PYTEST_XDIST_WORKER" in os.environ)


@pytest.fixture(scope="session")
def small_shop() -> Shop:
    return generate_shop(600, 150, 40, seed=5)


@pytest.fixture
def raw_dir(tmp_path: Path, small_shop: Shop) -> Path:
    out = tmp_path / "raw"
    write_shop(small_shop, out)
    return out


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """An isolated home, reports dir and BentoML model store."""
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    monkeypatch.delenv("PERSONA_REDIS_URL", raising=False)
    return Settings(home=tmp_path / "home", reports_dir=tmp_path / "reports")


@pytest.fixture(scope="module")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """BENTOML_HOME in a temporary directory for a module. BentoML resolves its store once per
    process, so the store is also patched in case another test touched BentoML first."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models.model import ModelStore

    home = tmp_path_factory.mktemp("bentoml")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOML_HOME", str(home))
        with BentoMLContainer.model_store.patch(ModelStore(home / "models")):
            yield home


# --- the served world, once per session --------------------------------------------------------


def _test_redis(tmp_path_factory: pytest.TempPathFactory, name: str, below: int) -> Iterator[str]:
    """PERSONA_REDIS_URL switched to a test database: PERSONA_TEST_REDIS_DB (default 15) less
    `below`, less two per pytest-xdist worker before this one (each worker its own pair), whose
    keys made meanwhile are deleted afterwards; else a private `redis-server` on a free
    loopback port; else the tests that need it are skipped."""
    from redis_server import TEST_DB_ENV, keys_cleaned, with_db
    from worlds import start_redis

    external = os.environ.get("PERSONA_REDIS_URL")
    if external:
        worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
        db = int(os.environ.get(TEST_DB_ENV, "15")) - below - 2 * worker
        with keys_cleaned(with_db(external, db)) as url:
            yield url
    elif shutil.which("redis-server"):
        server = start_redis(tmp_path_factory.mktemp(name))
        try:
            yield server.url
        finally:
            server.stop()
    else:
        pytest.skip("no PERSONA_REDIS_URL and no redis-server binary")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's Redis (`_test_redis`)."""
    yield from _test_redis(tmp_path_factory, "redis", below=0)


@pytest.fixture(scope="module")
def own_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis of the module's own, for modules that must see only their own keys or whose
    shop would overwrite the world's rows: the database below the session's with
    PERSONA_REDIS_URL (`_test_redis`), else a private `redis-server`."""
    yield from _test_redis(tmp_path_factory, "own-redis", below=1)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory, small_shop: Shop):
    """The populated store (SQLite materialized) and conversion model (tests/worlds.py)."""
    from worlds import build_world

    return build_world(tmp_path_factory.mktemp("world"), small_shop)


@pytest.fixture(scope="session")
def redis_settings(world, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A copy of the world's home, materialized into the session's Redis."""
    settings = world.home_copy(tmp_path_factory.mktemp("redis-world") / "home", redis_url)
    from persona.jobs.materialize import materialize

    materialize(settings)
    return settings


@pytest.fixture(scope="session")
def propensity(world):
    """The propensity model, saved into the world's model store (tests/worlds.py)."""
    from worlds import build_propensity

    return build_propensity(world)


@pytest.fixture(scope="session")
def sqlite_server(world, propensity):
    """`bentoml serve` on the world's SQLite store, with the propensity model."""
    from worlds import start_server_retrying

    with start_server_retrying(world.settings, model_tag=world.model_tag) as handle:
        assert handle.propensity_tag == propensity.tag
        yield handle


@pytest.fixture(scope="session")
def redis_server(world, propensity, redis_settings: Settings):
    """`bentoml serve` on the session's Redis, with the propensity model."""
    from worlds import start_server_retrying

    with start_server_retrying(redis_settings, model_tag=world.model_tag) as handle:
        assert handle.propensity_tag == propensity.tag
        yield handle
