"""`persona apply`: register the definitions in feature_repo/definitions.py (idempotent).

The definitions hold no path of any home: their sources are relative to the offline store's
root, which the home's configuration sets. So `persona apply` and `feast apply` register the
same objects, and one registry's content does not depend on where the home lies.
"""

from __future__ import annotations

from feature_repo import definitions
from persona.core.settings import Settings
from persona.featurestore.config import feature_store, staged_registry, write_store_yaml


def apply_definitions(settings: Settings) -> list[str]:
    """Apply every object of the feature repo and write the home's `feature_store.yaml`;
    returns the registered feature view names. On a staged copy of the registry
    (`persona.featurestore.config.staged_registry`): a process killed mid-write leaves the old
    one whole. The caller holds the home's lock."""
    with staged_registry(settings) as store:
        store.apply(definitions.OBJECTS)
    write_store_yaml(settings)
    return sorted(fv.name for fv in feature_store(settings).list_feature_views())
