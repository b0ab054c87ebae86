"""Feast's own CLI on a Persona home that is not data/: the `feature_store.yaml` that `persona
ingest` (through `persona apply`) writes into the home names every path absolutely, so `cd
<home> && feast ...` and `feast -f <home>/feature_store.yaml ...` from anywhere list Persona's
views, materialize incrementally into the home's SQLite online store and serve the Feast UI.

One ingested home is shared by the module; its shop ends today, since Feast's first incremental
window starts at now less each view's TTL (two days for the behaviour views). Every `feast`
process runs in this process's environment less Feast's own overrides; the UI listens on a free
loopback port only."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest
from feast import FeatureView, OnDemandFeatureView
from homes import ingested_home
from worlds import PORT_TRIES

from feature_repo import definitions
from persona.core.settings import Settings
from persona.featurestore.config import feature_store
from persona.synthetic_shop import generate_shop
from serving.run import free_port

pytestmark = pytest.mark.integration

FEAST = str(Path(sys.executable).parent / "feast")
PERSONA = str(Path(sys.executable).parent / "persona")
CLI_TIMEOUT = 300  # seconds for one `feast` command on a busy 2-core machine
UI_START = 300.0  # seconds `feast ui` may take to answer on a busy 2-core machine
# Variables that would point the feast CLI at another configuration or repo than the one given.
FEAST_OVERRIDES = ("FEAST_FS_YAML_FILE_PATH", "FEATURE_STORE_YAML_BASE64",
                   "FEATURE_REPO_DIR_ENV_VAR")
VIEWS = sorted(o.name for o in definitions.OBJECTS
               if isinstance(o, FeatureView | OnDemandFeatureView))
BATCH_VIEWS = sorted(o.name for o in definitions.OBJECTS if isinstance(o, FeatureView))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return ingested_home(tmp_path_factory.mktemp("feast-cli"),
                         generate_shop(600, 150, 40, seed=5, end=today))


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in FEAST_OVERRIDES}


def feast(*args: str, cwd: Path) -> str:
    proc = subprocess.run([FEAST, *args], capture_output=True, text=True, cwd=cwd, env=_env(),
                          timeout=CLI_TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.parametrize("where", ["in the home", "elsewhere with -f", "persona feast"])
def test_feature_views_list_shows_persona_views(home: Settings, where: str,
                                                tmp_path: Path) -> None:
    if where == "in the home":
        out = feast("feature-views", "list", cwd=home.home)
    elif where == "persona feast":
        proc = subprocess.run([PERSONA, "feast", "--home", str(home.home), "feature-views",
                               "list"], capture_output=True, text=True, cwd=tmp_path, env=_env(),
                              timeout=CLI_TIMEOUT)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out = proc.stdout
    else:
        out = feast("-f", str(home.store_yaml), "feature-views", "list", cwd=tmp_path)
    listed = sorted({line.split()[0] for line in out.splitlines()[1:] if line.strip()})
    assert listed == VIEWS, out


def test_materialize_incremental_loads_the_home_online_store(home: Settings) -> None:
    end = datetime.now(UTC).replace(microsecond=0)
    feast("materialize-incremental", end.strftime("%Y-%m-%dT%H:%M:%S"), cwd=home.home)
    store = feature_store(home)
    for name in BATCH_VIEWS:  # recorded in this home's registry
        assert store.get_feature_view(name).most_recent_end_time == end, name
    activity = pd.read_parquet(home.offline_current / "user_activity")
    latest = activity[activity["event_timestamp"] == activity["event_timestamp"].max()]
    expected = latest.sort_values("user_id").head(5).reset_index(drop=True)
    features = [f.name for f in store.get_feature_view("user_activity").features]
    online = store.get_online_features(
        features=[f"user_activity:{f}" for f in features],
        entity_rows=[{"user_id": u} for u in expected["user_id"]],
    ).to_df()
    assert online["user_id"].tolist() == expected["user_id"].tolist()
    pd.testing.assert_frame_equal(online[features], expected[features], check_dtype=False)
    # A view without TTL: Feast's first incremental window starts 52 weeks before now (where
    # `persona materialize` starts at the epoch), so an item created before then is not loaded.
    items = pd.read_parquet(home.offline_current / "item_catalog").sort_values("event_timestamp")
    newest, oldest = items["item_id"].iloc[-1], items["item_id"].iloc[0]
    assert items["event_timestamp"].iloc[0] < end - timedelta(weeks=52)
    catalog = store.get_online_features(features=["item_catalog:category"],
                                        entity_rows=[{"item_id": newest}, {"item_id": oldest}])
    assert catalog.to_dict()["category"] == [items["category"].iloc[-1], None]


@contextmanager
def feast_ui(home: Settings, log: Path) -> Iterator[str]:
    """`persona feast ui` on the home, on a free port of loopback (its default host; started
    again when the port was taken before it bound it), answering GET / within UI_START; stopped
    when the block ends."""
    for attempt in range(PORT_TRIES):
        port = free_port()
        with open(log, "w") as out:
            proc = subprocess.Popen([PERSONA, "feast", "--home", str(home.home), "ui",
                                     "--port", str(port)], env=_env(), stdout=out,
                                    stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + UI_START
            with httpx.Client(timeout=10, trust_env=False) as client:
                while proc.poll() is None and time.monotonic() < deadline:
                    try:
                        if client.get(url + "/").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    time.sleep(0.25)
            if proc.poll() is None:
                assert time.monotonic() < deadline, f"not ready:\n{log.read_text()[-3000:]}"
                yield url
                return
            if "address already in use" not in log.read_text().lower() \
                    or attempt + 1 == PORT_TRIES:
                raise AssertionError(f"feast ui exited {proc.returncode}:\n"
                                     f"{log.read_text()[-3000:]}")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_feast_ui_serves_its_page_and_this_home_registry(home: Settings, tmp_path: Path) -> None:
    with feast_ui(home, tmp_path / "ui.log") as url, \
            httpx.Client(base_url=url, timeout=60, trust_env=False) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "<title>Feast Feature Store</title>" in page.text
        projects = client.get("/projects-list.json").json()["projects"]
        assert [p["id"] for p in projects] == ["persona"]
        views = client.get("/api/v1/feature_views", params={"project": "persona"})
        assert views.status_code == 200, views.text
        names = sorted(v["spec"]["name"] for v in views.json()["featureViews"])
        assert names == VIEWS
