"""Top-k list metrics on a time split, and the item-kNN baseline the recommender is judged
against.

A list is a user's items best first; the truth is the items the user carted or bought in the
week after the lists' date (`training.candidates.future_items`), over the whole catalogue, so
an item retrieval never proposed counts as missed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import sparse

K = 10
METRICS = ("recall@10", "recall@20", "ndcg@10", "map@10", "hit_rate@10", "coverage@10",
           "popular_share@10")
POPULAR_SHARE = 0.1  # "popular" items: the most interacted-with tenth of the catalogue


def list_metrics(lists: Mapping[str, Sequence[str]], truth: Mapping[str, set[str]],
                 catalogue: int, popular: set[str]) -> dict[str, float]:
    """Means over the users of `truth` (a user without a list scores 0): Recall@10 and @20,
    NDCG@10, MAP@10, HitRate@10; catalogue coverage (distinct items of all top-10 lists over the
    catalogue) and the share of top-10 items that are popular."""
    recall10, recall20, ndcg, average_precision, hits = [], [], [], [], []
    shown: list[str] = []
    discounts = 1 / np.log2(np.arange(2, K + 2))
    for user, wanted in truth.items():
        listed = list(lists.get(user, ()))
        top = listed[:K]
        shown += top
        relevant = np.array([item in wanted for item in top], dtype=float)
        recall10.append(relevant.sum() / len(wanted))
        recall20.append(len(set(listed[:2 * K]) & wanted) / len(wanted))
        ideal = discounts[:min(len(wanted), K)].sum()
        ndcg.append(float(relevant @ discounts[:len(relevant)]) / ideal)
        precision = np.cumsum(relevant) / np.arange(1, len(relevant) + 1)
        average_precision.append(float(precision @ relevant) / min(len(wanted), K)
                                 if len(relevant) else 0.0)
        hits.append(float(relevant.any()))
    values = [recall10, recall20, ndcg, average_precision, hits]
    out = {name: float(np.mean(v)) if v else float("nan") for name, v in zip(METRICS, values)}
    out["coverage@10"] = len(set(shown)) / catalogue if catalogue else float("nan")
    out["popular_share@10"] = (sum(item in popular for item in shown) / len(shown)
                               if shown else float("nan"))
    return out


def popular_items(popularity: np.ndarray, items: np.ndarray) -> set[str]:
    """The POPULAR_SHARE most popular items (at least one)."""
    n = max(1, int(len(items) * POPULAR_SHARE))
    return {str(i) for i in items[np.argsort(-popularity, kind="stable")[:n]]}


def item_knn(events: pd.DataFrame, items: np.ndarray, until: pd.Timestamp,
             users: Sequence[str], k: int) -> dict[str, list[str]]:
    """Item-kNN: each user's items at or before `until` vote for the items most often seen by
    the same users (cosine of the binary user x item co-occurrence, an item never voting for
    itself); the k best per user, their own items among them when their others vote for them
    (repeat purchases count in the truth)."""
    seen = events[events["event_timestamp"] <= until]
    position = pd.Series(np.arange(len(items)), index=items)
    seen = seen[seen["item_id"].isin(position.index)]
    user_ids = pd.Index(sorted(seen["user_id"].unique()))
    matrix = sparse.csr_matrix(
        (np.ones(len(seen)), (user_ids.get_indexer(seen["user_id"]),
                              position[seen["item_id"]].to_numpy())),
        shape=(len(user_ids), len(items)))
    matrix.data[:] = 1.0  # duplicates summed: back to seen / not seen
    norms = np.sqrt(np.asarray(matrix.sum(axis=0))).ravel()
    norms[norms == 0] = 1.0
    scaled = matrix @ sparse.diags(1 / norms)
    similarity = (scaled.T @ scaled).tocsr()
    similarity.setdiag(0)
    out: dict[str, list[str]] = {}
    for user in users:
        row = user_ids.get_indexer([user])[0]
        if row < 0:
            continue
        scores = np.asarray((matrix[row] @ similarity).todense()).ravel()
        best = np.argsort(-scores, kind="stable")[:k]
        out[user] = [str(items[i]) for i in best if scores[i] > 0]
    return out
