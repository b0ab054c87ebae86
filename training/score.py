"""`persona score`: batch scores of a saved model, as of a date or as of each row's own time.

Rows come from the raw log (propensity: every user with activity at or before the date) or from
a candidate file (user_id [, item_id] [, event_timestamp]). Each chunk of rows gets its features
through Feast's point-in-time join, exactly as the training frame did, so a candidate file with
per-row timestamps is a backtest. Chunks are scored and appended to one Parquet file as they
come, with the top three reasons (XGBoost's own contributions) of every score; memory stays
bounded by the chunk size. The file appears under its name only once complete.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from persona.core.catalog import MODELS
from persona.core.settings import Settings
from persona.data.offline import current_manifest, home_of
from persona.data.raw import parse_timestamps, read_ingested
from persona.featurestore.config import feature_store
from training.calibration import apply
from training.categories import matrix
from training.explain import Reason, contributions, top_reasons
from training.model import threads
from training.model_store import StoredModel, get_model
from training.retrieval import CONVERSION_ROWS, PROPENSITY_ROWS, EntityRows, historical_features

log = logging.getLogger(__name__)

CHUNK_ROWS = 50_000
N_REASONS = 3
TIME = "event_timestamp"
AS_OF = "as_of"
ROW = "score_row"  # carried through Feast to put its rows back in the chunk's order
REASON = pa.struct([("feature", pa.string()), ("value", pa.float64()),
                    ("contribution", pa.float64()), ("category", pa.string())])
Progress = Callable[[int, int | None], None]


class ScoreError(ValueError):
    """Scoring cannot run as asked: a missing option, a bad candidate file, no data."""


@dataclass(frozen=True)
class ScoreResult:
    """What a scoring run wrote."""

    path: Path
    rows: int
    chunks: int
    model_tag: str
    time_column: str  # "as_of" (one date for every row) or "event_timestamp" (per row)


@dataclass(frozen=True)
class Source:
    """Where the rows to score come from: chunks of entity rows (keys and `event_timestamp`),
    how many rows in all when known, and what the output's time column is called."""

    chunks: Iterator[pd.DataFrame]
    total: int | None
    time_column: str


def output_schema(task: str, time_column: str) -> pa.Schema:
    """user_id [, item_id], the time column, score, model_tag, reasons (top three)."""
    fields = [pa.field("user_id", pa.string())]
    if task == "conversion":
        fields.append(pa.field("item_id", pa.string()))
    return pa.schema([*fields, pa.field(time_column, pa.timestamp("us", tz="UTC")),
                      pa.field("score", pa.float64()), pa.field("model_tag", pa.string()),
                      pa.field("reasons", pa.list_(REASON))])


def raw_events(settings: Settings) -> pd.DataFrame:
    """The events of the raw directory the current offline version was computed from."""
    manifest = current_manifest(settings.offline_root)
    if manifest is None:
        raise ScoreError(f"no offline data under {settings.offline_root}: run persona ingest first")
    try:
        return read_ingested(manifest).events
    except FileNotFoundError as exc:
        raise ScoreError(str(exc)) from None



def active_users(events: pd.DataFrame, as_of: pd.Timestamp) -> np.ndarray:
    """Every user with any event at or before `as_of`, sorted."""
    users = events.loc[events["event_timestamp"] <= as_of, "user_id"].unique()
    return np.sort(users.astype(object))


def _user_chunks(users: np.ndarray, as_of: pd.Timestamp, size: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(users), size):
        part = users[start:start + size]
        yield pd.DataFrame({"user_id": part, TIME: pd.Series([as_of] * len(part),
                                                             dtype="datetime64[ns, UTC]")})


def _columns(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        return list(pq.ParquetFile(path).schema_arrow.names)
    return list(pd.read_csv(path, nrows=0).columns)


def _count_rows(path: Path) -> int:
    """Data rows of a Parquet file (from its footer) or a CSV file (lines after the header)."""
    if path.suffix == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    with path.open("rb") as handle:
        lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
        handle.seek(max(path.stat().st_size - 1, 0))
        unterminated = path.stat().st_size > 0 and handle.read(1) != b"\n"
    return max(lines + unterminated - 1, 0)


def _read_chunks(path: Path, columns: list[str], size: int) -> Iterator[pd.DataFrame]:
    """The candidate file in chunks of `size` rows, ids as strings (leading zeros kept)."""
    if path.suffix == ".parquet":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=size, columns=columns):
            yield batch.to_pandas()
    else:
        ids = {c: "string" for c in ("user_id", "item_id") if c in columns}
        yield from pd.read_csv(path, usecols=columns, dtype=ids, chunksize=size)


def _clean(chunk: pd.DataFrame, path: Path, keys: list[str], as_of: pd.Timestamp | None,
           per_row: bool) -> pd.DataFrame:
    """Ids as str, the time column as UTC timestamps (the row's own, or `as_of`); a missing id
    or time, or a row later than `as_of`, is an error naming examples."""
    out = pd.DataFrame(index=chunk.index)
    for key in keys:
        missing = chunk[key].isna()
        if missing.any():
            raise ScoreError(f"{path}: {int(missing.sum())} rows without {key}, e.g. rows "
                             f"{missing[missing].index[:3].tolist()}")
        out[key] = chunk[key].astype("string").astype(object)
    if per_row:
        out[TIME] = parse_timestamps(chunk[TIME], f"{path}: column {TIME}")
        if out[TIME].isna().any():
            raise ScoreError(f"{path}: rows without {TIME}")
        if as_of is not None and (out[TIME] > as_of).any():
            late = out.loc[out[TIME] > as_of, TIME]
            raise ScoreError(f"{path}: {len(late)} rows are later than --as-of "
                             f"{as_of.isoformat()}, e.g. {late.iloc[0].isoformat()}")
    else:
        out[TIME] = pd.Series([as_of] * len(out), index=out.index, dtype="datetime64[ns, UTC]")
    return out.reset_index(drop=True)


def candidate_source(path: Path, task: str, as_of: pd.Timestamp | None,
                     size: int = CHUNK_ROWS) -> Source:
    """Chunks of a candidate file (Parquet or CSV): user_id, item_id for conversion, and an
    optional per-row event_timestamp (a backtest); without it every row is scored `as_of`."""
    path = Path(path)
    if path.suffix not in (".parquet", ".csv"):
        raise ScoreError(f"{path}: candidates must be a .parquet or .csv file")
    if not path.exists():
        raise ScoreError(f"{path}: no such candidate file")
    keys = ["user_id", "item_id"] if task == "conversion" else ["user_id"]
    found = _columns(path)
    missing = [k for k in keys if k not in found]
    if missing:
        raise ScoreError(f"{path}: candidates need column(s) {missing}; found {found}")
    per_row = TIME in found
    if not per_row and as_of is None:
        raise ScoreError(f"{path} has no {TIME} column: give --as-of to score every row as "
                         "of one date")
    columns = keys + ([TIME] if per_row else [])
    chunks = (_clean(c, path, keys, as_of, per_row) for c in _read_chunks(path, columns, size))
    return Source(chunks, _count_rows(path), TIME if per_row else AS_OF)


def active_user_source(settings: Settings, as_of: pd.Timestamp,
                       size: int = CHUNK_ROWS) -> Source:
    """Every user with activity at or before `as_of` (from the ingested raw log), as of it."""
    users = active_users(raw_events(settings), as_of)
    if len(users) == 0:
        raise ScoreError(f"no user has any event at or before {as_of.isoformat()}")
    return Source(_user_chunks(users, as_of, size), len(users), AS_OF)


def item_categories(settings: Settings) -> pd.Series:
    """item_id -> category from the published catalogue: Feast joins the user x category
    affinity on the item's category. An unknown item gets '' (no affinity, cold item)."""
    catalog = pd.read_parquet(settings.offline_current / "item_catalog",
                              columns=["item_id", "category"])
    return catalog.drop_duplicates("item_id", keep="last").set_index("item_id")["category"]


def _entity_rows(unique: pd.DataFrame, rows: EntityRows, categories: pd.Series | None
                 ) -> pd.DataFrame:
    """Distinct rows as Feast entity rows, numbered, with the item's category if needed."""
    entity = unique.reset_index(drop=True)
    if "category" in rows.columns:
        entity["category"] = entity["item_id"].map(categories).fillna("").astype(object)
    return entity.assign(**{ROW: np.arange(len(entity))})[[*rows.columns, ROW]]


def _reasons(reasons: list[list[Reason]]) -> pa.Array:
    return pa.array([[{"feature": r.feature, "value": r.value, "contribution": r.contribution,
                       "category": r.category}
                      for r in row] for row in reasons], type=pa.list_(REASON))


def score_chunk(store, chunk: pd.DataFrame, model: StoredModel, rows: EntityRows,
                categories: pd.Series | None, schema: pa.Schema) -> pa.Table:
    """Scores and reasons of one chunk, in the chunk's row order, as a table of `schema`.
    Repeated rows are retrieved once."""
    features = list(model.metadata["features"])
    keys = list(rows.keys)
    position = chunk.groupby(keys, sort=False).ngroup().to_numpy()  # first-seen order
    entity = _entity_rows(chunk.drop_duplicates(keys), rows, categories)
    frame, available = historical_features(store, entity, model.metadata["feature_service"],
                                           rows, carry=(ROW,))
    absent = [f for f in features if f not in available]
    if absent:
        raise ScoreError(f"the feature service {model.metadata['feature_service']} no longer "
                         f"provides {absent} that model {model.tag} needs")
    known = model.metadata.get("categories") or {}
    x = matrix(frame.sort_values(ROW), features, known)[position]
    scores = apply(model.metadata.get("calibration"),
                   model.booster.inplace_predict(x, validate_features=False))
    reasons = top_reasons(features, x, contributions(model.booster, x), k=N_REASONS,
                          categories=known)
    ids = {k: pa.array(chunk[k].to_numpy(dtype=object), pa.string())
           for k in keys if k != TIME}
    when = pa.array(chunk[TIME].dt.floor("us"), pa.timestamp("us", tz="UTC"))
    return pa.Table.from_arrays(
        [*ids.values(), when, pa.array(np.asarray(scores, np.float64)),
         pa.array([model.tag] * len(chunk), pa.string()), _reasons(reasons)], schema=schema)


def score(
    settings: Settings,
    task: str,
    out: Path,
    *,
    as_of: pd.Timestamp | None = None,
    candidates: Path | None = None,
    model_tag: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
    on_progress: Progress = lambda done, total: None,
) -> ScoreResult:
    """Score every eligible row with the task's model (latest, or `model_tag`) and write them
    to `out` (Parquet), chunk by chunk. Propensity without candidates scores every user with
    activity at or before `as_of`; conversion needs candidates (user-item pairs)."""
    if task not in MODELS:
        raise ScoreError(f"unknown task {task!r}; choose one of {sorted(MODELS)}")
    if chunk_rows < 1:
        raise ScoreError("chunk_rows must be positive")
    if candidates is None and task == "conversion":
        raise ScoreError("conversion scores user-item pairs: give --candidates FILE with "
                         "user_id, item_id [, event_timestamp] columns")
    if candidates is None and as_of is None:
        raise ScoreError("give --as-of DATE: the moment whose features the scores use")
    model = get_model(model_tag, task, home_of(settings))
    model.booster.set_param({"nthread": threads()})
    source = (candidate_source(candidates, task, as_of, chunk_rows) if candidates is not None
              else active_user_source(settings, as_of, chunk_rows))
    _warn_if_after_log(settings, as_of)
    rows = CONVERSION_ROWS if task == "conversion" else PROPENSITY_ROWS
    categories = item_categories(settings) if task == "conversion" else None
    schema = output_schema(task, source.time_column)
    return _write(Path(out), source, schema, on_progress,
                  lambda chunk, store: score_chunk(store, chunk, model, rows, categories, schema),
                  feature_store(settings), model.tag)


def _write(out: Path, source: Source, schema: pa.Schema, on_progress: Progress,
           score_one: Callable, store, tag: str) -> ScoreResult:
    """Append each scored chunk to a hidden file beside `out`; rename it into place at the
    end, so `out` is never a partial result."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    done = chunks = 0
    on_progress(0, source.total)
    try:
        with pq.ParquetWriter(partial, schema) as writer:
            for chunk in source.chunks:
                if chunk.empty:
                    continue
                writer.write_table(score_one(chunk, store))
                done, chunks = done + len(chunk), chunks + 1
                on_progress(done, source.total)
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return ScoreResult(out, done, chunks, tag, source.time_column)


def _warn_if_after_log(settings: Settings, as_of: pd.Timestamp | None) -> None:
    """Features exist up to the ingested log's last snapshot; a later date reads stale or
    expired (missing) values."""
    manifest = current_manifest(settings.offline_root) or {}
    until = manifest.get("events_until")
    if as_of is not None and until and as_of > pd.Timestamp(until) + pd.Timedelta(days=1):
        log.warning("--as-of %s is after the ingested log ends (%s): features are as of the "
                    "last snapshot, or missing once past their TTL; ingest newer events first",
                    as_of.isoformat(), until)
