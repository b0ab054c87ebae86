"""A purchase-only shop shaped like a real customer file: one acquisition cohort, 18 months.

Real shops' customers buy a few times a year and then, one day, stop: the shape the Pareto/NBD
model describes, and what propensity, churn and win-back scores are for. `persona generate
--profile cohort` draws it:

* Customers sign up over one quarter at the start of the window and buy on their sign-up day.
* Each has a purchase rate lambda ~ Gamma (a few purchases a year on average, heavy-tailed) and a
  lifetime ~ Exponential(mu) with mu ~ Gamma (some stop after weeks, some never): while alive,
  purchase days follow a Poisson process of rate lambda. Age band, region and membership
  level (drawn at sign-up) tilt the rate, so the attributes carry signal.
* An order holds 1 + Poisson(0.3) distinct items drawn by catalogue popularity, quantity 1-3 at
  list price. Purchases are stamped with their date (midnight UTC) and carry no event id, as in
  date-stamped exports: two orders of one day can hold rows alike in every column, separate
  transactions all the same. The log has no views or cart adds.

The catalogue is the browsing shop's (`persona.synthetic_shop.make_catalogue`), all of it on sale
before the cohort arrives.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from persona.core.contract import EVENTS, USERS
from persona.synthetic_shop import (
    AGE_BANDS,
    DAY,
    DEFAULT_END,
    GENDERS,
    MEMBERSHIP_LEVELS,
    REGIONS,
    Shop,
    make_catalogue,
    make_ids,
    utc_seconds,
)

COHORT_DAYS = 548  # 18 months
ACQUISITION_DAYS = 91  # one quarter
PURCHASES_PER_YEAR = 4.0  # the mean rate of a customer while alive
MEAN_LIFETIME_DAYS = 365.0
RATE_SHAPE, DROPOUT_SHAPE = 0.9, 0.8  # Gamma shapes: heterogeneity across customers
# How attributes tilt the purchase rate (multipliers).
_AGE_TILT = np.array([0.7, 1.0, 1.2, 1.2, 1.0, 0.8])
_REGION_TILT = np.array([1.0, 0.9, 1.0, 1.1, 1.3])
_MEMBER_TILT = np.array([0.8, 1.0, 1.3, 1.8])


def generate_cohort(n_users: int, n_items: int, days: int = COHORT_DAYS, seed: int = 0,
                    end: datetime = DEFAULT_END) -> Shop:
    """A reproducible cohort shop: the same arguments always give the same tables."""
    if n_users < 1 or n_items < 1 or days < ACQUISITION_DAYS:
        raise ValueError(f"n_users and n_items must be positive and days at least "
                         f"{ACQUISITION_DAYS} (one acquisition quarter)")
    if end.tzinfo is None:
        raise ValueError("end must be timezone-aware")
    rng = np.random.default_rng(seed)
    end_s = int(end.timestamp()) // DAY * DAY
    start_s = end_s - days * DAY
    items, item_state = make_catalogue(rng, n_items, start_s, days)
    # the whole catalogue is on sale before the cohort arrives
    items["created_timestamp"] = items["created_timestamp"].clip(
        upper=utc_seconds(np.array([start_s - DAY]))[0])
    age = rng.choice(len(AGE_BANDS), n_users, p=[0.14, 0.26, 0.22, 0.17, 0.12, 0.09])
    gender = rng.choice(len(GENDERS), n_users, p=[0.5, 0.45, 0.05])
    region = rng.choice(len(REGIONS), n_users, p=[0.18, 0.22, 0.2, 0.2, 0.2])
    member = rng.choice(len(MEMBERSHIP_LEVELS), n_users, p=[0.55, 0.25, 0.15, 0.05])
    rate = (rng.gamma(RATE_SHAPE, PURCHASES_PER_YEAR / 365.0 / RATE_SHAPE, n_users)
            * _AGE_TILT[age] * _REGION_TILT[region] * _MEMBER_TILT[member])
    dropout = rng.gamma(DROPOUT_SHAPE, 1.0 / MEAN_LIFETIME_DAYS / DROPOUT_SHAPE, n_users)
    signup_day = rng.integers(0, ACQUISITION_DAYS, n_users)
    lifetime = rng.exponential(1.0 / dropout)
    alive_until = np.minimum(signup_day + lifetime, days - 1)
    # purchase days: the sign-up day, then a Poisson process while alive (whole days)
    counts = rng.poisson(rate * np.maximum(alive_until - signup_day, 0))
    owner = np.repeat(np.arange(n_users), counts)
    later = signup_day[owner] + rng.uniform(0, 1, len(owner)) * (alive_until - signup_day)[owner]
    buyer = np.concatenate([np.arange(n_users), owner])
    day = np.concatenate([signup_day, np.floor(later).astype(np.int64)])
    per_order = 1 + rng.poisson(0.3, len(buyer))
    line_user, line_day = np.repeat(buyer, per_order), np.repeat(day, per_order)
    line_order = np.repeat(np.arange(len(buyer)), per_order)
    # a category in proportion to the catalogue, then an item in it by popularity
    category = item_state.category[rng.integers(0, n_items, len(line_user))]
    item = item_state.sampler.draw(rng, category)
    lines = pd.DataFrame({"o": line_order, "u": line_user, "i": item, "d": line_day}
                         ).drop_duplicates(["o", "i"])  # an order's items are distinct
    quantity = rng.choice([1, 1, 1, 2, 3], len(lines))
    users = pd.DataFrame({
        "user_id": make_ids("U", n_users, 7),
        "signup_timestamp": utc_seconds(start_s + signup_day * DAY),
        "age_band": np.array(AGE_BANDS, dtype=object)[age],
        "gender": np.array(GENDERS, dtype=object)[gender],
        "region": np.array(REGIONS, dtype=object)[region],
        "membership_level": np.array(MEMBERSHIP_LEVELS, dtype=object)[member],
    })[[*USERS.required, *USERS.optional]]
    ids = items["item_id"].to_numpy()
    stamp_day = lines["d"].to_numpy()
    events = pd.DataFrame({
        "user_id": users["user_id"].to_numpy()[lines["u"].to_numpy()],
        "item_id": ids[lines["i"].to_numpy()],
        "event_type": "purchase",
        "event_timestamp": utc_seconds(start_s + stamp_day * DAY).to_numpy(),
        "quantity": quantity.astype(np.int64),
        "price": item_state.list_price[lines["i"].to_numpy()].astype(np.float64),
        "event_id": None,
    })
    events = events[stamp_day < days]
    events = events.sort_values(["event_timestamp", "user_id", "item_id"], kind="stable")
    return Shop(events=events.reset_index(drop=True)[[*EVENTS.required, *EVENTS.optional]],
                users=users, items=items)
