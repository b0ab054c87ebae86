"""`persona feast ARGS`: Feast's own CLI (`feast ui`, `feast feature-views list`, ...) on the
home and online store `persona` uses, without writing paths or Redis passwords anywhere.

The configuration is the one `persona apply` writes, with the online store of these settings,
in `<home>/.feast/feature_store.yaml`; the Redis connection goes through FEAST_REDIS_CONNECTION
in Feast's environment. `apply` and `plan` read the definitions from `feature_repo/`: run from
a home, Feast would find none there and delete every registered object. `ui` listens on
127.0.0.1 unless given `--host`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from persona.core.settings import FEAST_REDIS_CONNECTION, FEATURE_REPO, Settings
from persona.featurestore.config import redis_connection_string, store_yaml

NEEDS_DEFINITIONS = {"apply", "plan"}
LOOPBACK = ["--host", "127.0.0.1"]  # `feast ui` listens on every interface unless told


def run_feast(settings: Settings, args: Sequence[str]) -> NoReturn:
    """Replace this process with `feast ARGS` on the settings' home (so a signal to it reaches
    Feast, `feast ui` included)."""
    if not settings.registry_path.exists():
        raise FileNotFoundError(f"no registry in {settings.home}: run persona ingest (or "
                                "persona apply) first")
    extra = ({FEAST_REDIS_CONNECTION: redis_connection_string(settings.online_url)}
             if settings.online_url else {})
    config = settings.home / ".feast" / "feature_store.yaml"
    config.parent.mkdir(exist_ok=True)
    staging = config.with_suffix(".tmp")
    staging.write_text(store_yaml(settings))
    os.replace(staging, config)
    chdir = ["-c", str(FEATURE_REPO)] if NEEDS_DEFINITIONS & set(args[:1]) else []
    local = LOOPBACK if args[:1] == ["ui"] and not {"--host", "-h"} & set(args) else []
    program = str(Path(sys.executable).with_name("feast"))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(program, [program, *chdir, "-f", str(config), *args, *local],
              settings.environment(extra=extra))
