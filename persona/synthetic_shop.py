"""Synthetic shop logs with structure a model can learn, generated with vectorised numpy.

The model behind the data, in the order it is drawn:

* Catalogue. Each of the categories in `CATEGORIES` has a median price, a share of the catalogue
  and, for consumables, a re-buy cycle in days. Brands belong to one category and carry a latent
  quality and price level. An item's list price is lognormal around its category median times its
  brand's level; its latent quality is brand quality plus noise; its popularity is Zipf-like over a
  random rank, tilted towards quality. Most items exist before the window, some appear during it.
* Users. Age band, gender and region tilt which 1-3 categories a user favours; the user's category
  preference is a Dirichlet concentrated on those favourites. Activity (sessions per day) is
  lognormal, so a few users are heavy and most are light; membership level follows activity.
  Each user has a price sensitivity and a re-buy propensity. A fraction churns: activity falls
  linearly to zero within a week of a churn day. Signups spread over three years before the window
  and over the window itself.
* Sessions. Per user-day, sessions ~ Poisson(activity x weekday factor (weekends higher) x churn
  factor), at hours drawn from a daily curve. A session views 1 + Poisson(2) items; each view's
  category is mostly the session's category, drawn from the user's preferences, and the item is
  drawn within the category by popularity.
* Funnel. A view becomes a cart with a probability rising with item quality and category
  preference and falling with price relative to the category median, scaled by the user's price
  sensitivity (weekly item promotions lower the price). A cart becomes a purchase in the same
  session or, for a third of purchases, within a week after the user comes back and views the item
  again. Quantity is mostly 1, sometimes 2-3 (more often for consumables).
* Re-buys. After buying a consumable, a user re-buys it (view, cart, purchase) every cycle or so,
  a geometric number of times that grows with the user's re-buy propensity.

So "a view at t is followed by a purchase of the same item within 7 days" is a learnable label
whose positive rate is a few percent. Every timestamp lies in (end - days, end], after the user's
signup and the item's creation; timestamps are whole seconds, UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from persona.core.contract import EVENT_TYPES, EVENTS, ITEMS, USERS

DEFAULT_END = datetime(2026, 10, 1, tzinfo=UTC)

DAY = 86_400
VIEW, CART, PURCHASE = (EVENT_TYPES.index(k) for k in ("view", "cart", "purchase"))


@dataclass(frozen=True)
class Category:
    """One product category: median list price, catalogue share, re-buy cycle (0: durable)."""

    name: str
    median_price: float
    share: float
    cycle_days: int = 0


CATEGORIES: tuple[Category, ...] = (
    Category("electronics", 120.0, 0.07),
    Category("computers", 550.0, 0.03),
    Category("phones", 380.0, 0.03),
    Category("home_kitchen", 40.0, 0.09),
    Category("furniture", 210.0, 0.04),
    Category("books", 15.0, 0.10),
    Category("toys", 26.0, 0.06),
    Category("sports_outdoors", 50.0, 0.06),
    Category("fashion_women", 42.0, 0.08),
    Category("fashion_men", 40.0, 0.06),
    Category("shoes", 75.0, 0.04),
    Category("beauty", 21.0, 0.07, cycle_days=30),
    Category("health", 17.0, 0.05, cycle_days=30),
    Category("grocery", 7.0, 0.08, cycle_days=10),
    Category("pet_supplies", 24.0, 0.04, cycle_days=21),
    Category("baby", 23.0, 0.03, cycle_days=14),
    Category("garden", 34.0, 0.04),
    Category("automotive", 46.0, 0.03),
)
_CAT = {c.name: k for k, c in enumerate(CATEGORIES)}

AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
GENDERS = ("female", "male", "unspecified")
REGIONS = ("north", "south", "east", "west", "capital")
MEMBERSHIP_LEVELS = ("basic", "silver", "gold", "platinum")

# How demographics tilt the choice of favourite categories (multipliers on catalogue share).
_AFFINITY: dict[tuple[str, str], dict[str, float]] = {
    ("gender", "female"): {"fashion_women": 6, "beauty": 4, "baby": 2, "fashion_men": 0.2},
    ("gender", "male"): {"fashion_men": 6, "electronics": 2, "computers": 2, "automotive": 3,
                         "fashion_women": 0.2, "beauty": 0.4},
    ("age_band", "18-24"): {"phones": 3, "shoes": 2, "books": 1.5, "garden": 0.2, "baby": 0.3},
    ("age_band", "25-34"): {"baby": 4, "home_kitchen": 2, "electronics": 1.5},
    ("age_band", "35-44"): {"toys": 4, "home_kitchen": 1.5, "furniture": 2},
    ("age_band", "45-54"): {"garden": 3, "automotive": 1.5, "health": 1.5},
    ("age_band", "55-64"): {"garden": 3, "health": 2, "books": 2, "phones": 0.5},
    ("age_band", "65+"): {"health": 4, "books": 3, "garden": 2, "shoes": 0.5, "baby": 0.2},
    ("region", "capital"): {"garden": 0.3, "fashion_women": 1.5, "fashion_men": 1.5},
    ("region", "north"): {"sports_outdoors": 2.5, "automotive": 1.5},
}
# Relative session rate by weekday, Monday first.
_WEEKDAY_FACTOR = np.array([0.9, 0.88, 0.92, 0.97, 1.05, 1.35, 1.3])
# Relative session rate by hour of day (UTC): quiet nights, a lunch bump, busy evenings.
_HOUR_WEIGHT = np.array([2, 1, 0.6, 0.4, 0.4, 0.6, 1.5, 3, 4, 4.5, 5, 5.5,
                         6.5, 6, 5, 5, 5.5, 6, 7, 8.5, 9, 8, 6, 4])
_SYLLABLES = (("Ac", "Bel", "Cor", "Dal", "Ev", "Fen", "Gal", "Hal", "Ix", "Jor", "Kel", "Lum"),
              ("a", "e", "i", "o", "u", "y", "ae", "io"),
              ("ra", "nix", "vo", "tek", "la", "ron", "sa", "mo", "den"))


@dataclass(frozen=True)
class Shop:
    """The three raw tables of a shop, as the data contract declares them."""

    events: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame


@dataclass(frozen=True)
class _GroupSampler:
    """Draws members of a group with probability proportional to their weight."""

    order: np.ndarray  # members sorted by group
    cum: np.ndarray  # group + cumulative normalised weight within the group
    last: np.ndarray  # position in `order` of each group's last member

    @classmethod
    def build(cls, group: np.ndarray, weight: np.ndarray, n_groups: int) -> _GroupSampler:
        order = np.argsort(group, kind="stable")
        g, w = group[order], weight[order]
        total = np.bincount(g, weights=w, minlength=n_groups)
        cum = np.cumsum(w / total[g])
        starts = np.searchsorted(g, np.arange(n_groups))
        cum -= np.concatenate([[0.0], cum])[starts][g]
        last = np.searchsorted(g, np.arange(n_groups), side="right") - 1
        cum[last[np.bincount(g, minlength=n_groups) > 0]] = 1.0
        return cls(order=order, cum=cum + g, last=last)

    def draw(self, rng: np.random.Generator, group: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self.cum, group + rng.random(len(group)), side="right")
        return self.order[np.minimum(pos, self.last[group])]


@dataclass(frozen=True)
class _ItemState:
    category: np.ndarray  # int index into CATEGORIES
    quality: np.ndarray
    list_price: np.ndarray
    created: np.ndarray  # unix seconds
    discount: np.ndarray  # (n_items, n_weeks) promotional discount fraction
    sampler: _GroupSampler  # draws an item of a given category by popularity


@dataclass(frozen=True)
class _UserState:
    pref_cum_t: np.ndarray  # (n_categories, n_users) cumulative category preferences
    pref: np.ndarray  # (n_users, n_categories)
    activity: np.ndarray  # sessions per day before seasonality
    sensitivity: np.ndarray
    rebuy: np.ndarray
    membership: np.ndarray  # int index into MEMBERSHIP_LEVELS
    signup: np.ndarray  # unix seconds
    churn_day: np.ndarray  # day index in the window, inf for users who stay


@dataclass
class _Events:
    """Event columns as parallel arrays (indices and unix seconds) before they become strings."""

    user: np.ndarray
    item: np.ndarray
    kind: np.ndarray
    t: np.ndarray
    qty: np.ndarray

    def take(self, mask: np.ndarray) -> _Events:
        return _Events(*(a[mask] for a in (self.user, self.item, self.kind, self.t, self.qty)))

    @staticmethod
    def concat(parts: list[_Events]) -> _Events:
        return _Events(*(np.concatenate([getattr(p, f) for p in parts])
                         for f in ("user", "item", "kind", "t", "qty")))

    @staticmethod
    def of(user: np.ndarray, item: np.ndarray, kind: int, t: np.ndarray, qty: np.ndarray
           ) -> _Events:
        return _Events(user, item, np.full(len(user), kind, np.int8), t, qty)


def generate_shop(
    n_users: int, n_items: int, days: int, seed: int = 0, end: datetime = DEFAULT_END
) -> Shop:
    """A reproducible shop: the same arguments always give the same tables."""
    if n_users < 1 or n_items < 1 or days < 1:
        raise ValueError("n_users, n_items and days must be positive")
    if end.tzinfo is None:
        raise ValueError("end must be timezone-aware")
    rng = np.random.default_rng(seed)
    end_s = int(end.timestamp())
    start_s = end_s - days * DAY
    items, item_state = make_catalogue(rng, n_items, start_s, days)
    users, user_state = _make_users(rng, n_users, start_s, days, item_state)
    views = _browse(rng, user_state, item_state, start_s, end_s, days)
    carts, purchases, returns = _funnel(rng, views, user_state, item_state, start_s, end_s)
    repeats = _rebuys(rng, _Events.concat([purchases, returns[1]]), user_state, item_state,
                      start_s, end_s)
    log = _Events.concat([views, carts, purchases, returns[0], returns[1], *repeats])
    events = _event_frame(log.take(log.t <= end_s), users, items, item_state, start_s)
    return Shop(events=events, users=users, items=items)


def make_catalogue(
    rng: np.random.Generator, n_items: int, start_s: int, days: int
) -> tuple[pd.DataFrame, _ItemState]:
    """Catalogue: categories, brands with quality and price level, items with popularity."""
    n_cat = len(CATEGORIES)
    share = np.array([c.share for c in CATEGORIES])
    category = rng.choice(n_cat, size=n_items, p=share / share.sum())
    category[: min(n_cat, n_items)] = rng.permutation(n_cat)[: min(n_cat, n_items)]
    n_brands = rng.integers(4, 13, size=n_cat)
    brand_cat = np.repeat(np.arange(n_cat), n_brands)
    brand_rank = np.arange(len(brand_cat)) - np.repeat(np.cumsum(n_brands) - n_brands, n_brands)
    brand_names = _brand_names(rng, len(brand_cat))
    brand_quality = rng.normal(0.0, 0.5, len(brand_cat))
    brand_level = rng.lognormal(0.0, 0.25, len(brand_cat))
    brand = _GroupSampler.build(brand_cat, 1.0 / (brand_rank + 1.0) ** 0.8, n_cat).draw(
        rng, category)
    quality = brand_quality[brand] + rng.normal(0.0, 0.7, n_items)
    median = np.array([c.median_price for c in CATEGORIES])[category]
    noise = rng.lognormal(0.0, 0.45, n_items)
    list_price = np.maximum(np.round(median * brand_level[brand] * noise
                                     * np.exp(0.15 * quality), 2), 0.5)
    popularity = np.exp(0.4 * quality) / (rng.permutation(n_items) + 1.0) ** 0.8
    new = rng.random(n_items) < 0.15
    created = np.where(new, start_s + rng.integers(0, days * DAY, n_items),
                       start_s - rng.integers(1, 730 * DAY, n_items))
    n_weeks = days // 7 + 1
    promo = rng.random((n_items, n_weeks)) < 0.06
    discount = np.where(promo, rng.choice([0.1, 0.15, 0.2, 0.3], (n_items, n_weeks)), 0.0)
    frame = pd.DataFrame({
        "item_id": make_ids("I", n_items, 6),
        "category": np.array([c.name for c in CATEGORIES], dtype=object)[category],
        "brand": brand_names[brand],
        "list_price": list_price.astype(np.float64),
        "created_timestamp": utc_seconds(created),
        "available": True,  # every generated item can be bought (no random draw: same shops)
    })[list(ITEMS.required + ITEMS.optional)]
    sampler = _GroupSampler.build(category, popularity, n_cat)
    return frame, _ItemState(category, quality, list_price, created, discount, sampler)


def _make_users(
    rng: np.random.Generator, n_users: int, start_s: int, days: int, items: _ItemState
) -> tuple[pd.DataFrame, _UserState]:
    """Users: demographics, category preferences, activity, sensitivity, churn, signup."""
    age = rng.choice(len(AGE_BANDS), n_users, p=[0.14, 0.26, 0.22, 0.17, 0.12, 0.09])
    gender = rng.choice(len(GENDERS), n_users, p=[0.5, 0.45, 0.05])
    region = rng.choice(len(REGIONS), n_users, p=[0.18, 0.22, 0.2, 0.2, 0.2])
    pref = _preferences(rng, {"age_band": age, "gender": gender,
                              "region": region}, items)
    activity = np.minimum(rng.lognormal(-2.95, 1.25, n_users), 4.0)
    score = np.log(activity) + rng.normal(0.0, 0.8, n_users)
    membership = np.searchsorted(np.quantile(score, [0.55, 0.8, 0.95]), score)
    sensitivity = rng.lognormal(0.0, 0.5, n_users) * (1.0 - 0.15 * membership)
    rebuy = rng.beta(1.0, 2.5, n_users) * 0.9
    churn_day = np.where(rng.random(n_users) < 0.3, rng.uniform(0, days, n_users), np.inf)
    in_window = rng.random(n_users) < 0.3
    signup = np.where(in_window, start_s + rng.integers(1, days * DAY + 1, n_users),
                      start_s - rng.integers(0, 3 * 365 * DAY, n_users))
    frame = pd.DataFrame({
        "user_id": make_ids("U", n_users, 7),
        "signup_timestamp": utc_seconds(signup),
        "age_band": np.array(AGE_BANDS, dtype=object)[age],
        "gender": np.array(GENDERS, dtype=object)[gender],
        "region": np.array(REGIONS, dtype=object)[region],
        "membership_level": np.array(MEMBERSHIP_LEVELS, dtype=object)[membership],
    })[list(USERS.required + USERS.optional)]
    cum = np.cumsum(pref, axis=1)
    cum /= cum[:, -1:]  # last column exactly 1, and empty trailing categories stay unreachable
    state = _UserState(np.ascontiguousarray(cum.T), pref, activity, sensitivity, rebuy,
                       membership, signup, churn_day)
    return frame, state


def _preferences(
    rng: np.random.Generator, demo: dict[str, np.ndarray], items: _ItemState
) -> np.ndarray:
    """Dirichlet category preferences concentrated on 1-3 demographically tilted favourites."""
    names = {"age_band": AGE_BANDS, "gender": GENDERS, "region": REGIONS}
    n_users, n_cat = len(demo["gender"]), len(CATEGORIES)
    affinity = np.tile(np.array([c.share for c in CATEGORIES]), (n_users, 1))
    for (attr, value), boosts in _AFFINITY.items():
        rows = demo[attr] == names[attr].index(value)
        for cat, factor in boosts.items():
            affinity[rows, _CAT[cat]] *= factor
    keys = np.log(affinity) + rng.gumbel(size=(n_users, n_cat))
    rank = np.argsort(np.argsort(-keys, axis=1), axis=1)
    n_fav = rng.choice([1, 2, 3], n_users, p=[0.35, 0.4, 0.25])
    alpha = np.where(rank < n_fav[:, None], 4.0, 0.08)
    pref = rng.gamma(alpha) * (np.bincount(items.category, minlength=n_cat) > 0)
    return pref / pref.sum(axis=1, keepdims=True)


def _browse(
    rng: np.random.Generator, users: _UserState, items: _ItemState,
    start_s: int, end_s: int, days: int,
) -> _Events:
    """Sessions per user-day and the items viewed in them."""
    day = np.arange(days)
    weekday = ((start_s // DAY + day + 3) % 7)  # 1970-01-01 was a Thursday
    churn = np.clip(1.0 - (day[None, :] - users.churn_day[:, None]) / 7.0, 0.0, 1.0)
    active = start_s + day[None, :] * DAY >= users.signup[:, None]
    rate = users.activity[:, None] * _WEEKDAY_FACTOR[weekday][None, :] * churn * active
    counts = rng.poisson(rate)
    s_user, s_day = np.nonzero(counts)
    reps = counts[s_user, s_day]
    s_user, s_day = np.repeat(s_user, reps), np.repeat(s_day, reps)
    s_start = start_s + s_day * DAY + _hour_offsets(rng, len(s_user))
    s_cat = _draw_category(rng, users, s_user)
    n_views = 1 + rng.poisson(2.0, len(s_user))
    v_user, v_cat = np.repeat(s_user, n_views), np.repeat(s_cat, n_views)
    gaps = np.where(_group_first(n_views), 0, 20 + rng.exponential(100.0, len(v_user)))
    v_t = np.repeat(s_start, n_views) + _group_cumsum(gaps.astype(np.int64), n_views)
    switch = rng.random(len(v_user)) < 0.3
    v_cat[switch] = _draw_category(rng, users, v_user[switch])
    v_item = items.sampler.draw(rng, v_cat)
    keep = (v_t >= items.created[v_item]) & (v_t <= end_s)
    ones = np.ones(len(v_user), np.int64)
    return _Events.of(v_user, v_item, VIEW, v_t, ones).take(keep)


def _funnel(
    rng: np.random.Generator, views: _Events, users: _UserState, items: _ItemState,
    start_s: int, end_s: int,
) -> tuple[_Events, _Events, tuple[_Events, _Events]]:
    """Carts and purchases from views; late purchases come with a return view of the item."""
    u, i, n = views.user, views.item, len(views.user)
    rel_price = np.log(_price(items, i, views.t, start_s) / _median(items, i))
    pref = np.log(users.pref[u, items.category[i]] * len(CATEGORIES) + 1e-3).clip(-3, 2.5)
    p_cart = _sigmoid(-4.4 + 0.9 * items.quality[i] + 0.5 * pref
                      - users.sensitivity[u] * rel_price)
    carted = rng.random(n) < p_cart
    c = views.take(carted)
    c_t = c.t + 15 + rng.exponential(90.0, len(c.t)).astype(np.int64)
    multi = np.where(_cycle(items, c.item) > 0, 0.3, 0.12)
    q = rng.random(len(c.t))
    qty = 1 + (q < multi) + (q < multi * 0.3)
    carts = _Events.of(c.user, c.item, CART, c_t, qty)
    rel_c = rel_price[carted]
    p_buy = _sigmoid(0.1 + 0.4 * items.quality[c.item] - 0.5 * users.sensitivity[c.user] * rel_c
                     + 0.2 * users.membership[c.user])
    bought = rng.random(len(c_t)) < p_buy
    late = rng.random(len(c_t)) < 0.35
    now = carts.take(bought & ~late)
    now.t = now.t + 30 + rng.exponential(240.0, len(now.t)).astype(np.int64)
    now.kind[:] = PURCHASE
    later = carts.take(bought & late)
    day = (later.t - start_s) // DAY + 1 + rng.geometric(0.45, len(later.t)) - 1
    later.t = start_s + day * DAY + _hour_offsets(rng, len(later.t))
    later.t = np.maximum(later.t, carts.t[bought & late] + 3600)
    keep = (later.t <= end_s) & (later.t <= _churn_end(users, later.user, start_s))
    later = later.take(keep)
    later.kind[:] = PURCHASE
    back = _Events.of(later.user, later.item, VIEW,
                      later.t - 60 - rng.exponential(120.0, len(later.t)).astype(np.int64),
                      np.ones(len(later.t), np.int64))
    return carts, now, (back, later)


def _rebuys(
    rng: np.random.Generator, purchases: _Events, users: _UserState, items: _ItemState,
    start_s: int, end_s: int,
) -> list[_Events]:
    """Re-purchases of consumables about once per cycle, each as view, cart and purchase."""
    cycle = _cycle(items, purchases.item)
    p_more = np.where(cycle > 0, users.rebuy[purchases.user], 0.02)
    n = np.minimum(rng.geometric(1.0 - p_more) - 1, 10)
    src = np.repeat(np.arange(len(n)), n)
    step = np.maximum(1, np.round(cycle[src] * rng.lognormal(0.0, 0.3, len(src)))).astype(int)
    day = (purchases.t[src] - start_s) // DAY + _group_cumsum(step, n)
    t = start_s + day * DAY + _hour_offsets(rng, len(src))
    user, item, qty = purchases.user[src], purchases.item[src], purchases.qty[src]
    keep = (t <= end_s) & (t <= _churn_end(users, user, start_s))
    user, item, qty, t = user[keep], item[keep], qty[keep], t[keep]
    cart_t = t - 30 - rng.exponential(60.0, len(t)).astype(np.int64)
    view_t = cart_t - 20 - rng.exponential(60.0, len(t)).astype(np.int64)
    return [_Events.of(user, item, VIEW, view_t, np.ones(len(t), np.int64)),
            _Events.of(user, item, CART, cart_t, qty),
            _Events.of(user, item, PURCHASE, t, qty)]


def _event_frame(
    log: _Events, users: pd.DataFrame, items: pd.DataFrame, state: _ItemState, start_s: int
) -> pd.DataFrame:
    """Sort by time then user, drop exact key duplicates, and turn indices into contract columns."""
    order = np.lexsort((log.kind, log.item, log.user, log.t))
    log = log.take(order)
    dup = np.zeros(len(log.t), bool)
    dup[1:] = ((log.t[1:] == log.t[:-1]) & (log.user[1:] == log.user[:-1])
               & (log.item[1:] == log.item[:-1]) & (log.kind[1:] == log.kind[:-1]))
    log = log.take(~dup)
    frame = pd.DataFrame({
        "user_id": users["user_id"].to_numpy()[log.user],
        "item_id": items["item_id"].to_numpy()[log.item],
        "event_type": np.array(EVENT_TYPES, dtype=object)[log.kind],
        "event_timestamp": utc_seconds(log.t),
        "quantity": log.qty.astype(np.int64),
        "price": _price(state, log.item, log.t, start_s),
        "event_id": None,  # a log without ids: rows are never merged for being alike
    })
    return frame[list(EVENTS.required + EVENTS.optional)]


def write_shop(shop: Shop, out_dir: Path, fmt: str = "parquet") -> dict[str, Path]:
    """Write events, users and items as `<name>.parquet` or `<name>.csv`; return their paths.

    Parquet keeps UTC timestamps; CSV writes them as ISO-8601 strings ending in 'Z'.
    Output bytes depend only on the tables, so the same seed gives identical files.
    """
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"fmt must be 'parquet' or 'csv', not {fmt!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, frame in (("events", shop.events), ("users", shop.users), ("items", shop.items)):
        path = out_dir / f"{name}.{fmt}"
        if fmt == "parquet":
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
        else:
            _iso_timestamps(frame).to_csv(path, index=False)
        paths[name] = path
    return paths


def _iso_timestamps(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` with every UTC timestamp column as 'YYYY-MM-DDTHH:MM:SSZ' strings."""
    out = frame.copy()
    for col in frame.columns:
        if isinstance(frame[col].dtype, pd.DatetimeTZDtype):
            naive = frame[col].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
            out[col] = np.datetime_as_string(naive, unit="s", timezone="UTC").astype(object)
    return out


def make_ids(prefix: str, n: int, width: int) -> np.ndarray:
    """Zero-padded string ids, e.g. U0000042; wider only when n needs it (keeps sort order)."""
    width = max(width, len(str(n - 1)))
    return np.array([f"{prefix}{k:0{width}d}" for k in range(n)], dtype=object)


def _brand_names(rng: np.random.Generator, n: int) -> np.ndarray:
    """Distinct made-up brand names built from syllables."""
    a, b, c = _SYLLABLES
    combos = rng.choice(len(a) * len(b) * len(c), size=n, replace=False)
    i, rest = np.divmod(combos, len(b) * len(c))
    j, k = np.divmod(rest, len(c))
    return np.array([a[x] + b[y] + c[z] for x, y, z in zip(i, j, k)], dtype=object)


def utc_seconds(seconds: np.ndarray) -> pd.Series:
    """Unix seconds as a datetime64[ns, UTC] column."""
    return pd.Series(pd.to_datetime(np.asarray(seconds, np.int64), unit="s", utc=True))


def _hour_offsets(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds into a day in (0, 86400], following the daily activity curve."""
    hour = rng.choice(24, size=n, p=_HOUR_WEIGHT / _HOUR_WEIGHT.sum())
    return hour * 3600 + rng.integers(1, 3601, n)


def _draw_category(rng: np.random.Generator, users: _UserState, user: np.ndarray) -> np.ndarray:
    """A category per row, drawn from that row's user's preferences."""
    u = rng.random(len(user))
    cat = np.zeros(len(user), np.int64)
    for cum in users.pref_cum_t[:-1]:
        cat += u >= cum[user]
    return cat


def _group_first(sizes: np.ndarray) -> np.ndarray:
    """Marks the first row of each group of `sizes` consecutive rows."""
    first = np.zeros(int(sizes.sum()), bool)
    first[(np.cumsum(sizes) - sizes)[sizes > 0]] = True
    return first


def _group_cumsum(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Cumulative sum of `values` restarted at each group of `sizes` consecutive rows."""
    total = np.cumsum(values)
    nonempty = sizes > 0
    starts = (np.cumsum(sizes) - sizes)[nonempty]
    return total - np.repeat((total - values)[starts], sizes[nonempty])


def _price(items: _ItemState, item: np.ndarray, t: np.ndarray, start_s: int) -> np.ndarray:
    """Unit price at time t: list price less that week's promotion, in cents."""
    week = np.clip((t - start_s - 1) // DAY // 7, 0, items.discount.shape[1] - 1)
    return np.round(items.list_price[item] * (1.0 - items.discount[item, week]), 2)


def _median(items: _ItemState, item: np.ndarray) -> np.ndarray:
    return np.array([c.median_price for c in CATEGORIES])[items.category[item]]


def _cycle(items: _ItemState, item: np.ndarray) -> np.ndarray:
    return np.array([c.cycle_days for c in CATEGORIES])[items.category[item]]


def _churn_end(users: _UserState, user: np.ndarray, start_s: int) -> np.ndarray:
    """The time by which a churning user's activity has fallen to zero (inf for others)."""
    return start_s + (users.churn_day[user] + 7.0) * DAY


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
