"""The models Persona trains and the feature services they read: the name each model is saved
under in the BentoML model store and its feature service. Feature definitions, training and
serving all take the names from here, and which stored model belongs to which home."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONVERSION_SERVICE = "conversion_v1"
PROPENSITY_SERVICE = "propensity_v1"
# Version 2 adds the lifetime views, exact recency, the user x item history and categories.
CONVERSION_V2_SERVICE = "conversion_v2"
PROPENSITY_V2_SERVICE = "propensity_v2"
# The recommendation ranker's features beside retrieval's (training/recommend_training.py).
RECOMMEND_SERVICE = "recommend_v1"
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
    "recommend": ModelSpec("recommend", "persona-recommend", RECOMMEND_SERVICE),
}
SCORED = ("conversion", "propensity")  # the tasks `persona score` and the /predict routes answer


def resolve_tag(model_name: str, tag: str | None = None) -> str:
    """`tag`, else the latest version; a bare version ("v1abc") gets the model name."""
    tag = tag or f"{model_name}:latest"
    return tag if ":" in tag else f"{model_name}:{tag}"


@dataclass(frozen=True)
class Home:
    """Where a model was trained: the home's path, and the id its offline store carries, which
    a copy of the home keeps (the same shop under another path)."""

    path: Path
    id: str | None = None

    def trained(self, metadata: Mapping[str, Any]) -> bool:
        """Was the model with this metadata trained on this home?"""
        if self.id and metadata.get("home_id"):
            return metadata["home_id"] == self.id
        return trained_on(metadata) == str(self.path)


class WrongHomeError(LookupError):
    """Models of the task exist, but none was trained on this home."""


def newest_for_home(models: Iterable[Any], home: Home, task: str) -> Any | None:
    """The newest of `models` (BentoML models of one task) trained on `home`, by the home its
    metadata records; None when there are none at all. Homes share one model store, and a
    model trained on another shop's features answers for the wrong shop, so when only other
    homes' models exist this is an error naming both homes."""
    newest_first = sorted(models, key=lambda m: m.info.creation_time, reverse=True)
    for model in newest_first:
        if home.trained(model.info.metadata):
            return model
    if not newest_first:
        return None
    other = newest_first[0]
    raise WrongHomeError(
        f"no {task} model was trained on home {home.path}; the latest, {other.tag}, was trained "
        f"on {trained_on(other.info.metadata) or 'a home it does not record'}: train one on this "
        f"home (persona train --task {task}) or pin that one with --model")


def trained_on(metadata: Mapping[str, Any]) -> str | None:
    """The home path a model's metadata says it was trained on (None for models saved before
    homes were recorded)."""
    home = metadata.get("home")
    return str(home) if home else None


def foreign_model_warning(tag: str, metadata: Mapping[str, Any], home: Home) -> str | None:
    """The warning a pinned model of another home deserves, or None when it is this home's."""
    if home.trained(metadata):
        return None
    return (f"model {tag} was trained on home {trained_on(metadata) or '(not recorded)'}, not "
            f"{home.path}; serving it because it was pinned")
