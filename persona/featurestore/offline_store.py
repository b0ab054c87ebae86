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
call, under a lock. `tests/integration/test_offline_store.py` compares the two on every row and
value.

Its one setting, `root`, is where the sources' relative paths start: the definitions name a view's
Parquet relative to it (`user_activity/**/*.parquet`) and each home's `feature_store.yaml` sets
it to that home's published offline version, so one set of definitions serves every home.

Use it with `offline_store: {type: persona.featurestore.offline_store.AsofDuckDBOfflineStore,
root: <home>/offline/current}` (`persona.featurestore.config` writes it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import ibis
from feast.infra.offline_stores import duckdb as feast_duckdb
from feast.infra.offline_stores import ibis as feast_ibis
from feast.infra.offline_stores.duckdb import DuckDBOfflineStore, DuckDBOfflineStoreConfig
from feast.infra.offline_stores.file_source import FileSource
from pydantic import StrictStr

_SWAP = threading.Lock()
_feast_join = feast_ibis.point_in_time_join  # Feast's own, kept before any swap
_MATCHED_AT = "__persona_matched_at"


class AsofDuckDBOfflineStoreConfig(DuckDBOfflineStoreConfig):
    type: StrictStr = "persona.featurestore.offline_store.AsofDuckDBOfflineStore"
    root: StrictStr | None = None  # where relative source paths start (default: the repo)


def source_reader(config) -> Callable:
    """Feast's DuckDB source reader, with a relative FileSource path taken from the store's root."""
    root = config.offline_store.root

    def read(data_source, repo_path: str):
        if isinstance(data_source, FileSource) and not Path(data_source.path).is_absolute():
            base = Path(repo_path) / root if root else Path(repo_path)  # a relative root too
            located = FileSource.get_uri_for_file_path(base, data_source.path)
            data_source = FileSource(
                name=data_source.name, path=located, file_format=data_source.file_format,
                timestamp_field=data_source.timestamp_field,
                created_timestamp_column=data_source.created_timestamp_column,
                field_mapping=data_source.field_mapping)
        return feast_duckdb._read_data_source(data_source, repo_path)

    return read


def _io(config) -> dict:
    """The reader, writer and staging settings Feast's ibis functions take."""
    return {"data_source_reader": source_reader(config),
            "data_source_writer": feast_duckdb._write_data_source,
            "staging_location": config.offline_store.staging_location,
            "staging_location_endpoint_override":
                config.offline_store.staging_location_endpoint_override}


class AsofDuckDBOfflineStore(DuckDBOfflineStore):
    """Feast's DuckDB store reading sources under `root`, with ASOF point-in-time joins."""

    @staticmethod
    def get_historical_features(config, feature_views, feature_refs, entity_df, registry,
                                project, full_feature_names=False,
                                filter_by_created_timestamp=False):
        # Feast's DuckDB store plans on ibis's default DuckDB connection. DuckDB turns an ASOF
        # join whose left side it estimates small into a nested loop, and it estimates the
        # entity rows (a pandas frame) at one row: 1.9 ms per entity row instead of 5 us.
        ibis.get_backend().raw_sql("SET asof_loop_join_threshold = 0")
        feast_duckdb._validate_lance_feature_views(feature_views)
        with _asof_joins():
            return feast_ibis.get_historical_features_ibis(
                config=config, feature_views=feature_views, feature_refs=feature_refs,
                entity_df=entity_df, registry=registry, project=project,
                full_feature_names=full_feature_names,
                filter_by_created_timestamp=filter_by_created_timestamp, **_io(config))

    @staticmethod
    def pull_latest_from_table_or_query(config, data_source, join_key_columns,
                                        feature_name_columns, timestamp_field,
                                        created_timestamp_column, start_date, end_date):
        return feast_ibis.pull_latest_from_table_or_query_ibis(
            config=config, data_source=data_source, join_key_columns=join_key_columns,
            feature_name_columns=feature_name_columns, timestamp_field=timestamp_field,
            created_timestamp_column=created_timestamp_column, start_date=start_date,
            end_date=end_date, **_io(config))

    @staticmethod
    def pull_all_from_table_or_query(config, data_source, join_key_columns,
                                     feature_name_columns, timestamp_field,
                                     created_timestamp_column=None, start_date=None,
                                     end_date=None):
        return feast_ibis.pull_all_from_table_or_query_ibis(
            config=config, data_source=data_source, join_key_columns=join_key_columns,
            feature_name_columns=feature_name_columns, timestamp_field=timestamp_field,
            created_timestamp_column=created_timestamp_column, start_date=start_date,
            end_date=end_date, **_io(config))


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


