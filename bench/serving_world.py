"""What the serving benchmarks (scoring, rank_http, load) stand on: the demo's shop ingested, a
conversion model trained into a BentoML home of the benchmarks' own, and the features
materialized into a Redis the benchmark started.

Built once under the benchmarks' work directory and reused (the model store included); set
BENTOML_HOME before BentoML is first imported, which `prepare` does.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from persona.core.settings import Settings
from persona.jobs.demo import SHOP

QUICK_SHOP = {"n_users": 300, "n_items": 200, "days": 30, "seed": 7}
REQUESTS = 64  # distinct request bodies, cycled


@dataclass(frozen=True)
class ServingWorld:
    settings: Settings  # offline store and registry (SQLite online store, unused)
    model_tag: str
    warm_users: list[str]
    items: list[str]

    def on_redis(self, url: str) -> Settings:
        """The same store with `url` as its online store, materialized there in full."""
        from persona.jobs.materialize import materialize

        settings = Settings(home=self.settings.home, reports_dir=self.settings.reports_dir,
                            online_url=url)
        materialize(settings, full=True)
        return settings

    def bodies(self, candidates: int, seed: int = 0) -> list[dict]:
        """/rank request bodies: a warm user and `candidates` distinct random items each."""
        rng = np.random.default_rng(seed)
        count = min(candidates, len(self.items))
        return [{"user_id": str(rng.choice(self.warm_users)),
                 "item_ids": [str(i) for i in rng.choice(self.items, count, replace=False)]}
                for _ in range(REQUESTS)]


def prepare(root: Path, quick: bool = False) -> ServingWorld:
    """The world under `root` (built on the first call, then reused)."""
    from persona.data.locking import exclusive

    home = root / ("serving-quick" if quick else "serving")
    os.environ["BENTOML_HOME"] = str(home / "bentoml")
    settings = Settings(home=home, reports_dir=home / "reports")
    home.mkdir(parents=True, exist_ok=True)
    with exclusive(root / f"{home.name}.lock", wait_seconds=600):  # benchmarks run side by side
        return _load_or_build(settings, home / "world.json", quick)


def _load_or_build(settings: Settings, marker: Path, quick: bool) -> ServingWorld:
    if marker.exists():
        return ServingWorld(settings, **json.loads(marker.read_text()))
    from persona.jobs.ingest import ingest
    from persona.synthetic_shop import generate_shop, write_shop
    from training.pipeline import train

    shop = generate_shop(**(QUICK_SHOP if quick else SHOP))
    write_shop(shop, settings.home / "raw")
    ingest(settings, settings.home / "raw")
    tag = train(settings, task="conversion").tag
    events = shop.events
    last_week = events[events["event_timestamp"] >= events["event_timestamp"].max()
                       - np.timedelta64(7, "D")]
    saved = {"model_tag": tag,
             "warm_users": sorted(last_week["user_id"].astype(str).unique().tolist()),
             "items": sorted(shop.items["item_id"].astype(str).tolist())}
    marker.write_text(json.dumps(saved))
    return ServingWorld(settings, **saved)
