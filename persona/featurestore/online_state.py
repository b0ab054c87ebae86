"""What an online store holds: per feature view, the end of the last interval materialized into
that very store, recorded inside the store itself (a table of the SQLite file, a hash in Redis),
and the removal of rows that fell out of their view's TTL.

Feast records materialization progress in the registry, which knows nothing of where the rows
went: after loading Redis, an incremental run into SQLite would load nothing and say so with
success. A record kept in the store goes with the store: a new, emptied or deleted store has no
record, and its views are loaded over their whole TTL window again.

Feast keeps an entity's last row online for ever (it only flags it OUTSIDE_MAX_AGE by the wall
clock, and serves the values anyway), while training's point-in-time join treats a row older
than the TTL as missing: a user quiet for 90 days would be scored online on 90-day-old
activity the model never saw in training. `remove_rows` deletes such rows, so online reads see
them missing exactly as training did.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path

import pyarrow as pa
from feast import FeatureView
from feast.infra.online_stores.helpers import _mmh3, compute_table_id, compute_versioned_name
from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig
from feast.repo_config import RepoConfig

from persona.featurestore import redis_layout

TABLE = "persona_materialized"  # beside Feast's `<project>_<view>` tables
REMOVE_BATCH = 10_000  # entities per round trip or transaction


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


def remove_rows(config: RepoConfig, view: FeatureView, keys: pa.Table) -> int:
    """Delete `view`'s online row of every entity in `keys` (its join-key columns), leaving the
    entity's other views alone; returns how many entities were asked for."""
    if not keys.num_rows:
        return 0
    join_keys = {c.name: c.dtype.to_value_type() for c in view.entity_columns}
    versioning = config.registry.enable_online_feature_view_versioning
    if isinstance(config.online_store, RedisOnlineStoreConfig):
        name = compute_versioned_name(view, versioning)
        fields = [_mmh3(f"{name}:{f.name}") for f in view.features] + [f"_ts:{name}".encode()]
        client = _client(config)
        for batch in keys.to_batches(max_chunksize=REMOVE_BATCH):
            entity = redis_layout.entity_keys(pa.Table.from_batches([batch]), join_keys,
                                              config.project.encode())
            with client.pipeline(transaction=False) as pipe:
                for key in entity.to_pylist():
                    pipe.hdel(key, *fields)
                pipe.execute()
        return keys.num_rows
    table = compute_table_id(config.project, view, versioning)
    path = _sqlite_path(config)
    with closing(sqlite3.connect(path)) as con, con:
        for batch in keys.to_batches(max_chunksize=REMOVE_BATCH):
            entity = redis_layout.entity_keys(pa.Table.from_batches([batch]), join_keys, b"")
            con.executemany(f'DELETE FROM "{table}" WHERE entity_key = ?',
                            ((key,) for key in entity.to_pylist()))
    return keys.num_rows


def _client(config: RepoConfig):
    return RedisOnlineStore()._get_client(config.online_store)


def record_key(project: str) -> str:
    """The Redis hash of the record (not one of Feast's keys: those end with the project)."""
    return f"persona:{project}:loaded_until"


def _sqlite_path(config: RepoConfig) -> Path:
    path = Path(config.online_store.path)
    return path if path.is_absolute() else Path(config.repo_path or ".") / path
