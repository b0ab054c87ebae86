"""The models Persona trains: the name each is saved under in the BentoML model store and the
feature service that names its features. Training and serving both read this table."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    model_name: str
    feature_service: str


TASKS: dict[str, Task] = {
    "conversion": Task("conversion", "persona-conversion", "conversion_v1"),
    "propensity": Task("propensity", "persona-propensity", "propensity_v1"),
}
MODEL_TAG_ENV = "PERSONA_MODEL_TAG"  # pins the conversion model's version in the service


def resolve_tag(model_name: str, tag: str | None = None, env: str | None = None) -> str:
    """`tag`, else the variable `env`, else the latest version; a bare version gets the name."""
    tag = tag or (os.environ.get(env) if env else None) or f"{model_name}:latest"
    return tag if ":" in tag else f"{model_name}:{tag}"
