"""`persona apply`: register the definitions in feature_repo/definitions.py (idempotent)."""

from __future__ import annotations

import os
import shutil
import uuid

from feast import FeatureView

from feature_repo import definitions
from persona.settings import Settings
from persona.store import feature_store


def apply_definitions(settings: Settings) -> list[str]:
    """Apply every object of the feature repo, its sources pointing at this installation's
    offline store; returns the registered feature view names.

    Feast rewrites its registry file in place, so a process killed mid-write would leave it
    truncated: apply works on a copy and swaps it in with one atomic rename."""
    for obj in definitions.OBJECTS:
        if isinstance(obj, FeatureView):
            obj.batch_source.file_options.uri = definitions.source_path(settings.offline_current, obj.name)
    staging = settings.registry_path.with_name(f".registry-{uuid.uuid4().hex[:8]}.db")
    try:
        if settings.registry_path.exists():
            shutil.copy2(settings.registry_path, staging)
        feature_store(settings, registry=staging).apply(definitions.OBJECTS)
        os.replace(staging, settings.registry_path)
    finally:
        staging.unlink(missing_ok=True)
    return sorted(fv.name for fv in feature_store(settings).list_feature_views())
