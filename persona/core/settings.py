"""Where Persona keeps its state and which online store it talks to.

Everything is resolved to absolute paths once, here, so no command depends on the directory it is
run from. Secrets (the Redis URL and its password) come only from the environment or the CLI.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FEATURE_REPO = PROJECT_ROOT / "feature_repo"
_INTERVAL = re.compile(r"^(\d+)([hd])$")


def parse_interval(text: str) -> timedelta:
    """'1d', '12h', '1h' -> timedelta; snapshots must divide a day evenly."""
    match = _INTERVAL.match(text.strip())
    if not match:
        raise ValueError(f"snapshot interval {text!r}: expected like '1d' or '1h'")
    count, unit = int(match.group(1)), match.group(2)
    interval = timedelta(days=count) if unit == "d" else timedelta(hours=count)
    if interval <= timedelta(0) or (interval < timedelta(days=1) and timedelta(days=1) % interval):
        raise ValueError(f"snapshot interval {text!r} must be whole days or divide a day")
    return interval


@dataclass(frozen=True)
class Settings:
    """Resolved configuration for one Persona installation."""

    home: Path
    reports_dir: Path
    online_url: str | None = None
    snapshot_interval: timedelta = timedelta(days=1)

    @classmethod
    def from_env(cls, home: Path | None = None, online: str | None = None) -> "Settings":
        """Settings from arguments, then PERSONA_* variables, then defaults under the project."""
        home = Path(home or os.environ.get("PERSONA_HOME") or PROJECT_ROOT / "data").resolve()
        reports = os.environ.get("PERSONA_REPORTS_DIR") or PROJECT_ROOT / "reports"
        online_url = online or os.environ.get("PERSONA_REDIS_URL") or None
        interval = parse_interval(os.environ.get("PERSONA_SNAPSHOT_INTERVAL", "1d"))
        return cls(home, Path(reports).resolve(), online_url, interval)

    def with_online(self, online: str | None) -> "Settings":
        return replace(self, online_url=online) if online else self

    @property
    def offline_root(self) -> Path:
        """Parent of the published offline versions; `current` points at the live one."""
        return self.home / "offline"

    @property
    def offline_current(self) -> Path:
        return self.offline_root / "current"

    @property
    def registry_path(self) -> Path:
        return self.home / "registry.db"

    @property
    def sqlite_path(self) -> Path:
        return self.home / "online_store.db"

    @property
    def docs_dir(self) -> Path:
        """Great Expectations Data Docs site."""
        return self.home / "data_docs"

    @property
    def store_yaml(self) -> Path:
        return self.home / "feature_store.yaml"

    @property
    def lock_path(self) -> Path:
        return self.home / ".persona.lock"
