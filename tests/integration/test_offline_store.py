"""Persona's offline store (DuckDB with ASOF joins) answers `get_historical_features` exactly as
Feast's own DuckDB store does: same rows, same columns, same values, on-demand features
included, for entity rows before an entity's first snapshot (kept, with nulls), between
snapshots, after a view's TTL has run out, and for unknown entities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from feast import FeatureStore, RepoConfig

from persona.core.settings import FEATURE_REPO, Settings
from persona.data import offline
from persona.data.raw import RawTables
from persona.data.snapshots import compute_features
from persona.featurestore.config import repo_config
from persona.featurestore.registry import apply_definitions
from persona.synthetic_shop import Shop

pytestmark = pytest.mark.integration
KEYS = ["user_id", "item_id", "category", "event_timestamp"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, small_shop: Shop) -> Settings:
    root = tmp_path_factory.mktemp("offline-store")
    settings = Settings(home=root / "home", reports_dir=root / "reports")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PERSONA_HOME", str(settings.home))
        features = compute_features(
            RawTables(small_shop.events, small_shop.users, small_shop.items, {}),
            settings.snapshot_interval)
        offline.publish(settings.offline_root, features, {"source": "tests/test_offline_store.py"})
        apply_definitions(settings)
    return settings


def _feasts_duckdb_store(settings: Settings) -> FeatureStore:
    """The same repo and registry on Feast's own DuckDB offline store. The definitions' sources
    are relative to the offline store's root: Persona's store takes it from its `root` option,
    Feast's reads a relative parquet path from the working directory (see `_frame`)."""
    ours = repo_config(settings)
    config = RepoConfig(project=ours.project, provider="local",
                        registry=str(settings.registry_path),
                        online_store={"type": "sqlite", "path": str(settings.sqlite_path)},
                        offline_store={"type": "duckdb"}, entity_key_serialization_version=3,
                        repo_path=FEATURE_REPO)
    return FeatureStore(repo_path=str(FEATURE_REPO), config=config)


def _frame(store: FeatureStore, entity_rows: pd.DataFrame, service: str,
           cwd: Path | None = None) -> pd.DataFrame:
    """The service's point-in-time frame from `store`, read from working directory `cwd`."""
    with pytest.MonkeyPatch.context() as env:
        if cwd is not None:
            env.chdir(cwd)
        return store.get_historical_features(
            entity_df=entity_rows, features=store.get_feature_service(service),
            full_feature_names=True).to_df().sort_values(KEYS, ignore_index=True)


def _entity_rows(shop: Shop, rng: np.random.Generator, n: int = 3000) -> pd.DataFrame:
    """Random (user, item) pairs at times from before the shop's first day to well after its
    last (past every TTL), plus unknown users and items."""
    users = [*rng.choice(shop.users["user_id"], n - 20), *["no-such-user"] * 20]
    items = [*rng.choice(shop.items["item_id"], n - 20), *["no-such-item"] * 20]
    start = shop.events["event_timestamp"].min() - pd.Timedelta(days=5)
    span = (shop.events["event_timestamp"].max() + pd.Timedelta(days=10) - start).total_seconds()
    stamps = (start + pd.to_timedelta(rng.uniform(0, span, n), unit="s")).floor("s")
    category = shop.items.set_index("item_id")["category"]
    frame = pd.DataFrame({"user_id": users, "item_id": items, "event_timestamp": stamps})
    return frame.assign(category=frame["item_id"].map(category).fillna(""))


@pytest.mark.parametrize("service", ["conversion_v1", "propensity_v1"])
def test_asof_store_equals_feasts_duckdb_store(home: Settings, small_shop: Shop,
                                               service: str) -> None:
    ours = FeatureStore(repo_path=str(FEATURE_REPO), config=repo_config(home))
    assert type(ours._get_provider().offline_store).__name__ == "AsofDuckDBOfflineStore"
    feasts = _feasts_duckdb_store(home)
    entity_rows = _entity_rows(small_shop, np.random.default_rng(3))
    got = _frame(ours, entity_rows, service)
    want = _frame(feasts, entity_rows, service, cwd=home.offline_current)
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want) == len(entity_rows)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    behaviour = want["user_activity__views_1d"]
    assert behaviour.isna().sum() > 100  # rows before the user's first snapshot or past the TTL
    assert behaviour.notna().sum() > 100  # and rows with a live snapshot
