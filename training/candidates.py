"""Candidate generators: a few hundred items per user from the whole catalogue, learnt from the
event log up to a moment and never after it.

Three generators, each a plain set of numpy arrays (saved with numpy's own format, no pickle):
- `als`: implicit ALS on the user x item matrix of weighted interactions (`implicit`);
- `item2vec`: Word2Vec over each user's time-ordered items (`gensim`), the user's vector the
  recency-weighted mean of the vectors of their latest items; exact inner-product search;
- `popularity`: weighted interactions over the last days of the log, the fallback for users
  the other two do not know.
The candidate list of a user is the union of the generators' lists, each item with the
generator that proposed it first and its score there (`union`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import pandas as pd
from scipy import sparse
from threadpoolctl import threadpool_limits

from persona.core.schema import CANDIDATE_GENERATORS

# Declared weights of the interaction kinds in the user x item matrix.
WEIGHTS: Mapping[str, float] = {"view": 1.0, "cart": 3.0, "purchase": 5.0}
FACTORS = 64
ALS_ITERATIONS = 15
ALS_REGULARIZATION = 0.05
VECTOR_SIZE = 64
WINDOW = 5
EPOCHS = 10
RECENT_ITEMS = 20  # the items a user's item2vec vector is the mean of
RECENCY_HALF_LIFE = 5.0  # in items: the latest weighs 1, the fifth before it 1/2
POPULAR_DAYS = 30
GENERATORS = CANDIDATE_GENERATORS
# user_candidates' per-generator lists (persona.core.schema) -> a candidate's own field
LIST_FEATURES = {f"{g}_{what}s": f"{g}_{what}" for g in GENERATORS for what in ("score", "rank")}
USERS_PER_BLOCK = 256  # users scored in one matrix product (bounds memory on big catalogues)


@dataclass
class Generators:
    """Fitted generators over one vocabulary of users and items (as of `until`)."""

    users: np.ndarray  # user ids, the rows of `user_factors` and of `seen`
    items: np.ndarray  # item ids, the rows of `item_factors` and `item_vectors`
    user_factors: np.ndarray
    item_factors: np.ndarray
    item_vectors: np.ndarray  # unit length; zero for an item no sequence held
    user_vectors: np.ndarray  # unit length; zero for a user without items
    popularity: np.ndarray  # per item, weighted interactions over the last POPULAR_DAYS
    until: pd.Timestamp
    regions: np.ndarray  # region names, the rows of `region_popularity`
    region_popularity: np.ndarray  # regions x items, popularity among the region's users
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {u: i for i, u in enumerate(self.users)}

    def arrays(self) -> dict[str, np.ndarray]:
        """What `from_arrays` reads back, as plain arrays (np.save with allow_pickle=False)."""
        return {"users": self.users.astype(str), "items": self.items.astype(str),
                "user_factors": self.user_factors, "item_factors": self.item_factors,
                "item_vectors": self.item_vectors, "user_vectors": self.user_vectors,
                "popularity": self.popularity,
                "until": np.array([self.until.value], dtype=np.int64),
                "regions": self.regions.astype(str), "region_popularity": self.region_popularity}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Generators:
        until = pd.Timestamp(int(arrays["until"][0]), tz="UTC")
        return cls(arrays["users"], arrays["items"], arrays["user_factors"],
                   arrays["item_factors"], arrays["item_vectors"], arrays["user_vectors"],
                   arrays["popularity"], until, arrays["regions"],
                   arrays["region_popularity"])

    def scores(self, generator: str, user_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The ALS or item2vec score of every item for each user (users x items), and which
        users the generator knows (the rows of the others are meaningless)."""
        rows = np.array([self.index.get(str(u), -1) for u in user_ids], dtype=np.int64)
        vectors = (self.user_factors if generator == "als" else self.user_vectors)[
            np.maximum(rows, 0)]
        known = (rows >= 0) & vectors.any(axis=1)
        items = self.item_factors if generator == "als" else self.item_vectors
        return vectors @ items.T, known

    def top(self, generator: str, user_ids: Sequence[str], k: int
            ) -> list[list[tuple[str, float]]]:
        """The generator's k best items for each user, best first (empty when it cannot say);
        ties go to the earlier item, whatever k is. Popularity's list is everyone's."""
        k = min(k, len(self.items))
        if generator == "popularity":
            return [_best(self.items, self.popularity, k)] * len(user_ids)
        out: list[list[tuple[str, float]]] = []
        for start in range(0, len(user_ids), USERS_PER_BLOCK):
            scores, known = self.scores(generator, user_ids[start:start + USERS_PER_BLOCK])
            out += [_best(self.items, row, k) if knows else []
                    for row, knows in zip(scores, known)]
        return out

    def popular(self, region: str | None, k: int) -> list[tuple[str, float]]:
        """The k most popular items among the region's users lately (overall when the region
        is unknown or had no interaction): a cold user's list."""
        row = np.flatnonzero(self.regions == region) if region is not None else []
        if len(row) and self.region_popularity[row[0]].any():
            return _best(self.items, self.region_popularity[row[0]], min(k, len(self.items)))
        return self.top("popularity", [""], k)[0]

    def neighbours(self, k: int) -> tuple[np.ndarray, list[list[tuple[str, float]]]]:
        """Each item's k nearest items by item2vec cosine (itself left out), for the items that
        have a vector; the items and their lists."""
        have = np.flatnonzero(self.item_vectors.any(axis=1))
        vectors = self.item_vectors[have]
        out = []
        for start in range(0, len(have), 1024):
            block = vectors[start:start + 1024] @ vectors.T
            block[np.arange(len(block)), np.arange(start, start + len(block))] = -np.inf
            out += [_best(self.items[have], row, min(k, len(have) - 1)) for row in block]
        return self.items[have], out


def union(lists: Mapping[str, Sequence[tuple[str, float]]], size: int) -> list[dict]:
    """At most `size` items: round-robin over the generators' lists in GENERATORS order, each
    item once, with the generator that proposed it first, its score and rank there."""
    out: dict[str, dict] = {}
    depth = max((len(v) for v in lists.values()), default=0)
    for rank in range(depth):
        for name in GENERATORS:
            ranked = lists.get(name, ())
            if rank < len(ranked) and ranked[rank][0] not in out:
                item, score = ranked[rank]
                out[item] = {"item_id": item, "source": name, "score": score, "rank": rank + 1}
                if len(out) == size:
                    return list(out.values())
    return list(out.values())


def candidates(generators: Generators, users: Sequence[str], size: int,
               kept: Sequence[str] = GENERATORS) -> list[list[dict]]:
    """Per user, at most `size` candidates: the union of the kept generators' lists
    (popularity's for a user they do not know), each with the generator that proposed it first
    (`source`), its score there, and every generator's score and rank (`<generator>_score`,
    `<generator>_rank`, NaN where it did not list the item): the rows of the user_candidates
    view and of the ranker, from this one function."""
    lists = {name: generators.top(name, users, size) for name in GENERATORS}
    out = []
    for n, _ in enumerate(users):
        mine = {name: lists[name][n] for name in GENERATORS}
        chosen = {name: mine[name] for name in kept}
        if not any(chosen.values()):
            chosen = {"popularity": mine["popularity"]}
        union_list = union(chosen, size)
        listed = {name: {item: (score, rank) for rank, (item, score) in enumerate(ranked, 1)}
                  for name, ranked in mine.items()}
        for candidate in union_list:
            for name in GENERATORS:
                score, rank = listed[name].get(candidate["item_id"], (np.nan, np.nan))
                candidate[f"{name}_score"], candidate[f"{name}_rank"] = score, float(rank)
        out.append(union_list)
    return out


def from_lists(row: Mapping[str, Sequence | None]) -> list[dict] | None:
    """A user_candidates row (the view's lists, online or offline) as `candidates` gives its
    candidates; None when the user has no row."""
    items = row.get("candidate_items")
    if items is None or len(items) == 0:
        return None
    out = []
    for n, item in enumerate(items):
        candidate = {"item_id": str(item), "source": str(row["candidate_sources"][n]),
                     "score": float(row["candidate_scores"][n])}
        for column, key in LIST_FEATURES.items():
            value = row[column][n]
            candidate[key] = np.nan if value is None else float(value)
        out.append(candidate)
    return out


def cold_candidates(generators: Generators, region: str | None, size: int) -> list[dict]:
    """A user the generators do not know: the region's popular items (`Generators.popular`)
    in the same shape as `candidates`' (popularity the source; the other generators NaN)."""
    listed = generators.popular(region, size)
    out = []
    for rank, (item, score) in enumerate(listed, 1):
        row = {"item_id": item, "source": "popularity", "score": score, "rank": rank}
        for name in GENERATORS:
            row[f"{name}_score"], row[f"{name}_rank"] = np.nan, np.nan
        row["popularity_score"], row["popularity_rank"] = score, float(rank)
        out.append(row)
    return out


def interactions(events: pd.DataFrame, until: pd.Timestamp) -> pd.DataFrame:
    """The weighted interactions at or before `until`: user_id, item_id, event_timestamp, weight."""
    seen = events[events["event_timestamp"] <= until]
    weight = seen["event_type"].map(WEIGHTS).fillna(0.0)
    return seen.assign(weight=weight)[["user_id", "item_id", "event_timestamp", "weight"]]


def fit(events: pd.DataFrame, items: pd.Series, until: pd.Timestamp, seed: int = 0,
        regions: pd.Series | None = None) -> Generators:
    """All three generators on the events at or before `until` (`items`: the catalogue;
    `regions`: user_id -> region, for each region's popular items)."""
    from gensim.models import Word2Vec  # noqa: PLC0415 (seconds to import)
    from implicit.als import AlternatingLeastSquares  # noqa: PLC0415

    log = interactions(events, until)
    item_ids = np.asarray(sorted(set(items.astype(str))), dtype=object)
    user_ids = np.asarray(sorted(log["user_id"].astype(str).unique()), dtype=object)
    item_pos = pd.Series(np.arange(len(item_ids)), index=item_ids)
    user_pos = pd.Series(np.arange(len(user_ids)), index=user_ids)
    log = log[log["item_id"].isin(item_pos.index)]
    matrix = sparse.csr_matrix(
        (log["weight"].to_numpy(np.float32),
         (user_pos[log["user_id"]].to_numpy(), item_pos[log["item_id"]].to_numpy())),
        shape=(len(user_ids), len(item_ids)))
    with threadpool_limits(1, "blas"):  # implicit's advice: BLAS threads slow ALS down
        als = AlternatingLeastSquares(factors=FACTORS, regularization=ALS_REGULARIZATION,
                                      iterations=ALS_ITERATIONS, random_state=seed,
                                      num_threads=1, calculate_training_loss=False)
        als.fit(matrix, show_progress=False)

    ordered = log.sort_values(["user_id", "event_timestamp"], kind="stable")
    sequences = ordered.groupby("user_id", sort=True)["item_id"].agg(list)
    w2v = Word2Vec(sentences=sequences.tolist(), vector_size=VECTOR_SIZE, window=WINDOW,
                   min_count=1, sg=1, workers=1, seed=seed, epochs=EPOCHS)
    vectors = np.zeros((len(item_ids), VECTOR_SIZE), dtype=np.float32)
    known = [i for i in w2v.wv.index_to_key if i in item_pos.index]
    vectors[item_pos[known].to_numpy()] = w2v.wv[known]
    vectors = _unit(vectors)
    users = np.zeros((len(user_ids), VECTOR_SIZE), dtype=np.float32)
    for user, history in sequences.items():
        latest = item_pos[history[-RECENT_ITEMS:]].to_numpy()
        decay = 0.5 ** (np.arange(len(latest))[::-1] / RECENCY_HALF_LIFE)
        users[user_pos[user]] = decay @ vectors[latest]
    recent = log[log["event_timestamp"] > until - timedelta(days=POPULAR_DAYS)]
    popularity = np.zeros(len(item_ids))
    counts = recent.groupby("item_id")["weight"].sum()
    popularity[item_pos[counts.index].to_numpy()] = counts.to_numpy()
    names, by_region = _region_popularity(recent, item_pos, regions)
    return Generators(user_ids, item_ids, np.asarray(als.user_factors, np.float32),
                      np.asarray(als.item_factors, np.float32), vectors, _unit(users),
                      popularity, until, names, by_region)


def _region_popularity(recent: pd.DataFrame, item_pos: pd.Series, regions: pd.Series | None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Region names and, per region, each item's weighted interactions by its users."""
    if regions is None:
        return np.array([], dtype=str), np.zeros((0, len(item_pos)))
    known = regions.dropna().astype(str)
    names = np.asarray(sorted(known.unique()), dtype=str)
    matrix = np.zeros((len(names), len(item_pos)))
    region = recent["user_id"].astype(str).map(known)
    counts = recent.assign(region=region).dropna(subset=["region"]).groupby(
        ["region", "item_id"])["weight"].sum()
    if len(counts):
        rows = pd.Series(np.arange(len(names)), index=names)
        matrix[rows[counts.index.get_level_values(0)].to_numpy(),
               item_pos[counts.index.get_level_values(1)].to_numpy()] = counts.to_numpy()
    return names, matrix


def recall(generators: Generators, truth: Mapping[str, set[str]], k: int,
           names: Sequence[str] = GENERATORS) -> float:
    """Mean over users with a future item of the share of those items among the candidates
    (the union of `names`' lists, at most k items)."""
    users = list(truth)
    tops = {name: generators.top(name, users, k) for name in names}
    shares = []
    for n, wanted in enumerate(truth.values()):
        found = {c["item_id"] for c in union({name: tops[name][n] for name in names}, k)}
        shares.append(len(found & wanted) / len(wanted))
    return float(np.mean(shares)) if shares else float("nan")


def future_items(events: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp,
                 kinds: Sequence[str] = ("cart", "purchase")) -> dict[str, set[str]]:
    """Per user, the items they carted or bought in (start, end]: what retrieval must find."""
    window = events[(events["event_timestamp"] > start) & (events["event_timestamp"] <= end)
                    & events["event_type"].isin(kinds)]
    return {str(u): set(g.astype(str)) for u, g in window.groupby("user_id")["item_id"]}


def _best(items: np.ndarray, scores: np.ndarray, k: int) -> list[tuple[str, float]]:
    """The k best-scored items, best first, ties to the earlier item."""
    if k <= 0:
        return []
    best = np.argpartition(-scores, k - 1)[:k]
    cut = scores[best].min()
    above, tied = np.flatnonzero(scores > cut), np.flatnonzero(scores == cut)
    best = np.concatenate([above[np.argsort(-scores[above], kind="stable")],
                           tied[:k - len(above)]])
    return [(str(items[i]), float(scores[i])) for i in best]


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
