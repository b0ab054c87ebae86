"""Reading a shop's raw directory into frames that follow the data contract.

Every way a file can break the contract is reported with the file, the column and example rows
(rows count from 0 after the header, the frame's index; for CSV also the file's line numbers);
columns outside the contract are dropped with a warning naming them. CSV files are
comma-separated UTF-8: other delimiters and encodings are refused rather than guessed, since a
wrong guess silently garbles prices and text.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from persona.core.contract import EVENTS, ITEMS, TABLES, USERS, ContractError, TableSpec, find_table

log = logging.getLogger(__name__)

# Delimiters that give away a CSV written for another locale or tool (one column, name and all).
FOREIGN_DELIMITERS = (";", "\t", "|")
# A time of day followed by an explicit UTC offset: 'Z', '+02', '+0200' or '+02:00'.
TIME_WITH_OFFSET = r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$"
TIME_OF_DAY = r"\d{1,2}:\d{2}"
TIMESTAMP_FORMATS = ("ISO 8601 dates and times (2026-05-26, 2026-05-26 14:04:05, "
                     "2026-05-26T14:04:05+02:00), epoch seconds or Parquet timestamps; for "
                     "another layout pass --timestamp-format (e.g. '%m/%d/%Y %H:%M')")
CSV_HEADER_LINES = 1


@dataclass(frozen=True)
class ReadOptions:
    """How a raw directory is read; ingest records them, so training and scoring re-read the
    log exactly as it was ingested."""

    timestamp_format: str | None = None  # strptime layout of string timestamps; None: ISO 8601
    dedupe: bool = False  # drop rows repeating an earlier row's event_id instead of refusing

    def record(self) -> dict:
        return {"timestamp_format": self.timestamp_format, "dedupe": self.dedupe}

    @classmethod
    def recorded(cls, manifest: dict) -> ReadOptions:
        read = manifest.get("read_options") or {}
        return cls(read.get("timestamp_format"), bool(read.get("dedupe", False)))


PLAIN_READ = ReadOptions()


@dataclass(frozen=True)
class RawTables:
    events: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    paths: dict[str, Path]
    duplicate_ids_dropped: int = 0  # with ReadOptions.dedupe


def rows_at(index: pd.Index | list, path: Path | None = None) -> str:
    """'rows [3, 7] (from 0 after the header; file lines [5, 9])' for the first three rows; the
    line numbers for CSV files only (a quoted value spanning lines would shift them)."""
    rows = [int(i) for i in list(index)[:3]]
    text = f"rows {rows} (from 0 after the header"
    if path is not None and Path(path).suffix == ".csv":
        text += f"; file lines {[r + CSV_HEADER_LINES + 1 for r in rows]}"
    return text + ")"


def _load(path: Path, spec: TableSpec) -> pd.DataFrame:
    try:
        if path.suffix == ".csv":
            return _read_csv(path, spec)
        return pd.read_parquet(path)
    except ContractError:
        raise
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, spec) from exc
    except Exception as exc:  # unreadable file: truncated or corrupt Parquet, ragged CSV, ...
        raise ContractError(f"{path}: cannot read the {spec.name} table "
                            f"(truncated or corrupt file?): {exc}") from exc


def _read_csv(path: Path, spec: TableSpec) -> pd.DataFrame:
    """A UTF-8, comma-separated file. UTF-16 is caught up front: without a byte-order mark its
    NUL bytes are valid UTF-8, and pandas would read garbage column names."""
    with path.open("rb") as handle:
        head = handle.read(4096)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in head:
        raise ContractError(f"{path}: the {spec.name} table is UTF-16 (or binary), not UTF-8 "
                            "text; save it as UTF-8 CSV")
    df = pd.read_csv(path, dtype={c: "string" for c in spec.strings}, encoding="utf-8")
    if len(df.columns) == 1:
        header = str(df.columns[0])
        for sep in FOREIGN_DELIMITERS:
            if sep in header:
                raise ContractError(f"{path}: the {spec.name} table reads as one column "
                                    f"{header!r}: it looks {sep!r}-separated; Persona reads "
                                    "comma-separated CSV")
    return df


def _not_utf8(path: Path, spec: TableSpec) -> ContractError:
    """Where a CSV file is not UTF-8 (latin-1, cp1252, ...): the columns and rows whose bytes do
    not decode, found by decoding again with replacement characters."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    cells = [(row, header[col] if col < len(header) else f"field {col + 1}", value)
             for row, fields in enumerate(reader) for col, value in enumerate(fields)
             if "\ufffd" in value]
    if not cells:
        return ContractError(f"{path}: the {spec.name} table's header {header} is not UTF-8; "
                             "save the file as UTF-8")
    columns = sorted({column for _, column, _ in cells})
    where = sorted({row for row, _, _ in cells})
    return ContractError(f"{path}: the {spec.name} table is not UTF-8 (latin-1 or another 8-bit "
                         f"encoding?) in column(s) {columns} at {rows_at(where, path)}: "
                         f"{[value for *_, value in cells[:3]]}; save the file as UTF-8")


def parse_timestamps(values: pd.Series, where: str, fmt: str | None = None,
                     path: Path | None = None) -> pd.Series:
    """Dates, ISO-8601 strings (offset or not: UTC when none) or epoch seconds -> UTC timestamps;
    strings in the strptime layout `fmt` too when given (UTC unless it has %z). Without `fmt`,
    strings with and without an offset may not share a column (see `_refuse_mixed_zones`).
    `path` is the file, for its line numbers in errors."""
    text = not (pd.api.types.is_datetime64_any_dtype(values)
                or pd.api.types.is_numeric_dtype(values))
    if pd.api.types.is_datetime64_any_dtype(values):
        naive = values.dt.tz is None
        parsed = values.dt.tz_localize("UTC") if naive else values.dt.tz_convert("UTC")
    elif not text:
        parsed = pd.to_datetime(values, unit="s", utc=True, errors="coerce")
    else:
        parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
        if fmt is not None:  # the layout first; ISO 8601 stays accepted beside it
            parsed = pd.to_datetime(values, utc=True, errors="coerce", format=fmt).fillna(parsed)
    bad = parsed.isna() & values.notna()
    if bad.any():
        examples = values[bad].head(3).tolist()
        expected = (f"expected the layout {fmt!r} (--timestamp-format) or ISO 8601"
                    if fmt is not None
                    else f"accepted: {TIMESTAMP_FORMATS}")
        raise ContractError(f"{where}: unparseable timestamps at {rows_at(bad[bad].index, path)}"
                            f": {examples}; {expected}")
    if text and fmt is None:
        _refuse_mixed_zones(values, where, path)
    return parsed.astype("datetime64[ns, UTC]")


def _refuse_mixed_zones(values: pd.Series, where: str, path: Path | None = None) -> None:
    """Different offsets are fine (each value converts to UTC) and a bare date means midnight UTC,
    but a time of day without an offset next to ones with an offset is ambiguous: it was most
    likely local time, and reading it as UTC would shift it by hours."""
    text = values.dropna().astype(str).astype("string[pyarrow]")
    aware = text.str.contains(TIME_WITH_OFFSET)
    if not aware.any() or aware.all():
        return
    naive = text[~aware & text.str.contains(TIME_OF_DAY)]
    if len(naive):
        raise ContractError(f"{where}: {len(naive)} timestamp(s) without a UTC offset at "
                            f"{rows_at(naive.index, path)} ({naive.head(3).tolist()}) next to "
                            f"timestamps with one (e.g. {text[aware].iloc[0]!r}): their time zone "
                            "is ambiguous; give every value an offset, or none (then UTC)")


def _normalise(df: pd.DataFrame, spec: TableSpec, path: Path, fmt: str | None = None
               ) -> pd.DataFrame:
    missing = [c for c in spec.required if c not in df.columns]
    if missing:
        raise ContractError(f"{path}: missing required column(s) {missing} in {spec.name}; "
                            f"found {list(df.columns)}")
    extra = [c for c in df.columns if c not in spec.required + spec.optional]
    if extra:
        log.warning("%s: ignoring columns outside the contract: %s", path, extra)
    out = df[[c for c in df.columns if c not in extra]].copy()
    for col in spec.strings:
        if col in out.columns:
            out[col] = out[col].astype("string").astype(object).where(out[col].notna(), None)
    for col in spec.timestamps:
        out[col] = parse_timestamps(out[col], f"{path}: column {col}", fmt, path)
    return out.reset_index(drop=True)


FLAGS = {"true": 1, "false": 0, "1": 1, "0": 0, "yes": 1, "no": 0, "1.0": 1, "0.0": 0}


def flags(df: pd.DataFrame, col: str, path: Path | str) -> pd.Series:
    """`col` as 1/0 int64 from true/false, yes/no or 1/0 (any case); anything else, a missing
    value included, is refused naming the rows."""
    values = df[col].astype("string").str.strip().str.lower().map(FLAGS)
    bad = values.isna()
    if bad.any():
        raise ContractError(f"{path}: column {col} is not true/false at "
                            f"{rows_at(bad[bad].index, path)}: {df[col][bad].head(3).tolist()}")
    return values.astype("int64")


def _numeric(df: pd.DataFrame, col: str, path: Path, whole: bool = False) -> pd.Series:
    """`col` as float64; text (e.g. a decimal comma) or, when `whole`, a fraction is refused
    rather than coerced, naming the rows: quantity 1.5 must not quietly become 1."""
    values = pd.to_numeric(df[col], errors="coerce")
    bad = values.isna() & df[col].notna()
    if whole:
        bad |= values.notna() & (values % 1 != 0)
    if bad.any():
        kind = "a whole number" if whole else "numeric"
        raise ContractError(f"{path}: column {col} is not {kind} at "
                            f"{rows_at(bad[bad].index, path)}: {df[col][bad].head(3).tolist()}")
    return values.astype("float64")


def read_raw(raw_dir: Path, options: ReadOptions = PLAIN_READ) -> RawTables:
    """Read events, users and items from `raw_dir` (Parquet or CSV each) into contract frames."""
    raw_dir = Path(raw_dir)
    fmt = options.timestamp_format
    paths = {name: find_table(raw_dir, name) for name in TABLES}
    users = _normalise(_load(paths["users"], USERS), USERS, paths["users"], fmt)
    items = _normalise(_load(paths["items"], ITEMS), ITEMS, paths["items"], fmt)
    items["list_price"] = _numeric(items, "list_price", paths["items"])
    items["available"] = (flags(items, "available", paths["items"]) if "available" in items
                          else 1)
    events = _normalise(_load(paths["events"], EVENTS), EVENTS, paths["events"], fmt)
    if "event_id" not in events.columns:
        events["event_id"] = None
    repeated = events["event_id"].notna() & events.duplicated("event_id", keep="first")
    if options.dedupe and repeated.any():
        log.warning("%s: dropped %d row(s) repeating an earlier event_id (--dedupe)",
                    paths["events"], int(repeated.sum()))
        events = events[~repeated].reset_index(drop=True)
    dropped = int(repeated.sum()) if options.dedupe else 0
    if "quantity" not in events.columns:
        events["quantity"] = 1
    quantity = _numeric(events, "quantity", paths["events"], whole=True)
    events["quantity"] = quantity.fillna(1).astype("int64")
    if "price" not in events.columns:
        events["price"] = events["item_id"].map(items.set_index("item_id")["list_price"])
    events["price"] = _numeric(events, "price", paths["events"])
    for col in USERS.optional:
        if col not in users.columns:
            users[col] = None
    return RawTables(events=events, users=users, items=items, paths=paths,
                     duplicate_ids_dropped=dropped)


def read_ingested(manifest: dict) -> RawTables:
    """The raw tables an offline version was computed from, read with the options its ingest
    used; FileNotFoundError naming the version when the directory is gone."""
    raw_dir = manifest.get("raw_dir")
    if not raw_dir or not Path(raw_dir).exists():
        raise FileNotFoundError(f"the raw directory of offline version "
                                f"{manifest.get('version')} ({raw_dir}) is not available; "
                                "re-run persona ingest")
    return read_raw(Path(raw_dir), ReadOptions.recorded(manifest))
