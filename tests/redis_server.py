"""A Redis for tests, reusable by any test module: `from redis_server import redis_url`.

`redis_url` (module-scoped fixture) yields a redis:// URL:

* PERSONA_REDIS_URL when set, switched to a test database (PERSONA_TEST_REDIS_DB, default 15);
  on teardown only the keys that appeared during the module are deleted, nothing is flushed;
* else a private `redis-server` on a free 127.0.0.1 port, without persistence, in a temporary
  directory, stopped on teardown;
* else the tests that use it are skipped.

`RedisProcess` and `local_redis` (a private `redis-server`, restartable on the same port) live in
`bench/redis_local.py`, shared with the benchmarks.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse, urlunparse

import pytest
import redis

from bench.redis_local import RedisProcess, local_redis  # noqa: F401  (re-exported for tests)

TEST_DB_ENV = "PERSONA_TEST_REDIS_DB"


def with_db(url: str, db: int) -> str:
    """The same server and credentials, another database number."""
    return urlunparse(urlparse(url)._replace(path=f"/{db}"))


@contextmanager
def keys_cleaned(url: str) -> Iterator[str]:
    """Yield `url`; afterwards delete the keys of its database that were not there before."""
    client = redis.Redis.from_url(url)
    try:
        before = set(client.scan_iter(count=1000))
        yield url
        made = [key for key in client.scan_iter(count=1000) if key not in before]
        for start in range(0, len(made), 1000):
            client.delete(*made[start:start + 1000])
    finally:
        client.close()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("PERSONA_REDIS_URL")
    if external:
        with keys_cleaned(with_db(external, int(os.environ.get(TEST_DB_ENV, "15")))) as url:
            yield url
    elif shutil.which("redis-server"):
        with local_redis(tmp_path_factory.mktemp("redis")) as url:
            yield url
    else:
        pytest.skip("no PERSONA_REDIS_URL and no redis-server binary")
