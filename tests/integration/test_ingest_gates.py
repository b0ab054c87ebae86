"""Ingest end to end with the real GE suites and Feast stores: bad batches are rejected whole and
leave the offline store, the registry and the online store exactly as they were."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from expectations.gate import DataQualityError
from persona.core.contract import ContractError
from persona.core.settings import FEATURE_REPO, Settings
from persona.data import offline
from persona.featurestore.config import feature_store
from persona.jobs.ingest import ingest
from persona.jobs.materialize import materialize
from persona.synthetic_shop import write_shop

pytestmark = pytest.mark.integration


def _online(settings: Settings, users: list[str]) -> pd.DataFrame:
    store = feature_store(settings)
    return store.get_online_features(features=store.get_feature_service("user_profile_v1"),
                                     entity_rows=[{"user_id": u} for u in users]).to_df()


def _corrupt(raw_dir: Path, target: Path, table: str, change) -> Path:
    shutil.copytree(raw_dir, target)
    frame = pd.read_parquet(target / f"{table}.parquet")
    change(frame).to_parquet(target / f"{table}.parquet", index=False)
    return target


def _negative_price(f):
    f.loc[3, "price"] = -1.0
    return f


def _unknown_user(f):
    f.loc[5, "user_id"] = "U9999999"
    return f


def _future(f):
    f.loc[0, "event_timestamp"] = pd.Timestamp("2099-01-01", tz="UTC")
    return f


def _bad_type(f):
    f.loc[2, "event_type"] = "wishlist"
    return f


def _repeated_id(f):
    f = f.assign(event_id=[f"e{i}" for i in range(len(f))])
    return pd.concat([f, f.iloc[[7]]], ignore_index=True)


def _no_category(f):
    return f.drop(columns=["category"])


BAD = {
    "negative price": ("events", _negative_price, DataQualityError, "price"),
    "unknown user": ("events", _unknown_user, DataQualityError, "U9999999"),
    "future timestamp": ("events", _future, DataQualityError, "event_timestamp"),
    "unknown event type": ("events", _bad_type, DataQualityError, "wishlist"),
    "repeated event id": ("events", _repeated_id, DataQualityError, "event_id"),
    "missing column": ("items", _no_category, ContractError, "category"),
}


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory: pytest.TempPathFactory, small_shop) -> Path:
    out = tmp_path_factory.mktemp("raw") / "raw"
    write_shop(small_shop, out)
    return out


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory, raw_dir: Path, small_shop):
    """One good ingest for the module; every rejected batch after it must leave it untouched."""
    home = tmp_path_factory.mktemp("home")
    settings = Settings(home=home, reports_dir=home / "reports")
    manifest = ingest(settings, raw_dir)
    materialize(settings)
    users = small_shop.events["user_id"].drop_duplicates().head(20).tolist()
    return settings, manifest, _online(settings, users), users


def test_good_batch_is_published_registered_and_validated(ingested) -> None:
    settings, manifest, online, _ = ingested
    store = feature_store(settings)
    assert {fv.name for fv in store.list_feature_views()} >= {
        "user_profile", "user_activity", "item_catalog", "item_popularity",
        "user_category_affinity"}
    assert store.get_feature_service("conversion_v1")
    assert all(v["success"] for v in manifest["validation"].values())
    assert set(manifest["validation"]) >= {"raw.events", "features.user_activity"}
    views = "user_activity__views_90d" if "user_activity__views_90d" in online else "views_90d"
    assert online[views].notna().any()


@pytest.mark.parametrize("case", list(BAD))
def test_bad_batch_rejected_whole(case: str, ingested, raw_dir: Path, tmp_path: Path) -> None:
    settings, manifest, online_before, users = ingested
    table, change, error, mentioned = BAD[case]
    registry_before = settings.registry_path.read_bytes()
    bad_dir = _corrupt(raw_dir, tmp_path / "bad", table, change)
    with pytest.raises(error) as caught:
        ingest(settings, bad_dir)
    assert mentioned in str(caught.value)
    if error is DataQualityError:
        assert caught.value.docs_path is not None and Path(caught.value.docs_path).exists()
    after = offline.current_manifest(settings.offline_root)
    assert (after["version"], after["data_hash"]) == (manifest["version"], manifest["data_hash"])
    assert offline.data_hash(settings.offline_current) == manifest["data_hash"]
    assert settings.registry_path.read_bytes() == registry_before
    pd.testing.assert_frame_equal(_online(settings, users), online_before)


def test_cli_rejects_with_message_and_exit_code(ingested, raw_dir: Path, tmp_path: Path) -> None:
    settings = ingested[0]
    bad_dir = _corrupt(raw_dir, tmp_path / "bad", "events", _negative_price)
    proc = subprocess.run([sys.executable, "-m", "persona.cli", "ingest", str(bad_dir),
                           "--home", str(settings.home)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert "expect_column_values_to_be_between" in out and "price" in out and "Data Docs" in out


def test_feast_cli_works_on_the_repo(ingested) -> None:
    """A Feast user's commands on Persona's repo, with the configuration `persona apply` wrote
    for this home: list views, materialize incrementally."""
    settings = ingested[0]
    feast = [str(Path(sys.executable).parent / "feast"), "--chdir", str(FEATURE_REPO),
             "-f", str(settings.store_yaml)]
    listed = subprocess.run([*feast, "feature-views", "list"], capture_output=True, text=True,
                            timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert all(view in listed.stdout
               for view in ("user_activity", "item_popularity", "user_category_affinity"))
    done = subprocess.run([*feast, "materialize-incremental", "2026-10-02T00:00:00"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "user_activity" in done.stdout
    end = feature_store(settings).get_feature_view("user_activity").most_recent_end_time
    assert end == pd.Timestamp("2026-10-02", tz="UTC")  # recorded in this home's registry
