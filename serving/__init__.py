"""Online serving of the conversion model: Feast online features -> XGBoost -> a BentoML service.

Modules: `online` (feature matrix from the online store), `schemas` (request/response models),
`scoring` (features + booster -> responses), `service` (the BentoML class), `run` (start it).
"""

import os

MODEL_NAME = "persona-conversion"  # the name training/model_store.py saves the model under
MODEL_TAG_ENV = "PERSONA_MODEL_TAG"  # pins a model version; default f"{MODEL_NAME}:latest"
SERVICE_NAME = "persona"  # the BentoML service (and Bento) name


def resolve_model_tag(tag: str | None = None) -> str:
    """The model to serve: `tag`, else PERSONA_MODEL_TAG, else the latest version; a bare
    version ("v1abc") gets the model name ("persona-conversion:v1abc")."""
    tag = tag or os.environ.get(MODEL_TAG_ENV) or f"{MODEL_NAME}:latest"
    return tag if ":" in tag else f"{MODEL_NAME}:{tag}"
