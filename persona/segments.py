"""`persona segments --as-of DATE`: every active user's tags and segment at a date.

Features come from Feast as they were at DATE (the `user_profile_v1` service, point in time),
scores from the latest propensity model when one is trained; the rules are the tag file's.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from persona.models import TASKS
from persona.settings import Settings
from persona.store import feature_store
from persona.tags import TAGS_FILE, TagBook

PROFILE_SERVICE = "user_profile_v1"
TAGS_FILE_NAME = f"{TAGS_FILE.parent.name}/{TAGS_FILE.name}"


def profile_features(settings: Settings, users: pd.Series, as_of: pd.Timestamp) -> pd.DataFrame:
    """Short-named profile features of `users` as of `as_of`, indexed by user_id."""
    store = feature_store(settings)
    entity_df = pd.DataFrame({"user_id": users.astype(object).to_numpy(),
                              "event_timestamp": pd.Series([as_of] * len(users), dtype="datetime64[ns, UTC]")})
    frame = store.get_historical_features(entity_df=entity_df,
                                          features=store.get_feature_service(PROFILE_SERVICE)).to_df()
    return frame.drop(columns=["event_timestamp"]).set_index("user_id")


def propensity_scores(settings: Settings, as_of: pd.Timestamp) -> pd.DataFrame | None:
    """Propensity of every active user as of `as_of`, or None when no propensity model exists."""
    import bentoml
    from bentoml.exceptions import NotFound

    from training.score import score

    try:
        bentoml.models.get(f"{TASKS['propensity'].model_name}:latest")
    except NotFound:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        result = score(settings, "propensity", Path(tmp) / "scores.parquet", as_of=as_of)
        scores = pd.read_parquet(result.path, columns=["user_id", "score"])
    return scores.rename(columns={"score": "propensity"}).set_index("user_id")


def segment_users(settings: Settings, as_of: pd.Timestamp, book: TagBook | None = None) -> pd.DataFrame:
    """One row per user active at or before `as_of`: propensity, churn_risk, tags, segment."""
    from training.score import active_users, raw_events

    book = book or TagBook.load()
    users = pd.Series(active_users(raw_events(settings), as_of), name="user_id")
    frame = profile_features(settings, users, as_of)
    scores = propensity_scores(settings, as_of)
    frame["propensity"] = scores["propensity"].reindex(frame.index) if scores is not None else float("nan")
    frame["churn_risk"] = 1.0 - frame["propensity"]
    labelled = book.evaluate(frame)
    return frame[["propensity", "churn_risk"]].join(labelled).reset_index()


def segment_sizes(segmented: pd.DataFrame, book: TagBook | None = None) -> pd.DataFrame:
    """Users and mean propensity per segment, in the tag file's segment order."""
    book = book or TagBook.load()
    order = [s.name for s in book.segments]
    sizes = segmented.groupby("segment").agg(users=("user_id", "size"), mean_propensity=("propensity", "mean"))
    return sizes.reindex([s for s in order if s in sizes.index])


def plot_segments(segmented: pd.DataFrame, directory: Path, book: TagBook | None = None) -> dict[str, Path]:
    """Two PNGs for the training report: users per segment, and propensity by segment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = segment_sizes(segmented, book)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"segment_sizes": directory / "segment_sizes.png",
             "propensity_by_segment": directory / "propensity_by_segment.png"}
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.barh(sizes.index[::-1], sizes["users"][::-1], color="#4c72b0")
    ax.set_xlabel("users")
    ax.set_title("Users per segment")
    fig.tight_layout()
    fig.savefig(paths["segment_sizes"], dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4))
    groups = [segmented.loc[segmented["segment"] == s, "propensity"].dropna() for s in sizes.index]
    ax.boxplot(groups, vert=False, showfliers=False)
    ax.set_yticks(range(1, len(sizes) + 1), sizes.index)
    ax.set_xlabel("purchase propensity")
    ax.set_title("Propensity by segment")
    fig.tight_layout()
    fig.savefig(paths["propensity_by_segment"], dpi=110)
    plt.close(fig)
    return paths


def report_section(frame: pd.DataFrame, propensity, directory: Path, book: TagBook | None = None) -> str:
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
    lines += [f"| {name} | {int(row.users)} | {row.mean_propensity:.3f} |" for name, row in sizes.iterrows()]
    lines += ["", *[f"![{name}]({path.name})" for name, path in paths.items()], ""]
    return "\n".join(lines)
