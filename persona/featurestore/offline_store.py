"""Feast's DuckDB offline store, with its point-in-time joins done as DuckDB ASOF joins.

Feast 0.67 plans `get_historical_features` on DuckDB as, per feature view, an inner join of every
feature row of the entity with the entity row (timestamp and TTL as join conditions), a
`row_number()` window to keep the latest match, and a join back on a string row id: 1.3x a
hand-written `ASOF JOIN` on 1,000,000 rows (bench/retrieval.py). This store keeps everything
else of Feast's (reading sources, field mappings, on-demand views, the retrieval job) and
replaces only that join, with ibis's `asof_join`, which DuckDB runs as one `ASOF LEFT JOIN` per
view: the latest feature row at or before the entity row's timestamp, its values dropped when
older than the view's TTL. An entity row without a match is kept with nulls, as in Feast's plan.
Feast has no hook for the join, so its module-level function is swapped for the length of the
call, under a lock. `tests/test_offline_store.py` compares the two on every row and value.

Use it with `offline_store: type: persona.featurestore.offline_store.AsofDuckDBOfflineStore`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import ibis
from feast.infra.offline_stores import ibis as feast_ibis
from feast.infra.offline_stores.duckdb import DuckDBOfflineStore, DuckDBOfflineStoreConfig
from pydantic import StrictStr

_SWAP = threading.Lock()
_feast_join = feast_ibis.point_in_time_join  # Feast's own, kept before any swap
_MATCHED_AT = "__persona_matched_at"


class AsofDuckDBOfflineStoreConfig(DuckDBOfflineStoreConfig):
    type: StrictStr = "persona.featurestore.offline_store.AsofDuckDBOfflineStore"


class AsofDuckDBOfflineStore(DuckDBOfflineStore):
    @staticmethod
    def get_historical_features(*args, **kwargs):
        # Feast's DuckDB store plans on ibis's default DuckDB connection. DuckDB turns an ASOF
        # join whose left side it estimates small into a nested loop, and it estimates the
        # entity rows (a pandas frame) at one row: 1.9 ms per entity row instead of 5 us.
        ibis.get_backend().raw_sql("SET asof_loop_join_threshold = 0")
        with _asof_joins():
            return DuckDBOfflineStore.get_historical_features(*args, **kwargs)


@contextmanager
def _asof_joins() -> Iterator[None]:
    with _SWAP:
        feast_join = feast_ibis.point_in_time_join
        feast_ibis.point_in_time_join = asof_point_in_time_join
        try:
            yield
        finally:
            feast_ibis.point_in_time_join = feast_join


def asof_point_in_time_join(entity_table, feature_tables, event_timestamp_col="event_timestamp",
                            event_expire_timestamp_fn=None, filter_by_created_timestamp=False):
    """Feast's `point_in_time_join` contract (same arguments, same columns out) with one ASOF
    join per view. Cases this plan does not cover go to Feast's own join."""
    if event_expire_timestamp_fn is not None or filter_by_created_timestamp:
        return _feast_join(entity_table, feature_tables, event_timestamp_col,
                           event_expire_timestamp_fn, filter_by_created_timestamp)
    entity_columns = [c for c in entity_table.columns if c != "entity_row_id"]
    acc = entity_table.select(*entity_columns)
    features: list[str] = []
    for table, timestamp_field, created_field, join_key_map, refs, ttl in feature_tables:
        if set(refs) & set(acc.columns):  # a feature named like an entity column: Feast's rules
            return _feast_join(entity_table, feature_tables, event_timestamp_col, None, False)
        if created_field:  # of rows with equal timestamps, the latest created one
            table = feast_ibis.deduplicate(table, [*join_key_map, timestamp_field],
                                           timestamp_field, created_field)
        right = table.select(*join_key_map, *refs, **{_MATCHED_AT: table[timestamp_field]})
        joined = acc.asof_join(
            right, on=acc[event_timestamp_col] >= right[_MATCHED_AT],
            predicates=[acc[entity] == right[key] for key, entity in join_key_map.items()])
        values = {ref: joined[ref] for ref in refs}
        if ttl:
            fresh = joined[_MATCHED_AT] + ibis.literal(ttl) >= joined[event_timestamp_col]
            values = {ref: fresh.ifelse(column, ibis.null(column.type()))
                      for ref, column in values.items()}
        acc = joined.select(*entity_columns, *features, **values)
        features.extend(refs)
    return acc


