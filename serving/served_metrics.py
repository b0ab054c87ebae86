"""What `/metrics` says about what is served: the models (tag, task, the home and offline
version they were trained on) and, per feature view, the end of the last load into the online
store, so a dashboard can alert on a store that stopped being refreshed.

Gauges of prometheus_client, made in the worker (BentoML sets PROMETHEUS_MULTIPROC_DIR there,
after this module may have been imported) and left out of any registry: in BentoML's
multiprocess mode their values go to the shared files its /metrics collects from.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

MODEL_INFO = "persona_model_info"
LOADED_UNTIL = "persona_online_loaded_until_seconds"


class ServedMetrics:
    """The two gauges; `models` is set once at start-up, `loaded_until` on every refresh."""

    def __init__(self) -> None:
        from prometheus_client import Gauge  # noqa: PLC0415 (after the worker's set-up)

        self._models = Gauge(MODEL_INFO, "A model this service serves (value 1).",
                             ["task", "tag", "home", "offline_version"], registry=None,
                             multiprocess_mode="livemostrecent")
        self._loaded = Gauge(LOADED_UNTIL, "End of the last load of a feature view into the "
                             "online store (Unix seconds).", ["view"], registry=None,
                             multiprocess_mode="livemostrecent")

    def models(self, served: Mapping[str, tuple[str, Mapping[str, Any]]]) -> None:
        """`served`: task -> (tag, metadata)."""
        for task, (tag, metadata) in served.items():
            self._models.labels(task=task, tag=tag, home=str(metadata.get("home", "")),
                                offline_version=str(metadata.get("offline_version", ""))).set(1)

    def loaded_until(self, ends: Mapping[str, datetime]) -> None:
        for view, end in ends.items():
            self._loaded.labels(view=view).set(end.timestamp())
