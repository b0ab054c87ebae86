"""Categorical inputs: learnt from the training rows, encoded the same way everywhere, an unseen
or missing value read as missing."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.categories import feature_types, learn, matrix


def test_categories_are_learnt_sorted_from_string_columns_only() -> None:
    frame = pd.DataFrame({"c": ["b", "a", None, "b"], "n": [1.0, 2.0, 3.0, 4.0]})
    assert learn(frame, ["c", "n"]) == {"c": ["a", "b"]}
    assert feature_types(["c", "n"], {"c": ["a", "b"]}) == ["c", "q"]


def test_an_unseen_category_is_missing_not_an_error() -> None:
    frame = pd.DataFrame({"c": ["a", "zzz", None], "n": [1.0, 2.0, np.nan]})
    x = matrix(frame, ["c", "n"], {"c": ["a", "b"]})
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 0], [0.0, np.nan, np.nan])
    np.testing.assert_array_equal(x[:, 1], [1.0, 2.0, np.nan])
