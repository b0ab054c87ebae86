"""A generated shop written as raw files and ingested into a fresh Persona home under `root`."""

from __future__ import annotations

from pathlib import Path

from persona.core.settings import Settings
from persona.jobs.ingest import ingest
from persona.synthetic_shop import Shop, write_shop


def ingested_home(root: Path, shop: Shop) -> Settings:
    write_shop(shop, root / "raw")
    settings = Settings(home=root / "home", reports_dir=root / "reports")
    ingest(settings, root / "raw")
    return settings
