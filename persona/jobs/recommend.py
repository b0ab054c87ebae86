"""`persona recommend --as-of DATE`: top-k lists for every user active at DATE (or those of a
file), point in time, for campaigns: the lists the service would have given at DATE.

Each user's candidates are the user_candidates row Feast's point-in-time join gives at DATE
(the lists `persona train --task retrieval` wrote, as the service reads them once
materialized); a user without one gets the popular items of their region from the newest
retrieval model fitted at or before DATE, as the service does. The stored ranker
(`persona train --task recommend`, trained on events up to DATE at the latest) orders them on
the `recommend_v1` features as of DATE; the business rules (`persona.recommend.rules`, with
the retrieval model's item categories and brands, "bought" from the user x item history and
"unavailable" from item_availability, both as of DATE) keep the best k. Written to Parquet
chunk by chunk of users, so memory is bounded by a chunk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from persona.core.settings import Settings
from persona.data.offline import current_manifest, home_of
from persona.data.raw import read_ingested
from persona.featurestore.config import feature_store
from persona.jobs.progress import Count
from persona.recommend.rules import RuleBook
from training.candidate_training import CANDIDATES, item_info, load, stored_retrieval
from training.candidates import cold_candidates, from_lists
from training.model_store import get_model
from training.recommend_ranker import RETRIEVAL_FEATURES, Ranker, apply_rules
from training.recommend_training import user_regions, with_features
from training.score import AS_OF, active_users

USERS_PER_CHUNK = 250
LISTS = ["candidate_items", "candidate_sources", "candidate_scores",
         *(f"{f}s" for f in RETRIEVAL_FEATURES)]
SCHEMA = pa.schema([("user_id", pa.string()), ("rank", pa.int32()), ("item_id", pa.string()),
                    ("score", pa.float64()), ("relevance", pa.float64()), ("source", pa.string()),
                    ("retrieval_score", pa.float64()), ("cold_user", pa.bool_()),
                    (AS_OF, pa.timestamp("us", tz="UTC")), ("model_tag", pa.string())])


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
    """Write `user_id, rank, item_id, score, relevance, source, retrieval_score, cold_user,
    as_of, model_tag` for each user (default: every user active at or before `as_of`), at most
    `k` rows each in the ranker's order (`relevance`; `score` the calibrated probability of a
    cart or purchase within the ranker's horizon), with this home's latest ranker (or
    `model_tag`)."""
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
    model = get_model(model_tag, "recommend", home_of(settings))
    trained_until = pd.Timestamp(model.metadata["until"])
    if trained_until > as_of:
        raise ValueError(f"ranker {model.tag} learnt from events up to "
                         f"{trained_until.isoformat()}, after --as-of {as_of.isoformat()}: "
                         f"train one with persona train --task recommend --until {as_of.date()}")
    retrieval = stored_retrieval(settings, as_of)
    if retrieval is None:
        raise ValueError(f"no retrieval model of this home was fitted at or before "
                         f"{as_of.isoformat()}: run persona train --task retrieval --until "
                         f"{as_of.date()}")
    generators, retrieval_meta = load(retrieval)
    ranker = Ranker.of(model.booster, model.metadata)
    context = _Context(feature_store(settings), generators, ranker, item_info(retrieval),
                       user_regions(raw),
                       raw.items.drop_duplicates("item_id").set_index("item_id")["category"],
                       rules or RuleBook.load(), k, as_of, model.tag)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    rows = done = 0
    on_progress(0, len(wanted))
    try:
        with pq.ParquetWriter(partial, SCHEMA) as writer:
            for start in range(0, len(wanted), USERS_PER_CHUNK):
                part = [str(u) for u in wanted[start:start + USERS_PER_CHUNK]]
                table = context.chunk(part)
                writer.write_table(table)
                rows, done = rows + table.num_rows, done + len(part)
                on_progress(done, len(wanted))
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return RecommendResult(out, len(wanted), rows, model.tag,
                           tuple(retrieval_meta.get("kept", ())))


@dataclass(frozen=True)
class _Context:
    store: object
    generators: object
    ranker: Ranker
    info: dict
    regions: dict
    categories: pd.Series
    rules: RuleBook
    k: int
    as_of: pd.Timestamp
    model_tag: str

    def chunk(self, users: list[str]) -> pa.Table:
        """One chunk of users: their candidate rows as of `as_of`, the ranker, the rules."""
        asked = pd.DataFrame({"user_id": users, "event_timestamp": pd.Series(
            [self.as_of] * len(users), dtype="datetime64[ns, UTC]")})
        lists = self.store.get_historical_features(
            entity_df=asked, features=[f"user_candidates:{c}" for c in LISTS]).to_df()
        lists = lists.set_index("user_id").reindex(users)
        rows = []
        for user, row in zip(users, lists[LISTS].to_dict("records")):
            listed = from_lists(_present(row))
            cold = listed is None
            if cold:
                listed = cold_candidates(self.generators, self.regions.get(user), CANDIDATES)
            rows += [{"user_id": user, "item_id": c["item_id"], "source": c["source"],
                      "retrieval_score": c["score"], "cold_user": cold,
                      **{f: c[f] for f in RETRIEVAL_FEATURES}} for c in listed]
        frame = pd.DataFrame(rows)
        frame["event_timestamp"] = pd.Series([self.as_of] * len(frame),
                                             dtype="datetime64[ns, UTC]")
        frame, _ = with_features(self.store, frame, self.categories)
        relevance, score = self.ranker.scores(frame[self.ranker.features].to_numpy(np.float64))
        frame = frame.assign(relevance=relevance, score=score)
        out = []
        for _, group in frame.groupby("user_id", sort=False):
            ranked = group.sort_values("relevance", ascending=False,
                                       kind="stable").to_dict("records")
            out += [{**c, "rank": rank} for rank, c in enumerate(
                apply_rules(self.rules, ranked, self.k, self.info), start=1)]
        table = pd.DataFrame(out, columns=["user_id", "rank", "item_id", "score", "relevance",
                                           "source", "retrieval_score", "cold_user"])
        table[AS_OF] = pd.Series([self.as_of] * len(table), dtype="datetime64[us, UTC]")
        table["model_tag"] = self.model_tag
        return pa.Table.from_pandas(table, schema=SCHEMA, preserve_index=False)


def _present(row: dict) -> dict:
    """A joined row's lists, None where the join found no row (NaN or None)."""
    return {k: (v if isinstance(v, list | np.ndarray) else None) for k, v in row.items()}
