"""`persona materialize`: load the latest feature values of the current offline version into the
online store (SQLite or Redis), after validating exactly the rows that will be loaded.

Per view, the rows to load are what Feast's own materialization loads: each entity's latest row
with a timestamp in the view's window, from where its last materialization into this online
store ended (`persona.featurestore.online_state`; for a store that never received it, or with
`full`, the start of its TTL window) up to `end`, both ends included. Every view's rows pass
the GE gate before anything is written. SQLite is loaded by Feast's `materialize`; a Redis server
gets the same bytes from `persona.featurestore.redis_layout` (Feast's Python writer managed about
3,900 entities/s here), and the interval is recorded in the registry exactly as Feast records
it, so `feast materialize-incremental` and `persona materialize` carry on from each other. Then
the rows that fell out of the view's TTL as of `end` are removed from the store
(`rows_expired`), so online reads see them missing, as training did.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from feast import FeatureStore, FeatureView

from persona.core.settings import Settings
from persona.data import offline, quality
from persona.data.locking import exclusive
from persona.featurestore import online_state, redis_layout
from persona.featurestore.config import feature_store, staged_registry
from persona.jobs.progress import Count

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TIMESTAMP = "event_timestamp"

Step = Callable[[str], None]
LIVE_VIEWS = ("item_availability",)  # rows stamped when `persona availability` updates them


class NothingToMaterialize(RuntimeError):
    """No ingested data yet."""


def materialize(settings: Settings, end: datetime | None = None, full: bool = False,
                views: Sequence[str] | None = None, bulk: bool = True,
                on_step: Step = lambda _: None,
                on_progress: Count = lambda done, total: None) -> dict[str, int]:
    """Incremental: each view (default: all) from where its last materialization into this
    online store ended (or from the start of its TTL window) up to `end` (default: just after
    the last snapshot). `full` reloads the whole TTL window. `bulk=False` loads Redis through
    Feast's own writer too.
    Returns the rows validated and loaded per view. `on_step` names each stage and view;
    `on_progress(done, total)` counts the rows loaded, over all views."""
    if offline.current_manifest(settings.offline_root) is None:
        raise NothingToMaterialize(
            f"nothing ingested under {settings.home}: run `persona ingest` first")
    with exclusive(settings.lock_path):
        store = feature_store(settings)
        redis_layout.check_reachable(store.config)
        chosen = _views(store, views, settings)
        ends = _ends(settings, chosen, end)
        loaded = online_state.loaded_until(store.config)
        windows = {fv.name: (_start(fv, ends[fv.name], full, loaded.get(fv.name)), ends[fv.name])
                   for fv in chosen}
        on_step("reading the rows to load")
        tables = {fv.name: rows_to_load(settings, fv, *windows[fv.name]) for fv in chosen}
        on_step("validating the rows to load")
        frames = {name: _frame(table) for name, table in tables.items() if table.num_rows}
        quality.check_features(frames, pd.Timestamp.now(tz="UTC"), settings.docs_dir)
        bulk = bulk and redis_layout.supports(store.config)
        _prepare(store, chosen)
        total, done = sum(table.num_rows for table in tables.values()), 0
        for number, fv in enumerate(chosen, 1):
            on_step(f"loading rows, view {number} of {len(chosen)} ({fv.name})")
            on_progress(done, total)
            _load(settings, fv, tables[fv.name], windows[fv.name], bulk)
            done += tables[fv.name].num_rows
            on_progress(done, total)
            expired = online_state.remove_rows(store.config, fv, rows_expired(
                settings, fv, ends[fv.name], loaded.get(fv.name), full))
            if expired:
                log.info("%s: %d rows fell out of the %s TTL and were removed", fv.name, expired,
                         fv.ttl)
        if redis_layout.supports(store.config):
            redis_layout.mark_materialized(store.config)  # services drop their cached item rows
        return {name: table.num_rows for name, table in tables.items()}


def _ends(settings: Settings, views: Sequence[FeatureView], end: datetime | None
          ) -> dict[str, datetime]:
    """Where each view's load ends: `end`, by default just after the last snapshot of the
    log's views; a view updated live (LIVE_VIEWS, stamped when updated) ends after its own
    latest row when that is later, so an update never moves the others' end to the clock."""
    if end is not None:
        return {fv.name: end for fv in views}
    logged = [fv.name for fv in views if fv.name not in LIVE_VIEWS] or [fv.name for fv in views]
    end = last_snapshot(settings, logged) + timedelta(seconds=1)
    return {fv.name: max(end, last_snapshot(settings, [fv.name]) + timedelta(seconds=1))
            if fv.name in LIVE_VIEWS else end for fv in views}


def _prepare(store: FeatureStore, views: Sequence[FeatureView]) -> None:
    """Create the views' tables in the online store, which `apply` did only for the store it
    was given (a home switched to another store lacks them); existing tables are kept."""
    store._get_provider().update_infra(project=store.project, tables_to_delete=[],
                                       tables_to_keep=list(views), entities_to_delete=[],
                                       entities_to_keep=store.list_entities(), partial=True)


def _load(settings: Settings, fv: FeatureView, table: pa.Table,
          window: tuple[datetime, datetime], bulk: bool) -> None:
    """Write one view, then record its interval (in the registry, as Feast does, and in the
    online store): a run killed before the record is complete reloads the view next time. The
    registry's record goes to a staged copy, swapped in atomically, as a kill inside Feast's
    in-place rewrite would leave the registry truncated."""
    with staged_registry(settings) as store:
        if bulk:
            redis_layout.write_view(store.config, fv, table)
            store.registry.apply_materialization(fv, store.project, *window)
        else:
            # Feast prints its progress on stdout, where scripts read `--json` output: kept for
            # the debug log (--verbose) instead
            with contextlib.redirect_stdout(io.StringIO()) as chatter:
                store.materialize(start_date=window[0], end_date=window[1],
                                  feature_views=[fv.name])
            log.debug("feast: %s", chatter.getvalue().strip())
        online_state.record_loaded(store.config, fv.name, window[1])


def rows_to_load(settings: Settings, fv: FeatureView, start: datetime, end: datetime) -> pa.Table:
    """Each entity's latest row of `fv` with start <= timestamp <= end, from the current offline
    version (what Feast's materialization of that interval writes)."""
    glob = settings.offline_current / fv.name / "**" / "*.parquet"
    keys = ", ".join(c.name for c in fv.entity_columns)
    query = (f"SELECT * FROM read_parquet('{glob}', hive_partitioning = false) "
             f"WHERE {TIMESTAMP} >= $start AND {TIMESTAMP} <= $end "
             f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {TIMESTAMP} DESC) = 1")
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(query, {"start": start, "end": end}).to_arrow_table()


def rows_expired(settings: Settings, fv: FeatureView, end: datetime,
                 previous: datetime | None, full: bool) -> pa.Table:
    """The join keys of the entities whose latest row of `fv` at or before `end` is older than
    the view's TTL before `end`: stale as of `end`, as training's point-in-time join would see
    them. Only those that were still current after the previous load into this store, unless
    there was none (or `full`): the store may hold any of them. Views without TTL never expire."""
    keys = ", ".join(c.name for c in fv.entity_columns)
    if not fv.ttl or fv.ttl <= timedelta(0):
        return pa.table({c.name: pa.array([], pa.string()) for c in fv.entity_columns})
    floor = EPOCH if previous is None or full else min(previous, end) - fv.ttl
    glob = settings.offline_current / fv.name / "**" / "*.parquet"
    query = (f"SELECT {keys} FROM read_parquet('{glob}', hive_partitioning = false) "
             f"WHERE {TIMESTAMP} <= $end GROUP BY {keys} "
             f"HAVING max({TIMESTAMP}) < $cutoff AND max({TIMESTAMP}) >= $floor")
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(query, {"end": end, "cutoff": end - fv.ttl,
                                   "floor": floor}).to_arrow_table()


def last_snapshot(settings: Settings, views: Sequence[str]) -> datetime:
    """The latest timestamp of the current offline version over `views` (those with rows)."""
    globs = ", ".join(f"'{settings.offline_current / view / '**' / '*.parquet'}'" for view in views
                      if has_rows(settings, view))
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        (last,) = con.execute(f"SELECT max({TIMESTAMP}) FROM read_parquet([{globs}], "
                              "hive_partitioning = false, union_by_name = true)").fetchone()
    last = pd.Timestamp(last)
    return (last.tz_convert("UTC") if last.tzinfo else last.tz_localize("UTC")).to_pydatetime()


def _frame(table: pa.Table) -> pd.DataFrame:
    """The pandas frame the GE gate checks (aware UTC timestamps, as ingest wrote them)."""
    frame = table.to_pandas()
    frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP], utc=True)
    return frame


def _views(store: FeatureStore, names: Sequence[str] | None,
           settings: Settings) -> list[FeatureView]:
    """The views named (default: every view with rows in the current offline version: the
    lists of retrieval have none before `persona train --task retrieval`)."""
    views = store.list_feature_views()
    if names is None:
        return [fv for fv in views if has_rows(settings, fv.name)]
    unknown = set(names) - {fv.name for fv in views}
    if unknown:
        raise ValueError(f"unknown feature views: {', '.join(sorted(unknown))}")
    empty = [name for name in names if not has_rows(settings, name)]
    if empty:
        raise ValueError(f"no rows to load for {', '.join(sorted(empty))} in the offline store "
                         "(retrieval's lists: run persona train --task retrieval)")
    return [fv for fv in views if fv.name in names]


def has_rows(settings: Settings, view: str) -> bool:
    """Does the current offline version hold rows of `view`?"""
    return any(pq.read_metadata(p).num_rows for p in
               (settings.offline_current / view).rglob("*.parquet"))


def _start(fv: FeatureView, end: datetime, full: bool, previous: datetime | None) -> datetime:
    """Resume after the interval last loaded into this store; first time (or `full`), the TTL
    window."""
    if previous is not None and not full:
        return min(previous, end)
    return end - fv.ttl if fv.ttl and fv.ttl > timedelta(0) else EPOCH
