"""`persona train --task recommend`: the ranker of recommendation lists, trained on what it
will see in production and judged on a time split against popularity, item-kNN and the
retrieval generators alone.

Weekly cuts t_k = until - k x HORIZON. At each cut the generators are refitted on the log up to
t_k only (no future reaches a candidate), the users are those who carted or bought something in
the week after (at most USERS_PER_CUT), their candidates get retrieval's features and the
`recommend_v1` service's as of t_k (Feast's point-in-time join), labelled by that week.
- train: cuts 3 .. PERIODS + 2; validation: cut 2 (labels end at t_1); test: cut 1 (until).
- Both objectives (`rank:ndcg`, `binary:logistic`) are fitted on train; the better NDCG@10 on
  validation is kept, its scores calibrated there (a probability of a cart or purchase within
  the week, whatever the objective), and it is judged on the test week, warm and cold users
  apart, with and without the business rules.
- The saved ranker is the kept objective refitted on cuts 1 .. PERIODS: its labels end at
  `until`, and no event after `until` is read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from feast import FeatureStore

from expectations.gate import run_gate
from persona.core.catalog import RECOMMEND_SERVICE
from persona.core.settings import Settings
from persona.data.offline import current_manifest, home_of
from persona.data.raw import RawTables, read_ingested
from persona.featurestore.config import feature_store
from persona.recommend.rules import RuleBook
from training import calibration, report
from training.candidate_training import CANDIDATES, kept_generators
from training.candidates import GENERATORS, Generators, fit, future_items
from training.model_store import save_model
from training.recommend_metrics import (
    METRICS,
    K,
    item_knn,
    list_metrics,
    popular_items,
)
from training.recommend_ranker import (
    AVAILABLE,
    BOUGHT,
    HORIZON,
    KEYS,
    OBJECTIVES,
    RETRIEVAL_FEATURES,
    Ranker,
    apply_rules,
    candidate_rows,
    fit_ranker,
    probability,
    rank_scores,
)
from training.retrieval import CONVERSION_ROWS, frame_suite, historical_features

PERIODS = 3
USERS_PER_CUT = 2_000
Step = Callable[[str], None]


@dataclass(frozen=True)
class Cut:
    """One cut's labelled rows, its generators and the truth of the week after."""

    at: pd.Timestamp
    rows: pd.DataFrame
    generators: Generators
    truth: dict[str, set[str]]


@dataclass(frozen=True)
class RecommendResult:
    tag: str
    objective: str
    choice: dict[str, float]  # objective -> validation NDCG@10
    metrics: dict[str, dict[str, dict[str, float]]]  # users (all/warm/cold) -> method -> metric
    report_path: Path


def item_info(raw: RawTables) -> dict[str, dict]:
    """item_id -> {category, brand}: what the rules read."""
    return (raw.items.drop_duplicates("item_id").set_index("item_id")[["category", "brand"]]
            .to_dict("index"))


def user_regions(raw: RawTables) -> dict[str, str]:
    """user_id -> region, for a cold user's popular items."""
    if "region" not in raw.users:
        return {}
    return raw.users.dropna(subset=["region"]).set_index("user_id")["region"].to_dict()


def with_features(store: FeatureStore, rows: pd.DataFrame, categories: pd.Series
                  ) -> tuple[pd.DataFrame, list[str]]:
    """`rows` (one cut's candidates) with the recommend_v1 features as of their time, in the
    rows' order, and the service's columns."""
    asked = rows.assign(category=rows["item_id"].map(categories))
    carry = tuple(c for c in rows.columns if c not in CONVERSION_ROWS.columns)
    joined, features = historical_features(store, asked, RECOMMEND_SERVICE, CONVERSION_ROWS,
                                           carry)
    order = pd.MultiIndex.from_frame(rows[KEYS])
    joined = joined.set_index(KEYS).reindex(order).reset_index()
    return joined, features


def train_recommend(settings: Settings, until: pd.Timestamp | None = None,
                    on_step: Step = lambda _: None) -> RecommendResult:
    """Build the cuts, choose the objective, judge it, refit, save and report."""
    manifest = current_manifest(settings.offline_root)
    if manifest is None:
        raise FileNotFoundError(f"nothing ingested under {settings.home}: run persona ingest")
    raw = read_ingested(manifest)
    until = until or raw.events["event_timestamp"].max()
    events = raw.events[raw.events["event_timestamp"] <= until]
    first = until - (PERIODS + 2) * HORIZON
    if events.empty or events["event_timestamp"].min() >= first:
        raise ValueError(f"the ranker learns from {PERIODS + 2} weekly cuts before "
                         f"{until.date()}, so it needs events before {first.date()}: the log "
                         "is too short")
    kept = kept_generators(settings)
    store = feature_store(settings)
    categories = raw.items.drop_duplicates("item_id").set_index("item_id")["category"]
    regions = user_regions(raw)
    cuts: list[Cut] = []
    for k in range(1, PERIODS + 3):
        at = until - k * HORIZON
        on_step(f"cut {k} of {PERIODS + 2} ({at.date()}): retrieval, candidates, features")
        cuts.append(_cut(store, events, raw, at, kept, regions, categories))
    features = [*RETRIEVAL_FEATURES, *_service_columns(cuts)]
    on_step("checking the training rows")
    all_rows = pd.concat([c.rows for c in cuts], ignore_index=True)
    gate = run_gate(frame_suite(features[len(RETRIEVAL_FEATURES):], f"training.{RECOMMEND_SERVICE}",
                                tuple(KEYS)), all_rows, settings.docs_dir).summary()
    test, valid, train = cuts[0], cuts[1], cuts[2:]
    train_rows = pd.concat([c.rows for c in train], ignore_index=True)
    on_step("fitting rank:ndcg and binary:logistic, choosing on the validation week")
    fitted = {o: fit_ranker(train_rows, features, o) for o in OBJECTIVES}
    rules, info = RuleBook.load(), item_info(raw)
    choice = {o: list_metrics(_ranked(Ranker(b, features, o, None), valid), valid.truth,
                              len(info), set())["ndcg@10"] for o, b in fitted.items()}
    objective = max(OBJECTIVES, key=lambda o: (choice[o], o == OBJECTIVES[0]))
    valid_scores = rank_scores(fitted[objective], valid.rows[features])
    cal = calibration.fit_calibration(probability(valid_scores, objective, None),
                                      valid.rows["label"].to_numpy())
    on_step("judging on the test week against the baselines")
    ranker = Ranker(fitted[objective], features, objective, cal)
    metrics = _judge(ranker, test, events, rules, info)
    on_step("refitting on the latest weeks and saving")
    final = fit_ranker(pd.concat([c.rows for c in cuts[:PERIODS]], ignore_index=True),
                       features, objective)
    metadata = {
        "task": "recommend", "feature_service": RECOMMEND_SERVICE, "features": features,
        "objective": objective, "calibration": cal, "generators": list(kept),
        "candidates": CANDIDATES, "horizon_days": HORIZON.days, "until": until.isoformat(),
        "training_window": {"train_from": cuts[PERIODS - 1].at.isoformat(),
                            "train_until": until.isoformat(),
                            "valid_from": valid.at.isoformat(),
                            "valid_until": test.at.isoformat()},
        "data_hash": manifest["data_hash"], "offline_version": manifest.get("version"),
        "home": str(settings.home), "home_id": home_of(settings).id,
        "metrics": metrics, "choice": choice,
        "validation": {"ingest": manifest.get("validation", {}), "training_frame": gate},
        "snapshot_interval_seconds": manifest.get("snapshot_interval_seconds",
                                                  settings.snapshot_interval.total_seconds()),
        "n_train": int(len(train_rows)),
    }
    tag = save_model(final, metadata)
    path = _report(settings, tag, objective, choice, metrics, cuts)
    return RecommendResult(tag, objective, choice, metrics, path)


def _cut(store: FeatureStore, events: pd.DataFrame, raw: RawTables, at: pd.Timestamp,
         kept: Sequence[str], regions: dict[str, str], categories: pd.Series) -> Cut:
    generators = fit(events, raw.items["item_id"], at, regions=pd.Series(regions, dtype=object))
    truth = future_items(events, at, at + HORIZON)
    users = sorted(truth)
    if len(users) > USERS_PER_CUT:
        chosen = np.random.default_rng(at.value % 2**32).choice(len(users), USERS_PER_CUT,
                                                                  replace=False)
        users = [users[i] for i in sorted(chosen)]
    truth = {u: truth[u] for u in users}
    rows = candidate_rows(generators, users, CANDIDATES, kept, regions)
    rows["label"] = [int(i in truth[u]) for u, i in zip(rows["user_id"], rows["item_id"])]
    rows, _ = with_features(store, rows, categories)
    return Cut(at, rows, generators, truth)


def _service_columns(cuts: Sequence[Cut]) -> list[str]:
    """The service's model inputs (every cut's rows have the same)."""
    fixed = {"user_id", "item_id", "category", "event_timestamp", "source", "retrieval_score",
             "cold_user", "label", *RETRIEVAL_FEATURES}
    return [c for c in cuts[0].rows.columns if c not in fixed]


def _ranked(ranker: Ranker, cut: Cut, rules: RuleBook | None = None,
            info: dict | None = None) -> dict[str, list[str]]:
    """Each user's candidates in the ranker's order (top 2K), through the rules when given."""
    relevance, score = ranker.scores(cut.rows[ranker.features].to_numpy(np.float64))
    frame = cut.rows.assign(relevance=relevance, score=score)
    out = {}
    for user, group in frame.groupby("user_id", sort=False):
        ranked = group.sort_values("relevance", ascending=False, kind="stable")
        listed = ranked[["item_id", "score", BOUGHT, AVAILABLE]].to_dict("records")
        if rules is not None:
            listed = apply_rules(rules, listed, 2 * K, info or {})
        out[user] = [c["item_id"] for c in listed[:2 * K]]
    return out


def _judge(ranker: Ranker, test: Cut, events: pd.DataFrame, rules: RuleBook,
           info: dict) -> dict:
    """Each method's metrics on the test week: all users, warm (known at the cut), cold."""
    gens, users = test.generators, list(test.truth)
    lists = {
        "ranker + rules": _ranked(ranker, test, rules, info),
        "ranker": _ranked(ranker, test),
        "retrieval union": _in_order(test.rows),
        "item-kNN": item_knn(events, gens.items, test.at, users, 2 * K),
        "popularity": {u: [i for i, _ in gens.top("popularity", [u], 2 * K)[0]] for u in users},
    }
    for name in GENERATORS[:-1]:
        lists[name] = {u: [i for i, _ in top] for u, top in
                       zip(users, gens.top(name, users, 2 * K))}
    popular = popular_items(gens.popularity, gens.items)
    warm = {u for u in users if u in gens.index}
    out = {}
    for group, members in (("all", set(users)), ("warm", warm), ("cold", set(users) - warm)):
        truth = {u: w for u, w in test.truth.items() if u in members}
        out[group] = {"users": len(truth), **{
            name: list_metrics(listed, truth, len(gens.items), popular)
            for name, listed in lists.items()}}
    return out


def _in_order(rows: pd.DataFrame) -> dict[str, list[str]]:
    """Retrieval's own order: each user's candidates as the union listed them."""
    return {u: g["item_id"].tolist()[:2 * K] for u, g in rows.groupby("user_id", sort=False)}


def _report(settings: Settings, tag: str, objective: str, choice: dict[str, float],
            metrics: dict, cuts: Sequence[Cut]) -> Path:
    test = cuts[0]
    lines = [f"# Recommendation ranker `{tag}`", "",
             f"Weekly cuts from {cuts[-1].at.date()} to {test.at.date()}; at each, the "
             "generators are refitted on the log up to the cut and the candidates get the "
             f"`{RECOMMEND_SERVICE}` features as of the cut. Trained on the cuts before "
             f"{cuts[1].at.date()}, the objective chosen on the week after it, judged on the "
             f"week after {test.at.date()} (whole catalogue: an item retrieval missed counts "
             "as missed).", "",
             "Validation NDCG@10: " + ", ".join(f"{o} {v:.3f}" for o, v in choice.items())
             + f"; kept **{objective}**.", ""]
    for group in ("all", "warm", "cold"):
        table = metrics[group]
        lines += [f"## {group} users ({table['users']})", "",
                  "| method | " + " | ".join(METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
        for name, values in table.items():
            if name != "users":
                lines.append(f"| {name} | " + " | ".join(f"{values[m]:.3f}" for m in METRICS)
                             + " |")
        lines.append("")
    figure = report.bar_chart(
        {group: {m: metrics[group][m]["recall@10"] for m in metrics[group] if m != "users"}
         for group in ("all", "warm", "cold") if metrics[group]["users"]},
        "Recall@10 on the test week")
    lines += ["![Recall@10 by method, warm and cold users](recall_at_10.png)", ""]
    return report.publish_page(settings.reports_dir, tag, "recommend", "\n".join(lines) + "\n",
                               {"recall_at_10.png": figure})
