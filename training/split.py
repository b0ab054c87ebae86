"""Time split of a labelled frame: validate on the latest period, train on what came before.

A random split would let the model see the same users' and items' near-identical rows on both
sides; the model is used on the future, so it is judged on the future.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pandas as pd

TIME = "event_timestamp"


class SplitError(ValueError):
    """The frame is too short for the requested validation period and gap."""


@dataclass(frozen=True)
class TimeSplit:
    """Train and validation rows with the window each covers (train_until < valid_from)."""

    train: pd.DataFrame
    valid: pd.DataFrame
    train_from: pd.Timestamp
    train_until: pd.Timestamp
    valid_from: pd.Timestamp
    valid_until: pd.Timestamp

    def window(self) -> dict[str, str]:
        """The four bounds as ISO strings, as the model's metadata records them."""
        return {k: getattr(self, k).isoformat()
                for k in ("train_from", "train_until", "valid_from", "valid_until")}


def time_split(
    frame: pd.DataFrame,
    valid_period: timedelta = timedelta(days=7),
    gap: timedelta = timedelta(0),
) -> TimeSplit:
    """Validation: rows in (last - valid_period, last], where `last` is the latest labelled row
    (labels exist only for fully observed horizons, so this is the latest fully labelled
    period). Train: rows at or before valid_from - gap.

    With gap equal to the label horizon, no training label looks at events inside the
    validation period, so validation measures the model on outcomes it never saw.
    """
    if valid_period <= timedelta(0) or gap < timedelta(0):
        raise ValueError("valid_period must be positive and gap not negative")
    if frame.empty:
        raise SplitError("cannot split an empty frame")
    times = frame[TIME]
    last = times.max()
    cut = last - valid_period
    valid_mask = times > cut
    train_mask = times <= cut - gap
    if not train_mask.any():
        raise SplitError(f"no training rows at or before {(cut - gap).isoformat()}: the "
                         f"labelled rows span {times.min().isoformat()} .. {last.isoformat()}, "
                         f"shorter than validation ({valid_period}) plus gap ({gap})")
    train, valid = frame[train_mask], frame[valid_mask]
    return TimeSplit(
        train=train.reset_index(drop=True),
        valid=valid.reset_index(drop=True),
        train_from=train[TIME].min(),
        train_until=train[TIME].max(),
        valid_from=valid[TIME].min(),
        valid_until=last,
    )
