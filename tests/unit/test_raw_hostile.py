"""Hostile raw files: each is refused with a message naming the file, the column and the rows
(where they apply), before anything is written. Extra columns are dropped with a warning.

Already covered elsewhere: a missing required column, and that a batch rejected by a gate or by
the reader leaves a previous version and the registry untouched
(tests/integration/test_ingest_gates.py); the gates' own failures for negative prices,
duplicates and unknown ids (tests/unit/test_expectations.py).
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
from persona.data.raw import parse_timestamps, read_raw
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
                              "users.csv", ["column signup_timestamp", "rows [3]", "'yesterday'"]),
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
    "duplicated event": (lambda f: pd.concat([f, f.iloc[[7]]], ignore_index=True),
                         ["expect_compound_columns_to_be_unique", "rows [7, "]),
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
