"""`persona materialize` killed half-way, for real: a SIGKILL to the CLI process while it writes
to a `redis-server` this module starts. Every entity's view row is left whole (its old version or
its new one, never a mix: one HSET each), the registry records progress only for the views whose
write completed, and a rerun completes the load. A run that dies while Feast rewrites the registry
file leaves the registry readable.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import redis
from feast import FeatureStore, FeatureView
from feast.infra.registry.file import FileRegistryStore
from worlds import start_redis

from persona.core.schema import ALL_TABLES
from persona.core.settings import PROJECT_ROOT, Settings
from persona.data import offline
from persona.data.raw import RawTables
from persona.data.snapshots import compute_features
from persona.featurestore import online_state
from persona.featurestore.config import feature_store
from persona.featurestore.registry import apply_definitions
from persona.jobs.materialize import (
    TIMESTAMP,
    has_rows,
    last_snapshot,
    materialize,
    rows_expired,
    rows_to_load,
)

pytestmark = [pytest.mark.integration, pytest.mark.redis]

# `persona` with the bulk writer sending one row per pipelined batch: the same commands spread
# over ~1,500 round trips (about a second), so that a kill lands in the middle of a view. It
# imports first, then waits for a line on stdin: the test's own set-up runs meanwhile.
GATED_CLI = ("import functools, sys\n"
             "import expectations.gate, persona.jobs.materialize\n"
             "from persona.featurestore import redis_layout\n"
             "from persona.cli import app\n"
             "redis_layout.write_view = functools.partial(redis_layout.write_view, batch_rows=1)\n"
             "sys.stdin.readline()\n"
             "app(prog_name='persona')\n")


class Killed(BaseException):
    """Stands for a SIGKILL inside Feast's registry write (nothing may catch it)."""


@dataclass(frozen=True)
class Versions:
    """Per entity of one view: its row as of the first load (`old`) and its latest (`new`);
    the entities stale as of either load's end (`gone`: a load may have removed their row) and
    how many of `new` are still current at the end (`kept`: what a completed load shows)."""

    view: FeatureView
    old: pd.DataFrame
    new: pd.DataFrame
    gone: set[tuple]
    kept: int


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, small_shop) -> Settings:
    """An offline store and registry, nothing materialized (copy its home before writing)."""
    root = tmp_path_factory.mktemp("interrupt")
    settings = Settings(home=root / "home", reports_dir=root / "reports")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PERSONA_HOME", str(settings.home))
        raw = RawTables(small_shop.events, small_shop.users, small_shop.items, {})
        features = compute_features(raw, settings.snapshot_interval)
        offline.publish(settings.offline_root, features, {"source": __name__})
        apply_definitions(settings)
    return settings


def _copy(settings: Settings, home: Path, online_url: str | None = None) -> Settings:
    shutil.copytree(settings.home, home, symlinks=True)
    return Settings(home=home, reports_dir=settings.reports_dir, online_url=online_url)


def _loadable(settings: Settings) -> list:
    """The views a default run loads: those with rows (retrieval's lists have none here)."""
    return [fv for fv in feature_store(settings).list_feature_views()
            if has_rows(settings, fv.name)]


def _end(settings: Settings) -> datetime:
    """Where a default run stops: just after the last snapshot."""
    names = [fv.name for fv in _loadable(settings)]
    return last_snapshot(settings, names) + timedelta(seconds=1)


def _versions(settings: Settings, first_end: datetime, end: datetime) -> list[Versions]:
    """In registry order (the order materialize loads the views in)."""
    out = []
    for fv in _loadable(settings):
        keys = [c.name for c in fv.entity_columns]

        def stale(at: datetime, fv=fv, keys=keys) -> set[tuple]:
            table = rows_expired(settings, fv, at, None, True).to_pandas()
            return set(table[keys].itertuples(index=False, name=None))

        new = rows_to_load(settings, fv, first_end, end).to_pandas()
        expired = stale(end)
        kept = sum(key not in expired for key in new[keys].itertuples(index=False, name=None))
        out.append(Versions(fv, rows_to_load(settings, fv,
                                             *fv.materialization_intervals[0]).to_pandas(),
                            new, stale(first_end) | expired, kept))
    return out


def _online(store: FeatureStore, fv: FeatureView, entities: pd.DataFrame) -> pd.DataFrame:
    """Feast's read of `fv` for `entities`, with the view's stored timestamp (whole seconds) in
    `seconds`; every feature of a row must carry the same one."""
    names = [f.name for f in fv.features]
    online = store.get_online_features(
        features=[f"{fv.name}:{name}" for name in names],
        entity_rows=entities.to_dict("records"),
    ).to_df(include_event_timestamps=True)
    stamps = online[[f"{name}__ts" for name in names]]
    assert (stamps.nunique(axis=1) == 1).all(), f"{fv.name}: timestamps differ within a row"
    return online[[*entities.columns, *names]].assign(seconds=stamps.iloc[:, 0])


def _whole_rows(store: FeatureStore, versions: Versions) -> int:
    """Every entity's online row is exactly one of its offline versions: the one whose timestamp
    is stored (or none, for an entity the first load did not have or one a load removed as
    stale). Returns how many of the entities with a new version show it."""
    fv, names = versions.view, [f.name for f in versions.view.features]
    keys = [c.name for c in fv.entity_columns]
    offline_rows = pd.concat([versions.old, versions.new], ignore_index=True)
    offline_rows["seconds"] = offline_rows[TIMESTAMP].map(lambda t: int(t.timestamp()))
    online = _online(store, fv, offline_rows[keys].drop_duplicates(ignore_index=True))
    matched = online.merge(offline_rows, on=[*keys, "seconds"], how="left",
                           suffixes=("", "_offline"), indicator=True)
    key = matched[keys].apply(tuple, axis=1)
    absent_allowed = ~key.isin(versions.old[keys].apply(tuple, axis=1)) | key.isin(versions.gone)
    missing = (matched["_merge"] == "left_only") & ~((matched["seconds"] == 0) & absent_allowed)
    assert not missing.any(), f"{fv.name}: stored timestamps of no version:\n{matched[missing]}"
    found = matched[matched["_merge"] == "both"]
    for name in names:
        mine, theirs = found[name], found[f"{name}_offline"]
        same = (mine.isna() & theirs.isna()) | (mine.astype(object) == theirs.astype(object))
        assert same.all(), f"{fv.name}:{name}: {int((~same).sum())} rows mix versions"
    new = versions.new.assign(seconds=versions.new[TIMESTAMP].map(lambda t: int(t.timestamp())))
    return len(found.merge(new[[*keys, "seconds"]], on=[*keys, "seconds"]))


def _gated_cli(settings: Settings, log: Path) -> subprocess.Popen:
    """`persona materialize` into `settings`' Redis, waiting for a line on stdin to start."""
    command = [sys.executable, "-c", GATED_CLI, "materialize", "--home", str(settings.home),
               "--online", settings.online_url]
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=PROJECT_ROOT, stdin=subprocess.PIPE, stdout=out,
                                stderr=subprocess.STDOUT)


def _hsets(client: redis.Redis) -> int:
    """HSETs the server has run since it started."""
    return client.info("commandstats").get("cmdstat_hset", {}).get("calls", 0)


def _kill_during(cli: subprocess.Popen, url: str, target: Versions, before: int) -> int:
    """Let `cli` go and SIGKILL it once a third of `target`'s rows are written (`before` rows
    of earlier views first): Redis counts the HSETs. Returns its exit code."""
    client = redis.Redis.from_url(url)
    threshold = _hsets(client) + before + len(target.new) // 3
    cli.stdin.write(b"go\n")
    cli.stdin.close()
    deadline = time.monotonic() + 600  # the CLI may still be importing on a busy machine
    try:
        while cli.poll() is None and _hsets(client) < threshold and time.monotonic() < deadline:
            time.sleep(0.001)
    finally:
        cli.send_signal(signal.SIGKILL)
        client.close()
    return cli.wait(30)


def test_a_killed_materialization_leaves_whole_rows_and_a_rerun_completes_it(
        published: Settings, tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server binary")
    server = start_redis(tmp_path / "redis")
    settings = _copy(published, tmp_path / "home", server.url)
    cli = _gated_cli(settings, tmp_path / "killed.log")  # importing while the first load runs
    try:
        end = _end(settings)
        first_end = end - timedelta(days=2, hours=12)  # between two snapshots
        materialize(settings, end=first_end)  # the old version of every entity
        views = _versions(settings, first_end, end)
        target = max(range(len(views)), key=lambda i: len(views[i].new))
        written = sum(len(v.new) for v in views[:target])
        code = _kill_during(cli, settings.online_url, views[target], written)
        assert code == -signal.SIGKILL, (tmp_path / "killed.log").read_text(errors="replace")

        store = feature_store(settings)
        shown = {v.view.name: _whole_rows(store, v) for v in views}
        name = views[target].view.name
        assert 0 < shown[name] < len(views[target].new), f"the kill missed {name}: {shown}"
        assert all(shown[v.view.name] == v.kept for v in views[:target]), shown
        assert all(shown[v.view.name] == 0 for v in views[target + 1:]), shown
        recorded = {fv.name: fv.most_recent_end_time for fv in _loadable(settings)}
        assert recorded == {v.view.name: end if i < target else first_end
                            for i, v in enumerate(views)}  # progress only where writes ended
        assert online_state.loaded_until(store.config) == recorded  # the store's own record

        materialize(settings)  # the rerun
        store = feature_store(settings)
        assert {v.view.name: _whole_rows(store, v) for v in views} == {
            v.view.name: v.kept for v in views}
        assert all(fv.most_recent_end_time == end for fv in _loadable(settings))
    finally:
        cli.kill()
        cli.wait()
        server.stop()


def test_a_run_killed_while_recording_progress_leaves_the_registry_readable(
        published: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Feast rewrites its registry file in place (truncate, then write): the window a kill must
    not fall into. Here the registry write stops half-way."""
    settings = _copy(published, tmp_path / "home")  # SQLite: Feast's own materialization

    def dies_half_way(registry: FileRegistryStore, proto) -> None:
        data = proto.SerializeToString()
        with open(registry._filepath, "wb") as out:
            out.write(data[:len(data) // 2])
        raise Killed

    end = _end(settings)
    monkeypatch.setattr(FileRegistryStore, "_write_registry", dies_half_way)
    with pytest.raises(Killed):
        materialize(settings, end=end, views=["item_catalog"])
    monkeypatch.undo()
    views = feature_store(settings).list_feature_views()
    assert len(views) == len(ALL_TABLES)  # the registry reads whole
    assert all(fv.most_recent_end_time is None for fv in views)
    materialize(settings, end=end, views=["item_catalog"])
    assert feature_store(settings).get_feature_view("item_catalog").most_recent_end_time == end
