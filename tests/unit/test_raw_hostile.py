"""Hostile raw files: each is refused with a message naming the file, the column and the rows
(where they apply), before anything is written. Extra columns are dropped with a warning.

Already covered elsewhere: a missing required column, and that a batch rejected by a gate or by
the reader leaves a previous version and the registry untouched
(tests/integration/test_ingest_gates.py); the gates' own failures for negative prices,
repeated event ids and unknown ids (tests/unit/test_expectations.py).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from expectations.gate import DataQualityError
from persona.core.contract import ContractError
from persona.core.settings import Settings
from persona.data.quality import check_raw
from persona.data.raw import ReadOptions, parse_timestamps, read_raw, rows_at
from persona.jobs.ingest import ingest
from persona.synthetic_shop import Shop, write_shop

Mutate = Callable[[Path], None]


@pytest.fixture(scope="module")
def csv_shop(tmp_path_factory: pytest.TempPathFactory, small_shop: Shop) -> Path:
    out = tmp_path_factory.mktemp("csv_shop")
    write_shop(small_shop, out, fmt="csv")
    return out


def _copy(csv_shop: Path, tmp_path: Path, mutate: Mutate) -> Path:
    raw = tmp_path / "raw"
    shutil.copytree(csv_shop, raw)
    mutate(raw)
    return raw


def _rewrite(table: str, change: Callable[[pd.DataFrame], pd.DataFrame] = lambda f: f,
             **to_csv) -> Mutate:
    """Rewrite `<table>.csv` after `change`, with pandas' `to_csv` options (sep, encoding)."""
    def mutate(raw: Path) -> None:
        path = raw / f"{table}.csv"
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        change(frame).to_csv(path, index=False, **to_csv)
    return mutate


def _set(column: str, row: int, value: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[row, column] = value
        return frame
    return change


def _with_ids(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(event_id=[f"e{i}" for i in range(len(frame))])


def _truncated_parquet(raw: Path) -> None:
    data = pd.read_csv(raw / "events.csv").to_parquet()
    (raw / "events.csv").unlink()
    (raw / "events.parquet").write_bytes(data[: len(data) // 2])


def _mixed_zones(frame: pd.DataFrame) -> pd.DataFrame:
    """Row 3 with an explicit offset (fine), row 5 a time of day without one (ambiguous)."""
    frame.loc[3, "event_timestamp"] = "2026-01-05T12:00:00+02:00"
    frame.loc[5, "event_timestamp"] = "2026-01-05 10:00:00"
    return frame


# case: (how the raw directory is broken, the file named, what else the message must say)
READ_CASES: dict[str, tuple[Mutate, str, list[str]]] = {
    "truncated parquet": (_truncated_parquet, "events.parquet", ["truncated or corrupt"]),
    "semicolon-separated": (_rewrite("events", sep=";"), "events.csv", ["';'-separated"]),
    "tab-separated": (_rewrite("users", sep="\t"), "users.csv", ["'\\t'-separated"]),
    "latin-1": (_rewrite("items", _set("brand", 2, "Café"), encoding="latin-1"), "items.csv",
                ["not UTF-8", "['brand']", "rows [2]", "'Caf\ufffd'"]),
    "utf-16": (_rewrite("users", encoding="utf-16"), "users.csv", ["UTF-16"]),
    "utf-16 without BOM": (_rewrite("users", encoding="utf-16-le"), "users.csv", ["UTF-16"]),
    "decimal comma": (_rewrite("events", _set("price", 4, "12,50")), "events.csv",
                      ["column price is not numeric", "rows [4]", "'12,50'"]),
    "fractional quantity": (_rewrite("events", _set("quantity", 6, "1.5")), "events.csv",
                            ["column quantity is not a whole number", "rows [6]"]),
    "unparseable timestamp": (_rewrite("users", _set("signup_timestamp", 3, "yesterday")),
                              "users.csv", ["column signup_timestamp", "rows [3]", "'yesterday'",
                                            "file lines [5]", "accepted: ISO 8601",
                                            "--timestamp-format"]),
    "spreadsheet dates": (_rewrite("events", _set("event_timestamp", 2, "5/26/2026 14:04")),
                          "events.csv", ["rows [2] (from 0 after the header; file lines [4])",
                                         "'5/26/2026 14:04'", "--timestamp-format"]),
    "naive next to offsets": (_rewrite("events", _mixed_zones), "events.csv",
                              ["column event_timestamp", "rows [5]", "ambiguous"]),
}


@pytest.mark.parametrize("case", list(READ_CASES))
def test_hostile_file_is_refused_before_anything_is_written(
        case: str, csv_shop: Path, tmp_path: Path, settings: Settings) -> None:
    mutate, file, fragments = READ_CASES[case]
    raw = _copy(csv_shop, tmp_path, mutate)
    with pytest.raises(ContractError) as caught:
        ingest(settings, raw)
    message = str(caught.value)
    assert str(raw / file) in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert [p for p in settings.home.rglob("*")] == [settings.lock_path]


GATE_CASES: dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame], list[str]]] = {
    "negative price": (_set("price", 3, "-1.0"), ["column=price", "rows [3]", "-1.0"]),
    "repeated event id": (lambda f: pd.concat([_with_ids(f), _with_ids(f).iloc[[7]]],
                                              ignore_index=True),
                          ["column=event_id", "rows [7, ", "'e7'"]),
    "unknown user": (_set("user_id", 5, "U9999999"), ["column=user_id", "rows [5]", "'U9999999'"]),
}


@pytest.mark.parametrize("case", list(GATE_CASES))
def test_gate_failure_names_file_column_and_rows(case: str, csv_shop: Path, tmp_path: Path) -> None:
    change, fragments = GATE_CASES[case]
    raw = read_raw(_copy(csv_shop, tmp_path, _rewrite("events", change)))
    with pytest.raises(DataQualityError) as caught:
        check_raw(raw, pd.Timestamp.now(tz="UTC"), None)
    message = str(caught.value)
    assert f"'raw.events' failed 1 expectation(s) on {raw.paths['events']}:" in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_explicit_offsets_convert_to_utc_and_a_date_is_midnight_utc() -> None:
    values = pd.Series(["2026-01-05T12:00:00+02:00", "2026-01-05T10:00:00Z",
                        "2026-01-05T05:00:00-0500", "2026-01-05"])
    parsed = parse_timestamps(values, "test")
    assert parsed.tolist() == [pd.Timestamp("2026-01-05 10:00", tz="UTC")] * 3 + [
        pd.Timestamp("2026-01-05", tz="UTC")]
    naive = parse_timestamps(pd.Series(["2026-01-05 10:00:00", "2026-01-05T11:00"]), "test")
    assert naive.tolist() == [pd.Timestamp("2026-01-05 10:00", tz="UTC"),
                              pd.Timestamp("2026-01-05 11:00", tz="UTC")]


def test_extra_columns_are_dropped_with_a_warning_naming_them(
        csv_shop: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    raw_dir = _copy(csv_shop, tmp_path, _rewrite("users", lambda f: f.assign(email="a@b.c")))
    with caplog.at_level(logging.WARNING, logger="persona.data.raw"):
        raw = read_raw(raw_dir)
    assert "email" not in raw.users.columns
    (warning,) = [r.getMessage() for r in caplog.records
                  if "outside the contract" in r.getMessage()]
    assert str(raw_dir / "users.csv") in warning and "['email']" in warning


def _spreadsheet_dates(frame: pd.DataFrame) -> pd.DataFrame:
    """Every timestamp the way a spreadsheet writes it: month/day/year hour:minute."""
    for column in ("event_timestamp", "signup_timestamp", "created_timestamp"):
        if column in frame.columns:
            frame[column] = pd.to_datetime(frame[column]).dt.strftime("%m/%d/%Y %H:%M")
    return frame


def test_an_explicit_timestamp_format_reads_spreadsheet_dates(csv_shop: Path,
                                                              tmp_path: Path) -> None:
    def mutate(raw: Path) -> None:
        for table in ("events", "users", "items"):
            _rewrite(table, _spreadsheet_dates)(raw)
    raw_dir = _copy(csv_shop, tmp_path, mutate)
    with pytest.raises(ContractError, match="accepted: ISO 8601"):
        read_raw(raw_dir)
    raw = read_raw(raw_dir, ReadOptions(timestamp_format="%m/%d/%Y %H:%M"))
    plain = read_raw(csv_shop)
    assert (raw.events["event_timestamp"] == plain.events["event_timestamp"].dt.floor("min")).all()
    with pytest.raises(ContractError, match=r"expected the layout '%d.%m.%Y'"):
        read_raw(raw_dir, ReadOptions(timestamp_format="%d.%m.%Y"))
    # ISO 8601 stays accepted beside the layout (another table of the export may use it)
    assert read_raw(csv_shop, ReadOptions(timestamp_format="%m/%d/%Y %H:%M")).events.equals(
        plain.events)


def test_epoch_seconds_are_utc() -> None:
    parsed = parse_timestamps(pd.Series([1767225600, 1767225661]), "test")
    assert parsed.tolist() == [pd.Timestamp("2026-01-01", tz="UTC"),
                               pd.Timestamp("2026-01-01 00:01:01", tz="UTC")]


def test_rows_alike_are_kept_and_repeated_event_ids_dropped_only_on_request(
        csv_shop: Path, tmp_path: Path) -> None:
    alike = read_raw(_copy(csv_shop, tmp_path / "alike", _rewrite(
        "events", lambda f: pd.concat([f, f.iloc[[3, 3]]], ignore_index=True))))
    assert len(alike.events) == len(read_raw(csv_shop).events) + 2  # never merged
    check_raw(alike, pd.Timestamp.now(tz="UTC"), None)  # nor refused
    repeated = _copy(csv_shop, tmp_path / "ids", _rewrite(
        "events", lambda f: pd.concat([_with_ids(f), _with_ids(f).iloc[[3, 5, 5]]],
                                      ignore_index=True)))
    kept = read_raw(repeated)
    assert kept.duplicate_ids_dropped == 0 and kept.events["event_id"].duplicated().sum() == 3
    deduped = read_raw(repeated, ReadOptions(dedupe=True))
    assert deduped.duplicate_ids_dropped == 3 and deduped.events["event_id"].is_unique
    assert deduped.events["event_id"].tolist() == [f"e{i}" for i in range(len(deduped.events))]
    check_raw(deduped, pd.Timestamp.now(tz="UTC"), None)


def test_rows_at_counts_from_zero_and_gives_csv_lines() -> None:
    assert rows_at([3, 7], Path("events.csv")) == (
        "rows [3, 7] (from 0 after the header; file lines [5, 9])")
    assert rows_at([3, 7, 8, 9], Path("events.parquet")) == (
        "rows [3, 7, 8] (from 0 after the header)")


def test_item_availability_is_read_as_flags_and_anything_else_is_refused(
        csv_shop: Path, tmp_path: Path) -> None:
    words = _rewrite("items", lambda f: f.assign(available=["Yes", "no", "TRUE", "0"] * (
        len(f) // 4) + ["1"] * (len(f) % 4)))
    items = read_raw(_copy(csv_shop, tmp_path / "words", words)).items
    assert items["available"].tolist()[:4] == [1, 0, 1, 0] and items["available"].dtype == "int64"
    absent = _rewrite("items", lambda f: f.drop(columns="available"))
    assert (read_raw(_copy(csv_shop, tmp_path / "absent", absent)).items["available"] == 1).all()
    with pytest.raises(ContractError, match="column available is not true/false"):
        read_raw(_copy(csv_shop, tmp_path / "bad",
                       _rewrite("items", _set("available", 3, "maybe"))))
