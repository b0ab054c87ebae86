"""Building the Feast store from Settings: SQLite online store by default, Redis when configured."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

from feast import FeatureStore, RepoConfig

from persona.core.settings import FEATURE_REPO, Settings

PROJECT = "persona"
# Fail fast when Redis is down or slow: bounded socket timeouts and no client-side retry loop
# (redis-py's default retries made a request wait ~6 s before failing); callers answer 503.
REDIS_CLIENT_OPTIONS = "socket_connect_timeout=0.5,socket_timeout=1,retry=null"


def redis_connection_string(url: str) -> str:
    """redis://[:password@]host:port[/db] (or rediss:// for TLS) -> Feast's connection string."""
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss"):
        raise ValueError("online store URL must start with redis:// or rediss://")
    parts = [f"{parsed.hostname or '127.0.0.1'}:{parsed.port or 6379}"]
    if parsed.password:
        parts.append(f"password={unquote(parsed.password)}")
    if parsed.scheme == "rediss":
        parts.append("ssl=true")
    db = parsed.path.strip("/")
    if db:
        parts.append(f"db={int(db)}")
    return ",".join([*parts, REDIS_CLIENT_OPTIONS])


def repo_config(settings: Settings, registry: Path | None = None) -> RepoConfig:
    """The same config feature_repo/feature_store.yaml declares, with absolute paths;
    `registry` overrides the registry file (apply writes a copy, then swaps it in)."""
    if settings.online_url:
        online = {"type": "redis", "connection_string": redis_connection_string(settings.online_url)}
    else:
        online = {"type": "sqlite", "path": str(settings.sqlite_path)}
    return RepoConfig(
        project=PROJECT,
        provider="local",
        registry=str(registry or settings.registry_path),
        online_store=online,
        offline_store={"type": "persona.featurestore.offline_store.AsofDuckDBOfflineStore"},
        entity_key_serialization_version=3,
        repo_path=FEATURE_REPO,
    )


def feature_store(settings: Settings, registry: Path | None = None) -> FeatureStore:
    settings.home.mkdir(parents=True, exist_ok=True)
    return FeatureStore(repo_path=str(FEATURE_REPO), config=repo_config(settings, registry))


@contextmanager
def staged_registry(settings: Settings) -> Iterator[FeatureStore]:
    """A store on a copy of the registry, swapped in with one atomic rename when the block ends
    without an error. Feast rewrites its registry file in place (truncate, then write), so a
    process killed in between would leave it truncated: every definition and interval lost.
    One fixed copy per home: its writers take turns (persona.data.locking), and a killed one's
    leftover is overwritten by the next."""
    staging = settings.registry_path.with_name(".registry-staged.db")
    staging.unlink(missing_ok=True)
    if settings.registry_path.exists():  # else the first apply creates it
        shutil.copy2(settings.registry_path, staging)
    try:
        yield feature_store(settings, registry=staging)
        os.replace(staging, settings.registry_path)
    finally:
        staging.unlink(missing_ok=True)
