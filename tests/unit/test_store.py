"""Online store configuration from a Redis URL."""

import time

import pytest
import redis

from persona.core.settings import Settings
from persona.featurestore.config import redis_connection_string, repo_config


def test_redis_url_to_feast_connection_string() -> None:
    assert redis_connection_string("redis://127.0.0.1:6390/2").startswith("127.0.0.1:6390,db=2,")
    secure = redis_connection_string("rediss://:s3cret@cache.local:6380")
    assert secure.startswith("cache.local:6380,password=s3cret,ssl=true,")
    with pytest.raises(ValueError, match="redis://"):
        redis_connection_string("http://127.0.0.1:6379")


def test_redis_down_fails_fast() -> None:
    """The options Feast passes to redis-py bound how long a request waits for a dead store."""
    from feast.infra.online_stores.redis import RedisOnlineStore

    _, params = RedisOnlineStore._parse_connection_string(redis_connection_string("redis://127.0.0.1:1"))
    client = redis.Redis(host="127.0.0.1", port=1, **params)
    started = time.monotonic()
    with pytest.raises(redis.exceptions.ConnectionError):
        client.ping()
    assert time.monotonic() - started < 2


def test_sqlite_by_default_and_redis_when_configured(tmp_path) -> None:
    settings = Settings(home=tmp_path, reports_dir=tmp_path / "reports")
    assert repo_config(settings).online_store.type == "sqlite"
    redis_settings = settings.with_online("redis://127.0.0.1:6379")
    assert repo_config(redis_settings).online_store.type == "redis"
