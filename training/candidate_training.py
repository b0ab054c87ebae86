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
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from persona.core.settings import Settings
from persona.data.offline import current_manifest, home_of
from persona.data.raw import read_ingested
from training import report
from training.candidates import GENERATORS, Generators, fit, future_items, recall

MODEL_NAME = "persona-retrieval"
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


def train_retrieval(settings: Settings, until: pd.Timestamp | None = None) -> RetrievalResult:
    """Fit, evaluate, choose, refit and save; the report goes under the home's reports."""
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
    final = fit(events, items, until)
    metadata = {"until": until.isoformat(), "cut": cut.isoformat(), "kept": list(kept),
                "recall": {n: {str(k): v for k, v in r.items()} for n, r in table.items()},
                "validation_users": len(truth), "data_hash": manifest["data_hash"],
                "offline_version": manifest.get("version"), "home": str(settings.home),
                "home_id": home_of(settings).id, "candidates": CANDIDATES}
    tag = save(final, metadata)
    path = _report(settings, tag, table, kept, len(truth), cut, until)
    return RetrievalResult(tag, kept, table, len(truth), path)


def best_subset(generators: Generators, truth: dict[str, set[str]]) -> tuple[str, ...]:
    """The generators whose union recalls most at CANDIDATES (fewer generators on a tie)."""
    subsets = [c for n in range(1, len(GENERATORS) + 1)
               for c in itertools.combinations(GENERATORS, n)]
    return max(subsets, key=lambda s: (recall(generators, truth, CANDIDATES, s), -len(s)))


def save(generators: Generators, metadata: dict) -> str:
    """The arrays in numpy's own format (allow_pickle=False) as a new version of
    persona-retrieval; returns its tag."""
    import bentoml  # noqa: PLC0415

    with bentoml.models.create(MODEL_NAME, metadata=metadata,
                               labels={"task": "retrieval"}) as model:
        for name, array in generators.arrays().items():
            np.save(model.path_of(f"{name}.npy"), array, allow_pickle=False)
    return str(model.tag)


def load(tag: str | None = None) -> tuple[Generators, dict]:
    """The generators and metadata of `tag` (default the latest)."""
    import bentoml  # noqa: PLC0415

    model = bentoml.models.get(tag or f"{MODEL_NAME}:latest")
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
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    staging = settings.reports_dir / f".staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    (staging / report.REPORT).write_text("\n".join(lines) + "\n")
    return report.publish(staging, settings.reports_dir, tag.split(":", 1)[1],
                          report.latest_name("retrieval"))
