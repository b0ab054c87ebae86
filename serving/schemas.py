"""Request and response models of the Persona service; their descriptions become the OpenAPI docs.

Limits are enforced here, by Pydantic, so an oversized or malformed request is refused with a
4xx and a message before any feature is read.

Ids are opaque strings: any Unicode is accepted except control characters (C0, DEL and C1). No
real id carries one, and they are what log and terminal injection are made of; so an id with one
is refused with a 400 that says why instead of being looked up and answered as an unknown, cold
shopper or item.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints

MAX_RANK_ITEMS = 500
MAX_PREDICT_PAIRS = 1000
MAX_PROPENSITY_USERS = 1000
REASONS_PER_SCORE = 3

MAX_ID_CHARS = 256
ID_RULES = (f"1-{MAX_ID_CHARS} characters, no control characters: U+0000-U+001F and "
            "U+007F-U+009F are refused")

Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS,
                                      pattern=r"^[^\x00-\x1f\x7f-\x9f]*$"),
               Field(description=f"An id: {ID_RULES}.")]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class _Strict(BaseModel):
    """Unknown fields are refused, so a misspelt field name is an error instead of a default."""

    model_config = ConfigDict(extra="forbid")


class Reason(_Strict):
    feature: str = Field(
        description="A model input, by its Feast full feature name (view__feature).")
    value: float | None = Field(
        description="The input's value for this score; null when it was missing or is a "
                    "category.")
    category: str | None = Field(
        default=None,
        description="For a categorical input (a v2 model's attributes): its category; null when "
                    "missing or never seen in training. Absent for numeric inputs.")
    contribution: float = Field(
        description="The input's signed contribution (SHAP value) to the score's margin, in "
                    "log-odds: positive raises the probability, negative lowers it. All inputs' "
                    "contributions plus the model's bias sum to the margin."
    )


Reasons = Annotated[list[Reason], Field(
    description=f"The {REASONS_PER_SCORE} inputs that moved this score most (largest absolute "
                "contribution first).",
)]


UNKNOWN_ITEMS = ("rank", "last", "drop")
STALE_USER = Field(
    description="True when a behaviour row of the user in the online store is older than its "
                "view's TTL (the store was not loaded since): the user was scored with those "
                "values. `persona materialize` removes rows that expired by the end of its load, "
                "so this is true only when loads fall behind the clock.")


class RankRequest(_Strict):
    user_id: Id = Field(description=f"The shopper to rank items for ({ID_RULES}).")
    item_ids: list[Id] = Field(
        min_length=1,
        max_length=MAX_RANK_ITEMS,
        description=f"Candidate item ids, 1 to {MAX_RANK_ITEMS} ({ID_RULES}). Duplicates are "
                    "removed (the first occurrence is kept), so the response lists each item "
                    "once.",
    )
    top_k: StrictInt = Field(
        default=MAX_RANK_ITEMS, ge=1, le=MAX_RANK_ITEMS,
        description=f"Answer only the best `top_k` items (default {MAX_RANK_ITEMS}: every "
                    "candidate).")
    reasons: StrictBool = Field(
        default=True,
        description="Include each item's reasons (false: a much smaller answer for long lists).")
    unknown_items: Literal["rank", "last", "drop"] = Field(
        default="last",
        description="Candidates the catalogue does not know (`cold_item`): `last` (default) "
                    "ranks them after every known item, by their own probability; `rank` mixes "
                    "them in by probability (with no item features they can rank high); `drop` "
                    "leaves them out of the answer.")


class RankedItem(_Strict):
    item_id: str = Field(description="A candidate item id from the request.")
    probability: Probability = Field(
        description="Probability that a view of this item by the user converts to a purchase "
                    "within the conversion model's label horizon (7 days unless trained with "
                    "`--horizon`); the same quantity `/predict` calls `probability`."
    )
    score: Probability = Field(
        deprecated=True,
        description="Deprecated alias of `probability`, answered until the next release.")
    cold_item: bool = Field(
        description="True when the online store has no catalogue row for the item; it was "
                    "scored with its item features missing."
    )
    reasons: Reasons | None = Field(
        default=None, description="The reasons; left out when the request says `reasons: false`.")


class RankResponse(_Strict):
    user_id: str = Field(description="The shopper from the request.")
    model_tag: str = Field(description="BentoML tag of the model that produced the scores.")
    cold_user: bool = Field(
        description="True when the online store has no behaviour row for the user (new or "
                    "inactive shopper); items were scored with the user features missing."
    )
    stale_user: bool = STALE_USER
    items: list[RankedItem] = Field(
        description="Unique candidate items, highest probability first (unknown items placed as "
                    "`unknown_items` says), at most `top_k`.")


class Pair(_Strict):
    user_id: Id = Field(description=f"A shopper id ({ID_RULES}).")
    item_id: Id = Field(description=f"An item id ({ID_RULES}).")


class PredictRequest(_Strict):
    pairs: list[Pair] = Field(
        min_length=1,
        max_length=MAX_PREDICT_PAIRS,
        description=f"(user, item) pairs to score, 1 to {MAX_PREDICT_PAIRS}; answered in the "
                    "same order, duplicates included.",
    )


class Prediction(_Strict):
    user_id: str = Field(description="The shopper of the pair.")
    item_id: str = Field(description="The item of the pair.")
    probability: Probability = Field(
        description="Probability that a view converts to a purchase within "
                    "the conversion model's label horizon (7 days unless trained with `--horizon`)."
    )
    cold_user: bool = Field(
        description="True when the online store has no behaviour row for the user.")
    stale_user: bool = STALE_USER
    cold_item: bool = Field(
        description="True when the online store has no catalogue row for the item.")
    reasons: Reasons


class PredictResponse(_Strict):
    model_tag: str = Field(description="BentoML tag of the model that produced the probabilities.")
    predictions: list[Prediction] = Field(
        description="One prediction per requested pair, in order.")


class PropensityRequest(_Strict):
    user_ids: list[Id] = Field(
        min_length=1,
        max_length=MAX_PROPENSITY_USERS,
        description=f"Shopper ids, 1 to {MAX_PROPENSITY_USERS} ({ID_RULES}); "
                    "answered in the same order, duplicates included.",
    )


class UserPropensity(_Strict):
    user_id: str = Field(description="A shopper from the request.")
    propensity: Probability = Field(
        description="Probability that the shopper makes a purchase within the model's horizon "
                    "(`horizon_days`)."
    )
    churn_risk: Probability | None = Field(
        description="1 - propensity for a previously active shopper (one with a user_activity "
                    "row online); null for a cold shopper, who has nothing to churn from."
    )
    cold_user: bool = Field(
        description="True when the online store has no user_activity row for the shopper (new "
                    "or inactive); the propensity was computed with the features missing."
    )
    stale_user: bool = STALE_USER
    reasons: Reasons


class PropensityResponse(_Strict):
    model_tag: str = Field(description="BentoML tag of the propensity model.")
    horizon_days: float = Field(
        description="The model's horizon: propensity is P(purchase within this many days).")
    users: list[UserPropensity] = Field(description="One entry per requested id, in order.")


class ProfileRequest(_Strict):
    user_id: Id = Field(description=f"The shopper to describe ({ID_RULES}).")


FeatureValue = str | int | float | bool | None


class Freshness(_Strict):
    event_timestamp: datetime | None = Field(
        description="Snapshot time (UTC) of the view's row in the online store; null when the "
                    "store holds no row of this view for the shopper."
    )
    age_seconds: float | None = Field(
        description="Seconds from event_timestamp to the time of the request. A snapshot is "
                    "stamped at the end of its interval, so the newest can be slightly negative "
                    "while that interval is still open."
    )
    stale: bool | None = Field(
        description="True when the row is older than the view's TTL (its values, and the tags "
                    "computed from them, are out of date); null when there is no row or the "
                    "view has no TTL.")


class ProfileResponse(_Strict):
    user_id: str = Field(description="The shopper from the request.")
    cold_user: bool = Field(
        description="True when the online store has no user_activity row for the shopper.")
    features: dict[str, FeatureValue] = Field(
        description="The shopper's current user_profile attributes and user_activity features, "
                    "by short name; a view the store holds no row of is left out, so an "
                    "unknown shopper has none."
    )
    freshness: dict[str, Freshness] = Field(
        description="Per feature view of the profile: when its online row was written and how "
                    "old it is.")
    stale_views: list[str] = Field(
        description="The views whose row is stale (see `freshness`); when not empty, `tags` and "
                    "`segment` were computed from out-of-date values.")
    tags: list[str] = Field(
        description="Labels of the profile tags whose rules hold (feature_repo/profile_tags.yaml).")
    segment: str | None = Field(
        description="The first segment whose rule holds; null only if no segment rule does.")
    propensity: Probability | None = Field(
        description="Probability of a purchase within the propensity model's horizon; null when "
                    "no propensity model is served."
    )
    churn_risk: Probability | None = Field(
        description="1 - propensity for a previously active shopper; null for a cold shopper or "
                    "without a propensity model."
    )
    propensity_model_tag: str | None = Field(
        description="BentoML tag of the propensity model; null when none is served.")


MAX_RECOMMEND_K = 100
MAX_EXCLUDED_ITEMS = 1000


class RecommendContext(_Strict):
    category: Id = Field(  # optional, not nullable: leave it out for every category
        default=None,
        description="Only items of this category (a category page); the list may then be "
                    "shorter than k.")


class RecommendRequest(_Strict):
    user_id: Id = Field(description=f"The shopper to recommend items to ({ID_RULES}).")
    k: StrictInt = Field(default=10, ge=1, le=MAX_RECOMMEND_K,
                         description=f"How many items, 1 to {MAX_RECOMMEND_K}.")
    exclude_item_ids: list[Id] = Field(
        default_factory=list, max_length=MAX_EXCLUDED_ITEMS,
        description=f"Items not to recommend (in the basket, just shown), at most "
                    f"{MAX_EXCLUDED_ITEMS}.")
    context: RecommendContext = Field(default_factory=RecommendContext,
                                      description="Where the list shows.")


class RecommendedItem(_Strict):
    item_id: str
    score: Probability = Field(
        description="The calibrated probability that the shopper carts or buys the item within "
                    "the ranker's horizon (7 days).")
    relevance: float = Field(description="The ranker's own score, which orders the list.")
    source: str = Field(description="The generator that proposed the item first.")
    sources: list[str] = Field(description="Every generator whose list holds the item.")
    reasons: list[str] = Field(description="Why the item is here, in words.")


class RecommendResponse(_Strict):
    user_id: str
    items: list[RecommendedItem] = Field(description="Best first, after the business rules.")
    cold_user: bool = Field(
        description="True when retrieval has no list for the shopper: the popular items of "
                    "their region (or of the shop) were ranked instead.")
    model_tags: dict[str, str] = Field(
        description="The ranker's and the retrieval model's tags.")
