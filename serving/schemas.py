"""Request and response models of the Persona service; their descriptions become the OpenAPI docs.

Limits are enforced here, by Pydantic, so an oversized or malformed request is refused with a
4xx and a message before any feature is read.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_RANK_ITEMS = 500
MAX_PREDICT_PAIRS = 1000
REASONS_PER_SCORE = 3

Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class _Strict(BaseModel):
    """Unknown fields are refused, so a misspelt field name is an error instead of a default."""

    model_config = ConfigDict(extra="forbid")


class Reason(_Strict):
    feature: str = Field(
        description="A model input, by its Feast full feature name (view__feature).")
    value: float | None = Field(
        description="The input's value for this score; null when it was missing.")
    contribution: float = Field(
        description="The input's signed contribution (SHAP value) to the score's margin, in "
                    "log-odds: positive raises the probability, negative lowers it. All inputs' "
                    "contributions plus the model's bias sum to the margin."
    )


Reasons = Annotated[list[Reason], Field(
    description=f"The {REASONS_PER_SCORE} inputs that moved this score most (largest absolute "
                "contribution first).",
)]


class RankRequest(_Strict):
    user_id: Id = Field(description="The shopper to rank items for (1-256 characters).")
    item_ids: list[Id] = Field(
        min_length=1,
        max_length=MAX_RANK_ITEMS,
        description=f"Candidate item ids, 1 to {MAX_RANK_ITEMS}. Duplicates are removed (the "
                    "first occurrence is kept), so the response lists each item once.",
    )


class RankedItem(_Strict):
    item_id: str = Field(description="A candidate item id from the request.")
    score: Probability = Field(
        description="Probability that a view of this item by the user converts to a purchase "
                    "within 7 days."
    )
    cold_item: bool = Field(
        description="True when the online store has no catalogue row for the item; it was "
                    "scored with its item features missing."
    )
    reasons: Reasons


class RankResponse(_Strict):
    user_id: str = Field(description="The shopper from the request.")
    model_tag: str = Field(description="BentoML tag of the model that produced the scores.")
    cold_user: bool = Field(
        description="True when the online store has no behaviour row for the user (new or "
                    "inactive shopper); items were scored with the user features missing."
    )
    items: list[RankedItem] = Field(description="Unique candidate items, highest score first.")


class Pair(_Strict):
    user_id: Id = Field(description="A shopper id (1-256 characters).")
    item_id: Id = Field(description="An item id (1-256 characters).")


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
        description="Probability that a view converts to a purchase within 7 days."
    )
    cold_user: bool = Field(
        description="True when the online store has no behaviour row for the user.")
    cold_item: bool = Field(
        description="True when the online store has no catalogue row for the item.")
    reasons: Reasons


class PredictResponse(_Strict):
    model_tag: str = Field(description="BentoML tag of the model that produced the probabilities.")
    predictions: list[Prediction] = Field(
        description="One prediction per requested pair, in order.")

