"""Reference quantiles of a model's features: where a user stands among all users at one moment.

Saved with the propensity model so that the serving side can turn one user's online features
into percentile-based profile tags ("top 10% by 90-day spend") without scanning every user.
"""

from __future__ import annotations

import pandas as pd

from persona.profiling.expressions import (  # the levels a tag rule may ask for
    QUANTILES,
    population_quantiles,
)

TIME = "event_timestamp"


def reference_quantiles(frame: pd.DataFrame, features: list[str], at: pd.Timestamp,
                        levels: tuple[float, ...] = QUANTILES) -> dict[str, dict[str, float]]:
    """For each feature, its `levels` quantiles over the rows stamped `at` (one row per user at
    a snapshot), as tag rules read them (`population_quantiles`: missing values and zeros left
    out); a feature without such a value gets NaN quantiles (dropped when saved as metadata)."""
    rows = frame.loc[frame[TIME] == at, features]
    if rows.empty:
        raise ValueError(f"no rows at {at.isoformat()} to take reference quantiles from")
    return {f: population_quantiles(rows[f], levels) for f in features}
