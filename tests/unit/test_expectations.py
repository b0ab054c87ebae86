"""Data tests of the quality gates: good frames pass, each class of bad input is stopped with a
message that names the failed expectation and shows the bad value, and Data Docs are written."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from expectations.features import feature_suite
from expectations.gate import DataQualityError, GateResult, run_gate
from expectations.raw import events_suite, items_suite, users_suite
from expectations.training import training_suite
from persona.core.schema import FEATURE_TABLES, Kind

NOW = pd.Timestamp("2024-06-01 12:00:00", tz="UTC")
USERS = ["u1", "u2", "u3"]
ITEMS = ["i1", "i2"]


def ts(*offsets_hours: float) -> pd.Series:
    stamps = [NOW - pd.Timedelta(hours=h) for h in offsets_hours]
    return pd.Series(stamps).astype("datetime64[ns, UTC]")


def events() -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": pd.Series(["u1", "u1", "u2", "u3"], dtype=object),
        "item_id": pd.Series(["i1", "i1", "i2", "i1"], dtype=object),
        "event_type": pd.Series(["view", "cart", "purchase", "view"], dtype=object),
        "event_timestamp": ts(5, 4, 3, 0),
        "quantity": np.array([1, 1, 2, 1], dtype="int64"),
        "price": [10.0, 10.0, 0.0, 10.0],
        "event_id": pd.Series(["e1", "e2", "e3", "e4"], dtype=object),
    })


def users() -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": pd.Series(USERS, dtype=object),
        "signup_timestamp": ts(100, 50, 1),
        "age_band": ["25-34", None, "35-44"],
        "gender": ["f", "m", None],
        "region": ["north", "south", "east"],
        "membership_level": [None, "gold", "basic"],
    })


def items() -> pd.DataFrame:
    return pd.DataFrame({
        "item_id": pd.Series(ITEMS, dtype=object),
        "category": ["books", "toys"],
        "brand": ["acme", "toyco"],
        "list_price": [12.5, 0.0],
        "created_timestamp": ts(200, 10),
        "available": [1, 0],
    })


def feature_frame(view: str) -> pd.DataFrame:
    """A valid frame for a feature view, built from its declaration: 2 entities x 2 snapshots."""
    table = FEATURE_TABLES[view]
    n = 4
    frame = {k: pd.Series([f"{k}{i % 2}" for i in range(n)], dtype=object) for k in table.keys}
    frame["event_timestamp"] = ts(48, 48, 24, 24)
    values = {Kind.STRING: ["a", "b", "c", "d"], Kind.COUNT: np.arange(n, dtype="int64"),
              Kind.AMOUNT: [0.0, 1.5, 2.0, 30.0], Kind.RATE: [0.0, 0.25, 0.5, 1.0],
              Kind.INSTANT: [1.7e9, 1.7e9 + 1, 1.75e9, 1.8e9],
              Kind.FLAG: np.array([0, 1, 1, 0], dtype="int64")}
    for column in table.columns:
        column_values = pd.Series(values[column.kind])
        if column.nullable:
            column_values = column_values.astype(object).where(column_values.index != 0, None)
        frame[column.name] = column_values
    return pd.DataFrame(frame)


def training() -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": pd.Series(["u1", "u2"], dtype=object),
        "item_id": pd.Series(["i1", "i2"], dtype=object),
        "event_timestamp": ts(2, 1),
        "label": np.array([0, 1], dtype="int64"),
        "conversion_rate_30d": [0.02, np.nan],
        "aov_90d": [12.0, 250.0],
    })


TRAINING_FEATURES = ["conversion_rate_30d", "aov_90d"]


def raise_gate(suite, df, docs_dir=None) -> DataQualityError:
    with pytest.raises(DataQualityError) as info:
        run_gate(suite, df, docs_dir)
    return info.value


# --- good frames pass --------------------------------------------------------------------------

def test_good_raw_tables_pass_and_write_data_docs(tmp_path):
    for suite, df in [(events_suite(NOW, USERS, ITEMS), events()), (users_suite(NOW), users()),
                      (items_suite(NOW), items())]:
        result = run_gate(suite, df, tmp_path / "docs")
        assert isinstance(result, GateResult) and result.success
        assert result.statistics["unsuccessful_expectations"] == 0
        assert result.docs_path.suffix == ".html" and result.docs_path.is_file()
        assert tmp_path / "docs" in result.docs_path.parents
        json.dumps(result.summary())
    assert (tmp_path / "docs" / "index.html").is_file()


def test_gates_sharing_a_docs_dir_keep_every_page_and_suites_can_be_rerun(tmp_path):
    suite = users_suite(NOW)
    first = run_gate(suite, users(), tmp_path)
    second = run_gate(items_suite(NOW), items(), tmp_path)
    again = run_gate(suite, users(), tmp_path)
    assert len({first.docs_path, second.docs_path, again.docs_path}) == 3
    assert all(p.is_file() for p in (first.docs_path, second.docs_path, again.docs_path))
    index = (tmp_path / "index.html").read_text()
    assert all(p.name in index for p in (first.docs_path, second.docs_path))


@pytest.mark.parametrize("view", sorted(FEATURE_TABLES))
def test_good_feature_tables_pass(view):
    result = run_gate(feature_suite(view, NOW), feature_frame(view))
    assert result.success and result.docs_path is None
    assert result.summary()["suite"] == f"features.{view}"


def test_good_training_frame_passes():
    assert run_gate(training_suite(TRAINING_FEATURES), training()).success


# --- bad raw events are stopped ------------------------------------------------------------------

def _set(column, row, value):
    def mutate(df):
        df.loc[row, column] = value
        return df
    return mutate


EVENT_CASES = {
    "null id": (_set("user_id", 1, None),
                "expect_column_values_to_not_be_null(column=user_id)", "None"),
    "id not a string": (_set("item_id", 2, 7),
                        "expect_column_values_to_be_of_type(column=item_id, type_=str)",
                        "e.g. [7]"),
    "unknown event type": (_set("event_type", 0, "click"),
                           "expect_column_values_to_be_in_set(column=event_type", "'click'"),
    "negative price": (_set("price", 2, -3.5),
                       "expect_column_values_to_be_between(column=price", "-3.5"),
    "quantity 0": (lambda df: df.assign(quantity=[1, 0, 1, 1]),
                   "expect_column_values_to_be_between(column=quantity", "e.g. [0]"),
    "repeated event id": (lambda df: pd.concat([df, df.iloc[[2]]], ignore_index=True),
                          "expect_column_values_to_be_unique(column=event_id)",
                          "at rows [2, 4], e.g. ['e3', 'e3']"),
    "unknown user": (_set("user_id", 3, "u404"),
                     "expect_column_values_to_be_in_set(column=user_id", "'u404'"),
    "unknown item": (_set("item_id", 3, "i404"),
                     "expect_column_values_to_be_in_set(column=item_id", "'i404'"),
    "future timestamp": (_set("event_timestamp", 0, NOW + pd.Timedelta(days=1)),
                         "expect_column_values_to_be_between(column=event_timestamp",
                         "2024-06-02 12:00:00+00:00"),
    "empty table": (lambda df: df.iloc[0:0],
                    "expect_table_row_count_to_be_between(min_value=1", "observed 0"),
}


@pytest.mark.parametrize("case", sorted(EVENT_CASES))
def test_bad_events_are_stopped(case):
    mutate, expectation, example = EVENT_CASES[case]
    error = raise_gate(events_suite(NOW, USERS, ITEMS), mutate(events()))
    failed = [line for line in str(error).splitlines() if expectation in line]
    assert failed, f"{expectation} not in:\n{error}"
    assert example in failed[0], f"{example} not in {failed[0]}"
    assert error.suite == "raw.events" and error.docs_path is None


def test_failure_carries_structured_examples_and_data_docs_path(tmp_path):
    df = events()
    df.loc[[0, 2], "price"] = [-1.0, -2.0]
    error = raise_gate(events_suite(NOW, USERS, ITEMS), df, tmp_path)
    (failure,) = error.failures
    assert failure.column == "price" and failure.examples == [-1.0, -2.0]
    assert failure.expectation.startswith(
        "expect_column_values_to_be_between(column=price, min_value=0")
    assert error.docs_path.is_file() and error.docs_path.suffix == ".html"
    assert f"Data Docs: {error.docs_path}" in str(error)


def test_a_repeated_event_id_fails_naming_it():
    df = pd.concat([events(), events().iloc[[0]]], ignore_index=True)
    (failure,) = raise_gate(events_suite(NOW), df).failures
    assert failure.column == "event_id" and "e1" in str(failure.examples)


def test_rows_alike_without_event_ids_are_separate_transactions():
    # a date-stamped export: the same customer bought the same item twice that day
    df = pd.concat([events(), events().iloc[[2, 2]]], ignore_index=True).assign(event_id=None)
    assert run_gate(events_suite(NOW), df).success


def test_naive_timestamps_are_refused():
    df = users().assign(signup_timestamp=lambda d: d["signup_timestamp"].dt.tz_localize(None))
    error = raise_gate(users_suite(NOW), df)
    expected = "expect_column_values_to_be_of_type(column=signup_timestamp, type_=Timestamp)"
    assert expected in str(error)


def test_duplicated_user_and_negative_list_price():
    dup = raise_gate(users_suite(NOW), pd.concat([users(), users().iloc[[1]]], ignore_index=True))
    assert "expect_column_values_to_be_unique(column=user_id)" in str(dup) and "'u2'" in str(dup)
    neg = raise_gate(items_suite(NOW), items().assign(list_price=[12.5, -1.0]))
    assert "expect_column_values_to_be_between(column=list_price" in str(neg) and "-1.0" in str(neg)


# --- bad feature tables are stopped --------------------------------------------------------------

FEATURE_CASES = {
    "rate above 1": ("user_activity", _set("view_to_purchase_rate_90d", 1, 1.25),
                     "expect_column_values_to_be_between(column=view_to_purchase_rate_90d, "
                     "min_value=0", "1.25"),
    "negative count": ("item_popularity", lambda df: df.assign(views_7d=[0, -4, 2, 3]),
                       "expect_column_values_to_be_between(column=views_7d, min_value=0", "-4"),
    "duplicate entity and timestamp": (
        "user_category_affinity", lambda df: pd.concat([df, df.iloc[[3]]], ignore_index=True),
        "expect_compound_columns_to_be_unique(column_list=[user_id, category, event_timestamp])",
        "{user_id: 'user_id1', category: 'category1'"),
    "null key": ("item_catalog", _set("item_id", 2, None),
                 "expect_column_values_to_not_be_null(column=item_id)", "None"),
    "future snapshot": ("item_popularity", _set("event_timestamp", 1, NOW + pd.Timedelta(hours=1)),
                        "expect_column_values_to_be_between(column=event_timestamp",
                        "2024-06-01 13:00:00+00:00"),
    "count not an integer": ("user_activity", lambda df: df.assign(views_7d=[0.5, 1.0, 2.0, 3.0]),
                             "expect_column_values_to_be_in_type_list(column=views_7d",
                             "observed 'float64'"),
}


@pytest.mark.parametrize("case", sorted(FEATURE_CASES))
def test_bad_feature_tables_are_stopped(case):
    view, mutate, expectation, example = FEATURE_CASES[case]
    error = raise_gate(feature_suite(view, NOW), mutate(feature_frame(view)))
    failed = [line for line in str(error).splitlines() if expectation in line]
    assert failed, f"{expectation} not in:\n{error}"
    assert example in failed[0], f"{example} not in {failed[0]}"


# --- bad training frames are stopped -------------------------------------------------------------

def test_bad_training_frames_are_stopped():
    suite = training_suite(TRAINING_FEATURES)
    label = raise_gate(suite, training().assign(label=[0, 2]))
    assert "expect_column_values_to_be_in_set(column=label, value_set=[0, 1])" in str(label)
    assert "e.g. [2]" in str(label)
    rate = raise_gate(suite, training().assign(conversion_rate_30d=[1.5, np.nan]))
    assert "expect_column_values_to_be_between(column=conversion_rate_30d" in str(rate)
    assert "1.5" in str(rate)
    missing = raise_gate(suite, training().drop(columns=["aov_90d"]))
    assert "expect_column_to_exist(column=aov_90d): no such column" in str(missing)
