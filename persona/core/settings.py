"""The one configuration path: every environment variable Persona reads is named and read here.

`Settings.from_env()` resolves them once into a frozen value that the rest of the code is given;
no other module reads `os.environ`. Paths are made absolute, so no command depends on the
directory it is run from. Secrets (the Redis URL and its password, API keys) come only from the
environment or the command line and are never written to disk. Two variables belong to libraries
that read them from the process environment when they load (OpenMP's wait policy, GX's
analytics): `library_defaults()` sets them, here and nowhere else; `environment()` builds the
environment of a child process (the BentoML server) from the settings.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FEATURE_REPO = PROJECT_ROOT / "feature_repo"
_INTERVAL = re.compile(r"^(\d+)([hd])$")

# Every variable, with what it sets (README, Configuration, shows this table).
HOME = "PERSONA_HOME"
REPORTS_DIR = "PERSONA_REPORTS_DIR"
REDIS_URL = "PERSONA_REDIS_URL"
SNAPSHOT_INTERVAL = "PERSONA_SNAPSHOT_INTERVAL"
PRIOR_STRENGTH = "PERSONA_PRIOR_STRENGTH"
MODEL_TAG = "PERSONA_MODEL_TAG"
PROPENSITY_TAG = "PERSONA_PROPENSITY_TAG"
API_KEYS = "PERSONA_API_KEYS"
ITEM_CACHE_SIZE = "PERSONA_ITEM_CACHE_SIZE"
ITEM_CACHE_SECONDS = "PERSONA_ITEM_CACHE_SECONDS"
BENTOML_HOME = "BENTOML_HOME"
FEAST_REDIS_CONNECTION = "FEAST_REDIS_CONNECTION"
OMP_WAIT_POLICY = "OMP_WAIT_POLICY"
GX_ANALYTICS = "GX_ANALYTICS_ENABLED"
VARIABLES: dict[str, str] = {
    HOME: "State directory: offline store, registry, SQLite online store, Data Docs "
          "(default `data/` of the project)",
    REPORTS_DIR: "Training reports (default `reports/` of the home)",
    REDIS_URL: "Online store `redis://[:password@]host:port[/db]` (or `rediss://`); "
               "unset: SQLite in the home",
    SNAPSHOT_INTERVAL: "Snapshot interval of `persona ingest`, e.g. `1d` (default) or `1h`",
    PRIOR_STRENGTH: "Pseudo-views `m` the lifetime conversion priors are shrunk towards the "
                    "shop's rate with, at `persona ingest` (default 20)",
    MODEL_TAG: "Conversion model version the service serves (default the latest)",
    PROPENSITY_TAG: "Propensity model version the service serves (default the latest)",
    API_KEYS: "Comma-separated API keys; when set, every route but probes, metrics and docs "
              "needs one",
    ITEM_CACHE_SIZE: "Items the service keeps between /rank requests (default 100000; 0 = off)",
    ITEM_CACHE_SECONDS: "Longest an item row is kept by the service (default 60)",
    BENTOML_HOME: "BentoML's home: the model store models are saved to and served from "
                  "(BentoML's default `~/bentoml`)",
    FEAST_REDIS_CONNECTION: "Read by the `feast` CLI through a home's `feature_store.yaml` "
                            "when its online store is Redis (Feast's `host:port,password=...`)",
    OMP_WAIT_POLICY: "OpenMP's wait policy; Persona sets `PASSIVE` unless it is set",
    GX_ANALYTICS: "Great Expectations' usage statistics; Persona sets `False` unless it is set",
}
DEFAULT_PRIOR_STRENGTH = 20.0
DEFAULT_ITEM_CACHE_SIZE = 100_000
DEFAULT_ITEM_CACHE_SECONDS = 60.0
# Read when the library loads, so only the process environment can set them: the active
# OpenMP wait policy made 2-core predictions 40x and training 5x slower on 2 cores.
LIBRARY_DEFAULTS = {OMP_WAIT_POLICY: "PASSIVE", GX_ANALYTICS: "False"}


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


def parse_prior_strength(text: str) -> float:
    """A positive number of pseudo-views; the default when empty."""
    if not text.strip():
        return DEFAULT_PRIOR_STRENGTH
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{PRIOR_STRENGTH}={text!r}: expected a positive number like 20")
    return value


def parse_api_keys(raw: str) -> tuple[str, ...]:
    """Comma-separated keys; () (authentication off) when empty. A value that holds no key at
    all (only commas and spaces) is a mistake, not "off"."""
    keys = tuple(key.strip() for key in raw.split(",") if key.strip())
    if raw.strip() and not keys:
        raise ValueError(f"{API_KEYS} is set but names no key")
    return keys


def library_defaults() -> None:
    """Set the library variables that are not set yet, before the libraries load."""
    for name, value in LIBRARY_DEFAULTS.items():
        os.environ.setdefault(name, value)


def openmp_wait_policy() -> str | None:
    """The wait policy OpenMP loaded (or will load) with in this process."""
    return os.environ.get(OMP_WAIT_POLICY)


@dataclass(frozen=True)
class Settings:
    """Resolved configuration for one Persona installation."""

    home: Path
    reports_dir: Path
    online_url: str | None = None
    snapshot_interval: timedelta = timedelta(days=1)
    prior_strength: float = DEFAULT_PRIOR_STRENGTH
    model_tag: str | None = None
    propensity_tag: str | None = None
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    item_cache_size: int = DEFAULT_ITEM_CACHE_SIZE
    item_cache_seconds: float = DEFAULT_ITEM_CACHE_SECONDS
    # None: BentoML's own (BENTOML_HOME of the process, else ~/bentoml)
    bentoml_home: Path | None = None

    @classmethod
    def from_env(cls, home: Path | None = None, online: str | None = None,
                 env: Mapping[str, str] | None = None) -> Settings:
        """Settings from arguments, then the variables of `env` (default this process's
        environment), then defaults under the project."""
        env = os.environ if env is None else env
        home = Path(home or env.get(HOME) or PROJECT_ROOT / "data").resolve()
        reports = env.get(REPORTS_DIR) or home / "reports"  # a home's reports describe its shop
        return cls(
            home=home,
            reports_dir=Path(reports).resolve(),
            online_url=online or env.get(REDIS_URL) or None,
            snapshot_interval=parse_interval(env.get(SNAPSHOT_INTERVAL, "1d")),
            prior_strength=parse_prior_strength(env.get(PRIOR_STRENGTH, "")),
            model_tag=env.get(MODEL_TAG) or None,
            propensity_tag=env.get(PROPENSITY_TAG) or None,
            api_keys=parse_api_keys(env.get(API_KEYS, "")),
            item_cache_size=int(env.get(ITEM_CACHE_SIZE, DEFAULT_ITEM_CACHE_SIZE)),
            item_cache_seconds=float(env.get(ITEM_CACHE_SECONDS, DEFAULT_ITEM_CACHE_SECONDS)),
            bentoml_home=Path(env[BENTOML_HOME]).expanduser() if env.get(BENTOML_HOME) else None,
        )

    def with_online(self, online: str | None) -> Settings:
        return replace(self, online_url=online) if online else self

    def environment(self, base: Mapping[str, str] | None = None,
                    extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a child process that must see these settings: `base` (default this
        process's environment) with every Persona variable set from the settings (or removed
        when unset, so none leaks in from `base`), the library defaults, then `extra`."""
        env = {**LIBRARY_DEFAULTS, **(os.environ if base is None else base)}
        if self.bentoml_home is not None:
            env[BENTOML_HOME] = str(self.bentoml_home)
        values = {
            HOME: str(self.home), REPORTS_DIR: str(self.reports_dir), REDIS_URL: self.online_url,
            SNAPSHOT_INTERVAL: _interval_text(self.snapshot_interval),
            PRIOR_STRENGTH: repr(self.prior_strength),
            MODEL_TAG: self.model_tag, PROPENSITY_TAG: self.propensity_tag,
            API_KEYS: ",".join(self.api_keys), ITEM_CACHE_SIZE: str(self.item_cache_size),
            ITEM_CACHE_SECONDS: str(self.item_cache_seconds),
        }
        for name, value in values.items():
            if value:
                env[name] = value
            else:
                env.pop(name, None)
        return {**env, **(extra or {})}

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
        """This home's Feast configuration for the `feast` CLI (written by `persona apply`)."""
        return self.home / "feature_store.yaml"

    @property
    def lock_path(self) -> Path:
        return self.home / ".persona.lock"


def _interval_text(interval: timedelta) -> str:
    hours = int(interval.total_seconds()) // 3600
    return f"{hours // 24}d" if hours % 24 == 0 else f"{hours}h"
