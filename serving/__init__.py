"""Online serving of Persona's models: Feast online features -> XGBoost -> a BentoML service.

Modules: `online` (pair matrices from the online store), `users` (user-keyed matrices and profiles),
`schemas` (request/response models), `scoring` (conversion scores and reasons), `profiles`
(propensity, churn risk, profile tags), `service` (the BentoML class), `run` (start it).
"""

from persona.core.catalog import MODEL_TAG_ENV, TASKS, resolve_tag

MODEL_NAME = TASKS["conversion"].model_name  # required: the service ranks with it
SERVICE_NAME = "persona"  # the BentoML service (and Bento) name
PROPENSITY_MODEL_NAME = TASKS["propensity"].model_name  # optional: /propensity is 503 without it
PROPENSITY_TAG_ENV = "PERSONA_PROPENSITY_TAG"  # pins its version; default the latest


def resolve_model_tag(tag: str | None = None) -> str:
    """The model to serve: `tag`, else PERSONA_MODEL_TAG, else the latest version; a bare
    version ("v1abc") gets the model name ("persona-conversion:v1abc")."""
    return resolve_tag(MODEL_NAME, tag, MODEL_TAG_ENV)


def resolve_propensity_tag(tag: str | None = None) -> str:
    """Like resolve_model_tag, for the propensity model and PERSONA_PROPENSITY_TAG."""
    return resolve_tag(PROPENSITY_MODEL_NAME, tag, PROPENSITY_TAG_ENV)
