"""What an online store holds: per feature view, the end of the last interval materialized into
that very store, recorded inside the store itself (a table of the SQLite file, a hash in Redis).

Feast records materialization progress in the registry, which knows nothing of where the rows
went: after loading Redis, an incremental run into SQLite would load nothing and say so with
success. A record kept in the store goes with the store: a new, emptied or deleted store has no
record, and its views are loaded over their whole TTL window again.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path

from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig
from feast.repo_config import RepoConfig

TABLE = "persona_materialized"  # beside Feast's `<project>_<view>` tables


def loaded_until(config: RepoConfig) -> dict[str, datetime]:
    """View name -> end of the last interval loaded into `config`'s online store."""
    online = config.online_store
    if isinstance(online, RedisOnlineStoreConfig):
        raw = _client(config).hgetall(record_key(config.project))
        return {view.decode(): datetime.fromisoformat(end.decode()) for view, end in raw.items()}
    path = _sqlite_path(config)
    if not path.exists():
        return {}
    with closing(sqlite3.connect(path)) as con:
        if not con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                           (TABLE,)).fetchone():
            return {}
        rows = con.execute(f"SELECT view, end_time FROM {TABLE}").fetchall()
    return {view: datetime.fromisoformat(end) for view, end in rows}


def record_loaded(config: RepoConfig, view: str, end: datetime) -> None:
    """Record that `view` was loaded into `config`'s online store up to `end`, once its rows
    are written (a run killed before this reloads the view next time)."""
    if isinstance(config.online_store, RedisOnlineStoreConfig):
        _client(config).hset(record_key(config.project), view, end.isoformat())
        return
    path = _sqlite_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path)) as con, con:
        con.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (view TEXT PRIMARY KEY, end_time TEXT)")
        con.execute(f"INSERT OR REPLACE INTO {TABLE} VALUES (?, ?)", (view, end.isoformat()))


def _client(config: RepoConfig):
    return RedisOnlineStore()._get_client(config.online_store)


def record_key(project: str) -> str:
    """The Redis hash of the record (not one of Feast's keys: those end with the project)."""
    return f"persona:{project}:loaded_until"


def _sqlite_path(config: RepoConfig) -> Path:
    path = Path(config.online_store.path)
    return path if path.is_absolute() else Path(config.repo_path or ".") / path
