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
GENERATORS = ("als", "item2vec", "popularity")


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
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {u: i for i, u in enumerate(self.users)}

    def arrays(self) -> dict[str, np.ndarray]:
        """What `from_arrays` reads back, as plain arrays (np.save with allow_pickle=False)."""
        return {"users": self.users.astype(str), "items": self.items.astype(str),
                "user_factors": self.user_factors, "item_factors": self.item_factors,
                "item_vectors": self.item_vectors, "user_vectors": self.user_vectors,
                "popularity": self.popularity,
                "until": np.array([self.until.value], dtype=np.int64)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Generators:
        until = pd.Timestamp(int(arrays["until"][0]), tz="UTC")
        return cls(arrays["users"], arrays["items"], arrays["user_factors"],
                   arrays["item_factors"], arrays["item_vectors"], arrays["user_vectors"],
                   arrays["popularity"], until)

    def scores(self, generator: str, user_id: str) -> np.ndarray | None:
        """The generator's score of every item for the user; None when it does not know them."""
        if generator == "popularity":
            return self.popularity
        row = self.index.get(user_id)
        if row is None:
            return None
        vector = (self.user_factors if generator == "als" else self.user_vectors)[row]
        if not vector.any():
            return None
        items = self.item_factors if generator == "als" else self.item_vectors
        return items @ vector

    def top(self, generator: str, user_id: str, k: int) -> list[tuple[str, float]]:
        """The generator's k best items for the user, best first (empty when it cannot say)."""
        scores = self.scores(generator, user_id)
        if scores is None:
            return []
        k = min(k, len(scores))
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(str(self.items[i]), float(scores[i])) for i in best]


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


def interactions(events: pd.DataFrame, until: pd.Timestamp) -> pd.DataFrame:
    """The weighted interactions at or before `until`: user_id, item_id, event_timestamp, weight."""
    seen = events[events["event_timestamp"] <= until]
    weight = seen["event_type"].map(WEIGHTS).fillna(0.0)
    return seen.assign(weight=weight)[["user_id", "item_id", "event_timestamp", "weight"]]


def fit(events: pd.DataFrame, items: pd.Series, until: pd.Timestamp,
        seed: int = 0) -> Generators:
    """All three generators on the events at or before `until` (`items`: the catalogue)."""
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
    return Generators(user_ids, item_ids, np.asarray(als.user_factors, np.float32),
                      np.asarray(als.item_factors, np.float32), vectors, _unit(users),
                      popularity, until)


def recall(generators: Generators, truth: Mapping[str, set[str]], k: int,
           names: Sequence[str] = GENERATORS) -> float:
    """Mean over users with a future item of the share of those items among the candidates
    (the union of `names`' lists, at most k items)."""
    shares = []
    for user, wanted in truth.items():
        lists = {name: generators.top(name, user, k) for name in names}
        found = {c["item_id"] for c in union(lists, k)}
        shares.append(len(found & wanted) / len(wanted))
    return float(np.mean(shares)) if shares else float("nan")


def future_items(events: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp,
                 kinds: Sequence[str] = ("cart", "purchase")) -> dict[str, set[str]]:
    """Per user, the items they carted or bought in (start, end]: what retrieval must find."""
    window = events[(events["event_timestamp"] > start) & (events["event_timestamp"] <= end)
                    & events["event_type"].isin(kinds)]
    return {str(u): set(g.astype(str)) for u, g in window.groupby("user_id")["item_id"]}


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
