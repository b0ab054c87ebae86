"""Reading a shop's raw directory into frames that follow the data contract.

Every way a file can break the contract is reported with the file, the column and example rows;
columns outside the contract are dropped with a warning naming them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from persona.contract import EVENTS, ITEMS, TABLES, USERS, ContractError, TableSpec, find_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawTables:
    events: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    paths: dict[str, Path]


def _load(path: Path, spec: TableSpec) -> pd.DataFrame:
    try:
        if path.suffix == ".csv":
            return pd.read_csv(path, dtype={c: "string" for c in spec.strings}, keep_default_na=True)
        return pd.read_parquet(path)
    except Exception as exc:  # unreadable file: truncated Parquet, bad encoding, ...
        raise ContractError(f"{path}: cannot read {spec.name} table: {exc}") from exc


def parse_timestamps(values: pd.Series, where: str) -> pd.Series:
    """Dates, ISO-8601 strings (offset or not: UTC when none) or epoch seconds -> UTC timestamps."""
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values.dt.tz_localize("UTC") if values.dt.tz is None else values.dt.tz_convert("UTC")
    elif pd.api.types.is_numeric_dtype(values):
        parsed = pd.to_datetime(values, unit="s", utc=True, errors="coerce")
    else:
        parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    bad = parsed.isna() & values.notna()
    if bad.any():
        examples = values[bad].head(3).tolist()
        raise ContractError(f"{where}: unparseable timestamps at rows "
                            f"{bad[bad].index[:3].tolist()}: {examples}")
    return parsed.astype("datetime64[ns, UTC]")


def _normalise(df: pd.DataFrame, spec: TableSpec, path: Path) -> pd.DataFrame:
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
        out[col] = parse_timestamps(out[col], f"{path}: column {col}")
    return out.reset_index(drop=True)


def _numeric(df: pd.DataFrame, col: str, path: Path, dtype: str) -> pd.Series:
    values = pd.to_numeric(df[col], errors="coerce")
    bad = values.isna() & df[col].notna()
    if bad.any():
        raise ContractError(f"{path}: column {col} is not numeric at rows "
                            f"{bad[bad].index[:3].tolist()}: {df[col][bad].head(3).tolist()}")
    return values.astype(dtype) if dtype == "float64" else values


def read_raw(raw_dir: Path) -> RawTables:
    """Read events, users and items from `raw_dir` (Parquet or CSV each) into contract frames."""
    raw_dir = Path(raw_dir)
    paths = {name: find_table(raw_dir, name) for name in TABLES}
    users = _normalise(_load(paths["users"], USERS), USERS, paths["users"])
    items = _normalise(_load(paths["items"], ITEMS), ITEMS, paths["items"])
    items["list_price"] = _numeric(items, "list_price", paths["items"], "float64")
    events = _normalise(_load(paths["events"], EVENTS), EVENTS, paths["events"])
    if "quantity" not in events.columns:
        events["quantity"] = 1
    events["quantity"] = _numeric(events, "quantity", paths["events"], "Int64").fillna(1).astype("int64")
    if "price" not in events.columns:
        events["price"] = events["item_id"].map(items.set_index("item_id")["list_price"])
    events["price"] = _numeric(events, "price", paths["events"], "float64")
    for col in USERS.optional:
        if col not in users.columns:
            users[col] = None
    return RawTables(events=events, users=users, items=items, paths=paths)
