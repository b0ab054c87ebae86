"""Helpers for a Redis in tests. The `redis_url` fixture (session scope, tests/conftest.py)
yields a redis:// URL:

* PERSONA_REDIS_URL when set, switched to a test database (PERSONA_TEST_REDIS_DB, default 15,
  `with_db`); on teardown only the keys that appeared during the session are deleted
  (`keys_cleaned`), nothing is flushed;
* else a private `redis-server` on a free 127.0.0.1 port, without persistence, in a temporary
  directory, stopped on teardown (`worlds.start_redis`);
* else the tests that use it are skipped.

`RedisProcess` and `local_redis` (a private `redis-server`, restartable on the same port) live in
`bench/redis_local.py`, shared with the benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse, urlunparse

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
