"""`persona train --task retrieval`: fit the candidate generators (`training.candidates`) on the
log as of a date, measure their recall on the week after a held-out cut, keep the generators
that help, and save them to the BentoML model store as numpy arrays (no pickle).

Point in time: the generators evaluated are fitted on the events at or before `cut` = `until`
less `VALID_DAYS`, and judged on the items users carted or bought in (cut, until]; the
generators saved are refitted on everything at or before `until`. No event after `until` is
read.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from persona.core.catalog import WrongHomeError, newest_for_home
from persona.core.schema import TIMESTAMP
from persona.core.settings import Settings
from persona.data import offline, quality
from persona.data.locking import exclusive
from persona.data.offline import current_manifest, home_of
from persona.data.raw import read_ingested
from persona.featurestore.registry import apply_definitions
from training import report
from training.candidates import (
    GENERATORS,
    LIST_FEATURES,
    Generators,
    candidates,
    fit,
    future_items,
    recall,
)
from training.score import Progress

MODEL_NAME = "persona-retrieval"
USERS_PER_CHUNK = 2_000  # users' candidate lists built, checked and written at a time
NEIGHBOURS = 20  # the length of an item's neighbour list
VALID_DAYS = 7
RECALL_AT = (50, 100, 200)
CANDIDATES = 200  # the size of a user's candidate list


@dataclass(frozen=True)
class RetrievalResult:
    tag: str
    kept: tuple[str, ...]  # the generators whose union recalled most at CANDIDATES
    recall: dict[str, dict[int, float]]  # generator (or "union") -> k -> recall@k
    users: int  # users with a future item in the validation week
    report_path: Path


def train_retrieval(settings: Settings, until: pd.Timestamp | None = None,
                    on_progress: Progress = lambda done, total: None) -> RetrievalResult:
    """Fit, evaluate, choose, refit, publish the lists and save; the report goes under the
    home's reports. `on_progress` counts the users whose candidates are written."""
    manifest = current_manifest(settings.offline_root)
    if manifest is None:
        raise FileNotFoundError(f"nothing ingested under {settings.home}: run persona ingest")
    raw = read_ingested(manifest)
    events, items = raw.events, raw.items["item_id"]
    until = until or events["event_timestamp"].max()
    events = events[events["event_timestamp"] <= until]
    cut = until - timedelta(days=VALID_DAYS)
    truth = future_items(events, cut, until)
    if not truth:
        raise ValueError(f"no cart or purchase in the {VALID_DAYS} days before "
                         f"{until.isoformat()}: nothing to measure retrieval on")
    held_out = fit(events, items, cut)
    table = {name: {k: recall(held_out, truth, k, [name]) for k in RECALL_AT}
             for name in GENERATORS}
    kept = best_subset(held_out, truth)
    table["union"] = {k: recall(held_out, truth, k, kept) for k in RECALL_AT}
    regions = raw.users.set_index("user_id")["region"] if "region" in raw.users else None
    final = fit(events, items, until, regions=regions)
    manifest = publish_lists(settings, final, kept, on_progress)
    metadata = {"until": until.isoformat(), "cut": cut.isoformat(), "kept": list(kept),
                "recall": {n: {str(k): v for k, v in r.items()} for n, r in table.items()},
                "validation_users": len(truth), "data_hash": manifest["data_hash"],
                "offline_version": manifest.get("version"), "home": str(settings.home),
                "home_id": home_of(settings).id, "candidates": CANDIDATES}
    tag = save(final, metadata, raw.items)
    path = _report(settings, tag, table, kept, len(truth), cut, until)
    return RetrievalResult(tag, kept, table, len(truth), path)


def publish_lists(settings: Settings, generators: Generators, kept: Sequence[str],
                  on_progress: Progress = lambda done, total: None) -> dict:
    """The user_candidates and item_neighbours rows of `generators` (stamped with their date),
    each chunk through the views' GE gate, as a new offline version; the definitions are
    registered again (a home ingested before these views existed lacks them). Returns the
    version's manifest."""
    now = pd.Timestamp.now(tz="UTC")
    run = generators.until.strftime("%Y%m%dT%H%M%S")
    views = {"user_candidates": _checked(_candidate_rows(generators, kept, on_progress), now,
                                         settings),
             "item_neighbours": _checked([_neighbour_rows(generators)], now, settings)}
    with exclusive(settings.lock_path):
        manifest = offline.extend(settings.offline_root, views, run, {
            "retrieval_lists_until": generators.until.isoformat()})
        apply_definitions(settings)
    return manifest


def _candidate_rows(generators: Generators, kept: Sequence[str],
                    on_progress: Progress) -> Iterator[pd.DataFrame]:
    """user_candidates, USERS_PER_CHUNK users at a time: each list an array per row."""
    users = [str(u) for u in generators.users]
    on_progress(0, len(users))
    for start in range(0, len(users), USERS_PER_CHUNK):
        part = users[start:start + USERS_PER_CHUNK]
        lists = candidates(generators, part, CANDIDATES, kept)
        frame = pd.DataFrame({"user_id": part,
                              TIMESTAMP: pd.Series([generators.until] * len(part),
                                                   dtype="datetime64[us, UTC]")})
        frame["candidate_items"] = [np.array([c["item_id"] for c in x], dtype=object)
                                    for x in lists]
        frame["candidate_sources"] = [np.array([c["source"] for c in x], dtype=object)
                                      for x in lists]
        frame["candidate_scores"] = [np.array([c["score"] for c in x]) for x in lists]
        for column, key in LIST_FEATURES.items():
            frame[column] = [np.array([c[key] for c in x]) for x in lists]
        yield frame
        on_progress(start + len(part), len(users))


def _neighbour_rows(generators: Generators) -> pd.DataFrame:
    items, lists = generators.neighbours(NEIGHBOURS)
    return pd.DataFrame({
        "item_id": items.astype(str),
        TIMESTAMP: pd.Series([generators.until] * len(items), dtype="datetime64[us, UTC]"),
        "neighbour_items": [np.array([i for i, _ in x], dtype=object) for x in lists],
        "neighbour_scores": [np.array([s for _, s in x]) for x in lists]})


def _checked(chunks: Iterable[pd.DataFrame], now: pd.Timestamp,
             settings: Settings) -> Iterator[pd.DataFrame]:
    """Each chunk after its view's GE gate passed (DataQualityError otherwise, before the new
    version is made current)."""
    for chunk in chunks:
        view = "user_candidates" if "user_id" in chunk else "item_neighbours"
        quality.check_features({view: chunk}, now, settings.docs_dir)
        yield chunk


def stored_retrieval(settings: Settings, at: pd.Timestamp | None = None):
    """The newest retrieval model (a BentoML model) of this home, of those fitted at or before
    `at` when given; None when there is none."""
    import bentoml  # noqa: PLC0415

    try:
        versions = bentoml.models.list(MODEL_NAME)
    except bentoml.exceptions.NotFound:
        return None
    if at is not None:
        versions = [m for m in versions if pd.Timestamp(m.info.metadata["until"]) <= at]
    try:
        return newest_for_home(versions, home_of(settings), "retrieval")
    except WrongHomeError:
        return None


def kept_generators(settings: Settings) -> tuple[str, ...]:
    """The generators the latest retrieval model of this home kept; all of them before one is
    trained there."""
    model = stored_retrieval(settings)
    return tuple(model.info.metadata.get("kept") or GENERATORS) if model else GENERATORS


def best_subset(generators: Generators, truth: dict[str, set[str]]) -> tuple[str, ...]:
    """The generators whose union recalls most at CANDIDATES (fewer generators on a tie)."""
    subsets = [c for n in range(1, len(GENERATORS) + 1)
               for c in itertools.combinations(GENERATORS, n)]
    return max(subsets, key=lambda s: (recall(generators, truth, CANDIDATES, s), -len(s)))


def save(generators: Generators, metadata: dict, catalogue: pd.DataFrame) -> str:
    """The arrays in numpy's own format (allow_pickle=False) as a new version of
    persona-retrieval, with each item's category and brand as of then (what the rules read,
    in the service and in batch lists alike); returns its tag."""
    import bentoml  # noqa: PLC0415

    known = catalogue.drop_duplicates("item_id").set_index("item_id").reindex(generators.items)
    arrays = {**generators.arrays(),
              "item_category": known["category"].fillna("").to_numpy(str),
              "item_brand": known["brand"].fillna("").to_numpy(str)}
    with bentoml.models.create(MODEL_NAME, metadata=metadata,
                               labels={"task": "retrieval"}) as model:
        for name, array in arrays.items():
            np.save(model.path_of(f"{name}.npy"), array, allow_pickle=False)
    return str(model.tag)


def item_info(model) -> dict[str, dict]:
    """item_id -> {category, brand} as the retrieval model recorded them (the rules' input)."""
    path = Path(model.path)
    items, categories, brands = (np.load(path / f"{name}.npy", allow_pickle=False)
                                 for name in ("items", "item_category", "item_brand"))
    return {str(i): {"category": c or None, "brand": b or None}
            for i, c, b in zip(items, categories, brands)}


def load(model) -> tuple[Generators, dict]:
    """The generators and metadata of a stored retrieval model (`stored_retrieval`, or a
    tag)."""
    import bentoml  # noqa: PLC0415

    model = bentoml.models.get(model) if isinstance(model, str) else model
    arrays = {p.stem: np.load(p, allow_pickle=False) for p in Path(model.path).glob("*.npy")}
    return Generators.from_arrays(arrays), dict(model.info.metadata)


def _report(settings: Settings, tag: str, table: dict, kept: tuple[str, ...], users: int,
            cut: pd.Timestamp, until: pd.Timestamp) -> Path:
    lines = [f"# Candidate retrieval `{tag}`", "",
             f"Generators fitted on the events at or before {cut.isoformat()}, judged on the "
             f"items {users} users carted or bought in the {VALID_DAYS} days after, until "
             f"{until.isoformat()}; the saved generators are refitted up to {until.isoformat()}.",
             "", f"Kept (their union recalls most at {CANDIDATES}): {', '.join(kept)}.", "",
             "| generator | " + " | ".join(f"recall@{k}" for k in RECALL_AT) + " |",
             "|---|" + "---:|" * len(RECALL_AT)]
    for name, values in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{values[k]:.3f}" for k in RECALL_AT) + " |")
    return report.publish_page(settings.reports_dir, tag, "retrieval", "\n".join(lines) + "\n")
