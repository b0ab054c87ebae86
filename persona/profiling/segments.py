"""Segments as a profile shows them: sizes per segment, plots and the training report's section,
from frames already tagged by `persona.profiling.tags.TagBook` (no store, no model)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pandas as pd

from persona.profiling.tags import TAGS_FILE, TagBook

TAGS_FILE_NAME = f"{TAGS_FILE.parent.name}/{TAGS_FILE.name}"


def segment_sizes(segmented: pd.DataFrame, book: TagBook | None = None) -> pd.DataFrame:
    """Users and mean propensity per segment, in the tag file's segment order."""
    book = book or TagBook.load()
    order = [s.name for s in book.segments]
    sizes = segmented.groupby("segment").agg(users=("user_id", "size"),
                                             mean_propensity=("propensity", "mean"))
    return sizes.reindex([s for s in order if s in sizes.index])


def plot_segments(segmented: pd.DataFrame, directory: Path, book: TagBook | None = None
                  ) -> dict[str, Path]:
    """Two PNGs for the training report: users per segment, and propensity by segment. Both
    list every segment the tag file declares, top to bottom in its order (an empty one as 0
    users, no box), so the plots of every run read alike."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    book = book or TagBook.load()
    order = [s.name for s in book.segments]
    users = segment_sizes(segmented, book)["users"].reindex(order, fill_value=0)
    rows = range(len(order))
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"segment_sizes": directory / "segment_sizes.png",
             "propensity_by_segment": directory / "propensity_by_segment.png"}
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.barh(rows, users.to_numpy(), color="#4c72b0")
    ax.set_xlabel("users")
    ax.set_title("Users per segment")
    _segments_top_down(ax, order)
    fig.tight_layout()
    fig.savefig(paths["segment_sizes"], dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4))
    groups = [segmented.loc[segmented["segment"] == s, "propensity"].dropna() for s in order]
    drawn = [i for i, g in enumerate(groups) if len(g)]
    if drawn:
        # `orientation` since Matplotlib 3.10; `vert` is deprecated in 3.11, gone in 3.13
        horizontal = ({"orientation": "horizontal"} if "orientation" in
                      inspect.signature(ax.boxplot).parameters else {"vert": False})
        ax.boxplot([groups[i] for i in drawn], positions=drawn, showfliers=False, **horizontal)
    ax.set_xlabel("purchase propensity")
    ax.set_title("Propensity by segment")
    _segments_top_down(ax, order)
    fig.tight_layout()
    fig.savefig(paths["propensity_by_segment"], dpi=110)
    plt.close(fig)
    return paths


def _segments_top_down(ax, order: list[str]) -> None:
    """Segment i on row i, the first declared at the top."""
    ax.set_yticks(range(len(order)), order)
    if order:  # a tag file may declare no segments
        ax.set_ylim(len(order) - 0.5, -0.5)


def report_section(frame: pd.DataFrame, propensity, directory: Path,
                   book: TagBook | None = None) -> str:
    """Markdown for the propensity training report: the validation users' segments (features
    from the validation frame, Feast full names accepted) with sizes and propensity plots."""
    book = book or TagBook.load()
    features = frame.rename(columns=lambda c: c.split("__", 1)[-1])
    features = features.loc[:, ~features.columns.duplicated()].copy()
    features["propensity"] = propensity
    features["churn_risk"] = 1.0 - features["propensity"]
    segmented = features[["user_id", "propensity"]].join(book.evaluate(features))
    paths = plot_segments(segmented, directory, book)
    sizes = segment_sizes(segmented, book)
    lines = ["## Segments (validation users)", "",
             f"Rules: `{TAGS_FILE_NAME}`; quantiles over these users.", "",
             "| segment | users | mean propensity |", "|---|---:|---:|"]
    lines += [f"| {name} | {int(row.users)} | {row.mean_propensity:.3f} |"
              for name, row in sizes.iterrows()]
    lines += ["", *[f"![{name}]({path.name})" for name, path in paths.items()], ""]
    return "\n".join(lines)
