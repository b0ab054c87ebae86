"""`persona recommend --as-of DATE`: top-k lists for every user active at DATE (or those of a
file), point in time, for campaigns.

The candidate generators fitted on the log up to DATE (`training.candidates`, the generators the
latest retrieval model kept) propose CANDIDATES items per user; a ranker trained on the weeks
before DATE (`training.recommend_ranker`) orders them; this home's conversion model gives each
(user, item) its purchase probability with the features known at DATE (Feast's point-in-time
join, as `persona score` does); the business rules (`persona.recommend.rules`) then keep the
best k. Written to Parquet chunk by chunk of users, so memory is bounded by a chunk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from persona.core.catalog import WrongHomeError, newest_for_home
from persona.core.settings import Settings
from persona.data.offline import current_manifest, home_of
from persona.data.raw import read_ingested
from persona.featurestore.config import feature_store
from persona.jobs.progress import Count
from persona.recommend.rules import RuleBook
from training.candidate_training import CANDIDATES, MODEL_NAME
from training.candidates import GENERATORS, fit
from training.model_store import get_model
from training.recommend_ranker import History, candidate_frame, fit_ranker, rank_scores
from training.retrieval import CONVERSION_ROWS
from training.score import (
    AS_OF,
    TIME,
    active_users,
    item_categories,
    output_schema,
    score_chunk,
)

USERS_PER_CHUNK = 250
SCHEMA = pa.schema([("user_id", pa.string()), ("rank", pa.int32()), ("item_id", pa.string()),
                    ("score", pa.float64()), ("relevance", pa.float64()), ("source", pa.string()),
                    ("retrieval_score", pa.float64()), (AS_OF, pa.timestamp("us", tz="UTC")),
                    ("model_tag", pa.string())])


@dataclass(frozen=True)
class RecommendResult:
    path: Path
    users: int
    rows: int
    model_tag: str
    generators: tuple[str, ...]


def recommend(settings: Settings, as_of: pd.Timestamp, k: int, out: Path,
              users: list[str] | None = None, rules: RuleBook | None = None,
              model_tag: str | None = None,
              on_progress: Count = lambda done, total: None) -> RecommendResult:
    """Write `user_id, rank, item_id, score, relevance, source, retrieval_score, as_of,
    model_tag` for each user (default: every user active at or before `as_of`), at most `k`
    rows each, in the ranker's order (`relevance`), with the purchase probability (`score`) of
    this home's latest conversion model (or `model_tag`)."""
    if not 1 <= k <= 100:
        raise ValueError(f"--k {k}: expected 1 to 100")
    manifest = current_manifest(settings.offline_root)
    if manifest is None:
        raise FileNotFoundError(f"nothing ingested under {settings.home}: run persona ingest")
    raw = read_ingested(manifest)
    events = raw.events[raw.events["event_timestamp"] <= as_of]
    wanted = np.asarray(users, dtype=object) if users is not None else active_users(events, as_of)
    if len(wanted) == 0:
        raise ValueError(f"no user has any event at or before {as_of.isoformat()}")
    model = get_model(model_tag, "conversion", home_of(settings))
    kept = _kept_generators(settings)
    generators = fit(events, raw.items["item_id"], as_of)
    ranker = fit_ranker(events, raw.items["item_id"], as_of, CANDIDATES, kept)
    items = raw.items.drop_duplicates("item_id").set_index("item_id")[["category", "brand"]]
    info = items.to_dict("index")
    history = History.of(events, as_of)
    bought = history.bought_items()
    categories = item_categories(settings)
    rules = rules or RuleBook.load()
    store, schema = feature_store(settings), output_schema("conversion", AS_OF)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    rows = done = 0
    on_progress(0, len(wanted))
    try:
        with pq.ParquetWriter(partial, SCHEMA) as writer:
            for start in range(0, len(wanted), USERS_PER_CHUNK):
                part = wanted[start:start + USERS_PER_CHUNK]
                table = _chunk(part, generators, ranker, kept, as_of, history, store, model,
                               categories, info, bought, rules, k, schema)
                writer.write_table(table)
                rows, done = rows + table.num_rows, done + len(part)
                on_progress(done, len(wanted))
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return RecommendResult(out, len(wanted), rows, model.tag, kept)


def _chunk(users, generators, ranker, kept, as_of, history, store, model, categories, info,
           bought, rules: RuleBook, k: int, schema) -> pa.Table:
    """One chunk of users: candidates, the ranker's order, their conversion scores as of
    `as_of`, the rules."""
    candidates = candidate_frame(generators, history, users, CANDIDATES, kept)
    candidates["relevance"] = rank_scores(ranker, candidates)
    pairs = candidates[["user_id", "item_id"]].assign(
        **{TIME: pd.Series([as_of] * len(candidates), dtype="datetime64[ns, UTC]")})
    scored = score_chunk(store, pairs, model, CONVERSION_ROWS, categories, schema)
    candidates["score"] = scored.column("score").to_numpy()
    out = []
    for user, group in candidates.groupby("user_id", sort=False):
        ranked = group.sort_values("relevance", ascending=False,
                                   kind="stable").to_dict("records")
        out += [{**c, "rank": rank} for rank, c in enumerate(
            rules.apply(ranked, k, info, bought=bought.get(user, ())), start=1)]
    frame = pd.DataFrame(out, columns=["user_id", "rank", "item_id", "score", "relevance",
                                       "source", "retrieval_score"])
    frame[AS_OF] = pd.Series([as_of] * len(frame), dtype="datetime64[us, UTC]")
    frame["model_tag"] = model.tag
    return pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False)


def _kept_generators(settings: Settings) -> tuple[str, ...]:
    """The generators the latest retrieval model of this home kept; all of them before one is
    trained there."""
    import bentoml  # noqa: PLC0415

    try:
        model = newest_for_home(bentoml.models.list(MODEL_NAME), home_of(settings), "retrieval")
    except (bentoml.exceptions.NotFound, WrongHomeError):
        return GENERATORS
    return tuple(model.info.metadata.get("kept") or GENERATORS) if model else GENERATORS
