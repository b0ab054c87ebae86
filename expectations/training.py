"""The suite for a training frame retrieved from the feature store, checked before fitting."""

from __future__ import annotations

from collections.abc import Sequence

import great_expectations as gx
import great_expectations.expectations as gxe

from expectations.common import exist, not_null, rate, row_count, strings, suite

KEYS = ("user_id", "item_id", "event_timestamp")
LABEL = "label"


def is_rate_like(feature: str) -> bool:
    """Features whose name says they are a fraction ("rate", "share") must lie in [0, 1]."""
    return "rate" in feature or "share" in feature


def training_suite(feature_columns: Sequence[str], name: str = "training") -> gx.ExpectationSuite:
    """Keys present and not null, a 0/1 label on every row, every requested feature column
    present, and rate-like features in [0, 1] where not null."""
    return suite(name, [
        *exist((*KEYS, LABEL, *feature_columns)),
        *not_null((*KEYS, LABEL)),
        *strings(KEYS[:2]),
        gxe.ExpectColumnValuesToBeInSet(column=LABEL, value_set=[0, 1]),
        *(rate(f) for f in feature_columns if is_rate_like(f)),
        row_count(),
    ])
