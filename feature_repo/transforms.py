"""Request-time feature transforms, the one copy shared by training (through Feast's
on-demand feature view) and serving (the service imports it directly).

Feast rebuilds an on-demand transform from its source text when it reads the registry, so the
function is self-contained: its imports and helpers live inside it.
"""

from __future__ import annotations

import pandas as pd


def user_item_context(inputs: pd.DataFrame) -> pd.DataFrame:
    """How an item relates to a user: its price against the user's average order value, and
    whether its category is the user's favourite. Missing inputs give NaN / 0, never an error."""
    import numpy as np
    import pandas as pd

    def column(name: str) -> pd.Series:
        # Feast's retrieval frame can hold `category` twice (the join key of
        # user_category_affinity and the item_catalog feature), both the item's category.
        values = inputs.loc[:, name]
        return values.iloc[:, 0] if isinstance(values, pd.DataFrame) else values

    price = pd.to_numeric(column("list_price"), errors="coerce").astype("float64")
    aov = pd.to_numeric(column("aov_90d"), errors="coerce").astype("float64")
    ratio = np.where(aov > 0, price / aov.where(aov > 0, 1.0), np.nan)
    favourite = column("favourite_category").astype("object")
    category = column("category").astype("object")
    same = (favourite.notna() & (favourite == category)).astype("int64")
    return pd.DataFrame(
        {"price_to_aov_ratio": ratio.astype("float64"), "is_favourite_category": same.to_numpy()},
        index=inputs.index,
    )
