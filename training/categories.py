"""Categorical model inputs, encoded one way for training, batch scoring and serving.

XGBoost reads a categorical column as the integer code of each value (`feature_types` "c"); the
codes index the category list learnt from the training rows and stored with the model, so the
same value gets the same code wherever the model runs. A value the training rows never had, and
a missing one, is NaN: missing, never an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

Categories = Mapping[str, Sequence[str]]  # categorical feature -> its values, code = position


def is_categorical(series: pd.Series) -> bool:
    """Strings (object, string or category dtype) are categorical inputs; numbers are not."""
    return (pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)
            or isinstance(series.dtype, pd.CategoricalDtype))


def learn(frame: pd.DataFrame, features: Sequence[str]) -> dict[str, list[str]]:
    """The sorted values of each categorical feature over `frame` (the training rows)."""
    return {f: sorted(frame[f].dropna().astype(str).unique()) for f in features
            if is_categorical(frame[f])}


def codes(values: pd.Series | Sequence, known: Sequence[str]) -> np.ndarray:
    """Each value's position in `known` as float32; unknown or missing values NaN."""
    position = pd.Categorical(pd.Series(values, dtype="object").astype("string"),
                              categories=list(known)).codes.astype(np.float32)
    position[position < 0] = np.nan
    return position


def matrix(frame: pd.DataFrame, features: Sequence[str], categories: Categories | None = None
           ) -> np.ndarray:
    """Model input in `features` order as float32 (what XGBoost bins anyway): numbers as they
    are, categorical features as their codes; NaN = missing."""
    categories = categories or {}
    out = np.empty((len(frame), len(features)), dtype=np.float32)
    for j, feature in enumerate(features):
        if feature in categories:
            out[:, j] = codes(frame[feature], categories[feature])
        else:
            out[:, j] = frame[feature].to_numpy(dtype=np.float32, na_value=np.nan)
    return out


def category_of(categories: Categories, feature: str, code: float | None) -> str | None:
    """The category a code of `feature` stands for; None for a missing value."""
    if code is None or np.isnan(code):
        return None
    return categories[feature][int(code)]


def feature_types(features: Sequence[str], categories: Categories | None = None) -> list[str]:
    """XGBoost's type of each feature: "c" for a categorical one, "q" for a number."""
    categories = categories or {}
    return ["c" if f in categories else "q" for f in features]
