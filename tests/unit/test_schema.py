"""The one feature schema and what derives from it: the snapshot SQL's tables, the Feast fields
and the GE feature suites must each agree with `persona.core.schema`, column by column, so that
none of them can change alone."""

from __future__ import annotations

import pandas as pd
import pytest
from feast import FeatureView

from expectations.features import feature_suite
from feature_repo import definitions
from persona.core.schema import FEATURE_TABLES, TIMESTAMP, Kind
from persona.data.raw import RawTables
from persona.data.snapshots import compute_features
from persona.synthetic_shop import Shop

VIEWS = sorted(FEATURE_TABLES)


@pytest.fixture(scope="module")
def computed(small_shop: Shop) -> dict[str, pd.DataFrame]:
    return compute_features(RawTables(small_shop.events, small_shop.users, small_shop.items, {}))


def _kind_of(series: pd.Series) -> set[Kind]:
    """The schema kinds a column's dtype can hold."""
    if pd.api.types.is_integer_dtype(series):
        return {Kind.COUNT, Kind.FLAG}
    if pd.api.types.is_float_dtype(series):
        return {Kind.AMOUNT, Kind.RATE, Kind.INSTANT}
    return {Kind.STRING}


@pytest.mark.parametrize("view", VIEWS)
def test_snapshot_tables_have_the_schema_columns_in_order_with_their_types(
        view: str, computed: dict[str, pd.DataFrame]) -> None:
    table = FEATURE_TABLES[view]
    frame = computed[view]
    assert TIMESTAMP in frame.columns
    assert [c for c in frame.columns if c != TIMESTAMP] == [*table.keys, *table.names]
    wrong = {c.name: str(frame[c.name].dtype) for c in table.columns
             if c.kind not in _kind_of(frame[c.name])}
    assert not wrong, wrong


@pytest.mark.parametrize("view", VIEWS)
def test_feast_fields_are_the_schema(view: str) -> None:
    fv: FeatureView = getattr(definitions, view)
    table = FEATURE_TABLES[view]
    assert [(f.name, f.dtype, f.description) for f in fv.features] == [
        (c.name, definitions.DTYPES[c.kind], c.description) for c in table.columns]
    assert sorted(getattr(definitions, entity).join_key for entity in fv.entities) == sorted(
        table.keys)


@pytest.mark.parametrize("view", VIEWS)
def test_every_schema_column_is_checked_by_the_feature_suite(view: str) -> None:
    suite = feature_suite(view, pd.Timestamp("2026-01-01", tz="UTC"))
    checked = {e.column for e in suite.expectations if hasattr(e, "column")}
    table = FEATURE_TABLES[view]
    assert set(table.names) <= checked
    present = {e.column for e in suite.expectations if type(e).__name__ == "ExpectColumnToExist"}
    assert present == {*table.keys, TIMESTAMP, *table.names}
