"""The models Persona trains and the feature services they read: the name each model is saved
under in the BentoML model store and its feature service. Feature definitions, training and
serving all take the names from here."""

from __future__ import annotations

from dataclasses import dataclass

CONVERSION_SERVICE = "conversion_v1"
PROPENSITY_SERVICE = "propensity_v1"
# Version 2 adds the lifetime views, exact recency, the user x item history and categories.
CONVERSION_V2_SERVICE = "conversion_v2"
PROPENSITY_V2_SERVICE = "propensity_v2"
PROFILE_SERVICE = "user_profile_v1"  # a user's attributes and behaviour, for profiles and segments


@dataclass(frozen=True)
class ModelSpec:
    """One trained model: its task, its name in the model store, its feature service."""

    task: str
    model_name: str
    feature_service: str


MODELS: dict[str, ModelSpec] = {
    "conversion": ModelSpec("conversion", "persona-conversion", CONVERSION_SERVICE),
    "propensity": ModelSpec("propensity", "persona-propensity", PROPENSITY_SERVICE),
}


def resolve_tag(model_name: str, tag: str | None = None) -> str:
    """`tag`, else the latest version; a bare version ("v1abc") gets the model name."""
    tag = tag or f"{model_name}:latest"
    return tag if ":" in tag else f"{model_name}:{tag}"
