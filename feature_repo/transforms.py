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

    # numpy on whole columns: the service runs this on every /rank request, where each pandas
    # operation costs tens of microseconds.
    def numbers(name: str) -> np.ndarray:
        return pd.to_numeric(column(name), errors="coerce").to_numpy("float64", na_value=np.nan)

    price, aov = numbers("list_price"), numbers("aov_90d")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(aov > 0, price / aov, np.nan)
    favourite = column("favourite_category").to_numpy(dtype=object, na_value=None)
    category = column("category").to_numpy(dtype=object, na_value=None)
    same = (pd.notna(favourite) & (favourite == category)).astype("int64")
    return pd.DataFrame(
        {"price_to_aov_ratio": ratio, "is_favourite_category": same},
        index=inputs.index,
    )


def user_recency(inputs: pd.DataFrame) -> pd.DataFrame:
    """Days from the user's lifetime instants to the request's time (`request_epoch_s`: the
    training row's time offline, now online), so recency and tenure are exact at any moment
    however long the user was quiet; and recency against the user's own purchase rhythm.
    A missing instant (no purchase yet) gives NaN; a request before an instant gives 0."""
    import numpy as np
    import pandas as pd

    def numbers(name: str) -> np.ndarray:
        return pd.to_numeric(inputs[name], errors="coerce").to_numpy("float64", na_value=np.nan)

    now = numbers("request_epoch_s")

    def days_since(name: str) -> np.ndarray:
        return np.maximum((now - numbers(name)) / 86_400.0, 0.0)

    latest_purchase = days_since("last_purchase_at")
    gap = numbers("mean_purchase_gap_days")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(gap > 0, latest_purchase / gap, np.nan)
    return pd.DataFrame({
        "days_since_signup": days_since("signup_at"),
        "days_since_first_event": days_since("first_event_at"),
        "days_since_latest_event": days_since("last_event_at"),
        "days_since_first_purchase": days_since("first_purchase_at"),
        "days_since_latest_purchase": latest_purchase,
        "recency_to_gap_ratio": ratio,
    }, index=inputs.index)


def user_item_recency(inputs: pd.DataFrame) -> pd.DataFrame:
    """Days from the user's latest view, cart add and purchase of the item to the request's
    time; NaN when the user never did it."""
    import numpy as np
    import pandas as pd

    def numbers(name: str) -> np.ndarray:
        return pd.to_numeric(inputs[name], errors="coerce").to_numpy("float64", na_value=np.nan)

    now = numbers("request_epoch_s")
    return pd.DataFrame(
        {f"days_since_pair_{kind}": np.maximum((now - numbers(f"pair_last_{kind}_at"))
                                               / 86_400.0, 0.0)
         for kind in ("view", "cart", "purchase")},
        index=inputs.index)
