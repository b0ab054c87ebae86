"""The BentoML service in this process, through its ASGI app (`PersonaService.to_asgi()`) and
Starlette's TestClient: one instance on the world's SQLite store and one on the session's Redis,
both with the propensity model, built once per session (tests/worlds.py, in_process_service)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from worlds import Propensity, World, in_process_service

from persona.core.settings import Settings


@pytest.fixture(scope="session")
def sqlite_service(world: World, propensity: Propensity) -> Iterator:
    with in_process_service(world.settings) as client:
        yield client


@pytest.fixture(scope="session")
def redis_service(world: World, propensity: Propensity, redis_settings: Settings) -> Iterator:
    with in_process_service(redis_settings) as client:
        yield client
