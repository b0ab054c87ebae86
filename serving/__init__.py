"""Online serving of Persona's models: Feast online features -> XGBoost -> a BentoML service.

Modules: `online` (pair matrices from the online store), `users` (user-keyed matrices and profiles),
`schemas` (request/response models), `scoring` (conversion scores and reasons), `profiles`
(propensity, churn risk, profile tags), `service` (the BentoML class), `run` (start it).
Imports the libraries (`persona.core`, `persona.featurestore`, `persona.profiling`,
`training.explain`), never the jobs.
"""

from persona.core.catalog import MODELS, resolve_tag
from persona.core.settings import Settings

MODEL_NAME = MODELS["conversion"].model_name  # required: the service ranks with it
SERVICE_NAME = "persona"  # the BentoML service (and Bento) name
PROPENSITY_MODEL_NAME = MODELS["propensity"].model_name  # optional: /propensity is 503 without it


def resolve_model_tag(tag: str | None = None, settings: Settings | None = None) -> str:
    """The model to serve: `tag`, else the settings' model tag (PERSONA_MODEL_TAG), else the
    latest version; a bare version ("v1abc") gets the model name ("persona-conversion:v1abc")."""
    return resolve_tag(MODEL_NAME, tag or (settings or Settings.from_env()).model_tag)


def resolve_propensity_tag(tag: str | None = None, settings: Settings | None = None) -> str:
    """Like resolve_model_tag, for the propensity model and PERSONA_PROPENSITY_TAG."""
    return resolve_tag(PROPENSITY_MODEL_NAME,
                       tag or (settings or Settings.from_env()).propensity_tag)
