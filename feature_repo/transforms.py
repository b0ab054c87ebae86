"""Request-time feature transforms, the one copy shared by training (through Feast's
on-demand feature view) and serving (the service imports it directly)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _column(inputs: pd.DataFrame, name: str) -> pd.Series:
    """A column by name; Feast's retrieval frame can hold `category` twice (the join key of
    user_category_affinity and the item_catalog feature), both holding the item's category."""
    column = inputs.loc[:, name]
    return column.iloc[:, 0] if isinstance(column, pd.DataFrame) else column


def user_item_context(inputs: pd.DataFrame) -> pd.DataFrame:
    """How an item relates to a user: its price against the user's average order value, and
    whether its category is the user's favourite. Missing inputs give NaN / 0, never an error."""
    price = pd.to_numeric(_column(inputs, "list_price"), errors="coerce").astype("float64")
    aov = pd.to_numeric(_column(inputs, "aov_90d"), errors="coerce").astype("float64")
    ratio = np.where(aov > 0, price / aov.where(aov > 0, 1.0), np.nan)
    favourite = _column(inputs, "favourite_category").astype("object")
    category = _column(inputs, "category").astype("object")
    same = (favourite.notna() & (favourite == category)).astype("int64")
    return pd.DataFrame(
        {"price_to_aov_ratio": ratio.astype("float64"), "is_favourite_category": same.to_numpy()},
        index=inputs.index,
    )
