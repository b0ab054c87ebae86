"""`persona apply`: register the definitions in feature_repo/definitions.py (idempotent)."""

from __future__ import annotations

from feast import FeatureView

from feature_repo import definitions
from persona.core.settings import Settings
from persona.featurestore.config import feature_store, staged_registry


def apply_definitions(settings: Settings) -> list[str]:
    """Apply every object of the feature repo, its sources pointing at this installation's
    offline store; returns the registered feature view names. On a staged copy of the registry
    (`persona.featurestore.config.staged_registry`): a process killed mid-write leaves the old one whole. The
    caller holds the home's lock."""
    for obj in definitions.OBJECTS:
        if isinstance(obj, FeatureView):
            obj.batch_source.file_options.uri = definitions.source_path(settings.offline_current, obj.name)
    with staged_registry(settings) as store:
        store.apply(definitions.OBJECTS)
    return sorted(fv.name for fv in feature_store(settings).list_feature_views())
