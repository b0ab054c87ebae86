"""`persona segments --as-of DATE`: every active user's tags and segment at a date.

Features come from Feast as they were at DATE (the profile feature service, point in time),
scores from the latest propensity model trained on this home, when there is one; the rules are
the tag file's.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from persona.core.catalog import PROFILE_SERVICE, WrongHomeError
from persona.core.settings import Settings
from persona.featurestore.config import feature_store
from persona.jobs.progress import Count
from persona.profiling.tags import TagBook
from training.model_store import ModelNotFoundError
from training.score import active_users, raw_events, score

log = logging.getLogger(__name__)

Step = Callable[[str], None]


def profile_features(settings: Settings, users: pd.Series, as_of: pd.Timestamp) -> pd.DataFrame:
    """Short-named profile features of `users` as of `as_of`, indexed by user_id."""
    store = feature_store(settings)
    times = pd.Series([as_of] * len(users), dtype="datetime64[ns, UTC]")
    entity_df = pd.DataFrame({"user_id": users.astype(object).to_numpy(), "event_timestamp": times})
    frame = store.get_historical_features(entity_df=entity_df,
                                          features=store.get_feature_service(PROFILE_SERVICE)).to_df()
    return frame.drop(columns=["event_timestamp"]).set_index("user_id")


def propensity_scores(settings: Settings, as_of: pd.Timestamp,
                      on_progress: Count = lambda done, total: None) -> pd.DataFrame | None:
    """Propensity of every active user as of `as_of`, or None when no propensity model was
    trained on this home (another home's model is not used: it learnt another shop).
    `on_progress(done, total)` counts the users scored."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = score(settings, "propensity", Path(tmp) / "scores.parquet", as_of=as_of,
                           on_progress=on_progress)
            scores = pd.read_parquet(result.path, columns=["user_id", "score"])
    except ModelNotFoundError:
        return None
    except WrongHomeError as exc:
        log.warning("segments without propensity: %s", exc)
        return None
    return scores.rename(columns={"score": "propensity"}).set_index("user_id")


def segment_users(settings: Settings, as_of: pd.Timestamp, book: TagBook | None = None,
                  on_step: Step = lambda _: None,
                  on_progress: Count = lambda done, total: None) -> pd.DataFrame:
    """One row per user active at or before `as_of`: propensity, churn_risk, tags, segment.
    `on_step` names each stage; `on_progress` counts the users scored."""
    book = book or TagBook.load()
    on_step("reading the active users")
    users = pd.Series(active_users(raw_events(settings), as_of), name="user_id")
    on_step(f"profile features of {len(users):,} users")
    frame = profile_features(settings, users, as_of)
    on_step("scoring users")
    scores = propensity_scores(settings, as_of, on_progress)
    on_step("tags and segments")
    frame["propensity"] = (float("nan") if scores is None
                           else scores["propensity"].reindex(frame.index))
    frame["churn_risk"] = 1.0 - frame["propensity"]
    labelled = book.evaluate(frame)
    return frame[["propensity", "churn_risk"]].join(labelled).reset_index()
