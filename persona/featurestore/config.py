"""The one Feast configuration: built from Settings, in code for Persona and as YAML for `feast`.

`config_values` is the only place the store's shape is written: SQLite online store in the home
by default, Redis when configured, Persona's ASOF DuckDB offline store reading the home's
published version. `persona apply` writes the same values as the home's `feature_store.yaml`
(the Redis connection as `${FEAST_REDIS_CONNECTION}`, so no secret lands on disk), which the
`feast` CLI reads; `feature_repo/feature_store.yaml` is that file for the default home, with
paths relative to the repo (a test keeps it equal to `config_values`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

import yaml
from feast import FeatureStore, RepoConfig

from persona.core.settings import FEAST_REDIS_CONNECTION, FEATURE_REPO, Settings

PROJECT = "persona"
OFFLINE_STORE = "persona.featurestore.offline_store.AsofDuckDBOfflineStore"
# Fail fast when Redis is down or slow: bounded socket timeouts and no client-side retry loop
# (redis-py's default retries made a request wait ~6 s before failing); callers answer 503.
REDIS_CLIENT_OPTIONS = "socket_connect_timeout=0.5,socket_timeout=1,retry=null"
YAML_HEADER = ("# Written by `persona apply` from persona/featurestore/config.py: the Feast "
               "configuration of this home.\n# feast -c feature_repo -f <this file> ... "
               "(FEAST_REDIS_CONNECTION from the environment when the online store is Redis)\n")


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


def config_values(settings: Settings, registry: Path | None = None, *,
                  redis_connection: str | None = None, relative_to: Path | None = None) -> dict:
    """The store's configuration as Feast's YAML holds it. `registry` overrides the registry
    file (apply writes a copy, then swaps it in); `redis_connection` replaces the connection
    string built from the URL; `relative_to` writes the paths relative to that directory."""

    def path(p: Path) -> str:
        return os.path.relpath(p, relative_to) if relative_to else str(p)

    if settings.online_url:
        online = {"type": "redis", "connection_string":
                  redis_connection or redis_connection_string(settings.online_url)}
    else:
        online = {"type": "sqlite", "path": path(settings.sqlite_path)}
    return {
        "project": PROJECT,
        "provider": "local",
        "registry": path(registry or settings.registry_path),
        "online_store": online,
        "offline_store": {"type": OFFLINE_STORE, "root": path(settings.offline_current)},
        "entity_key_serialization_version": 3,
    }


def repo_config(settings: Settings, registry: Path | None = None) -> RepoConfig:
    return RepoConfig(**config_values(settings, registry), repo_path=FEATURE_REPO)


def store_yaml(settings: Settings, relative_to: Path | None = None) -> str:
    """The home's `feature_store.yaml`: `config_values` without secrets."""
    values = config_values(settings, redis_connection=f"${{{FEAST_REDIS_CONNECTION}}}",
                           relative_to=relative_to)
    return YAML_HEADER + yaml.safe_dump(values, sort_keys=False)


def write_store_yaml(settings: Settings) -> Path:
    """Write the home's `feature_store.yaml` (atomically) for the `feast` CLI."""
    settings.home.mkdir(parents=True, exist_ok=True)
    staging = settings.store_yaml.with_suffix(".yaml.tmp")
    staging.write_text(store_yaml(settings))
    os.replace(staging, settings.store_yaml)
    return settings.store_yaml


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
