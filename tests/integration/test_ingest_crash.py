"""Crash-safe ingestion: a `persona ingest` killed with SIGKILL at any moment leaves the previous
good version or the new complete one, never a mix; the next run succeeds; two ingests at once
take turns through the lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from persona.core.settings import PROJECT_ROOT, Settings
from persona.data import offline
from persona.data.locking import BusyError, exclusive
from persona.featurestore.config import feature_store
from persona.jobs.ingest import ingest
from persona.synthetic_shop import generate_shop, write_shop

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path, Path]:
    root = tmp_path_factory.mktemp("crash")
    write_shop(generate_shop(300, 80, 30, seed=1), root / "first")
    write_shop(generate_shop(300, 80, 30, seed=2), root / "second")
    settings = Settings(home=root / "home", reports_dir=root / "reports")
    ingest(settings, root / "first")
    return settings, root / "first", root / "second"


def _consistent(settings: Settings, versions: set[str]) -> str:
    """The current version is complete: its files hash to its manifest, the registry reads."""
    manifest = offline.current_manifest(settings.offline_root)
    assert manifest is not None
    assert offline.data_hash(settings.offline_current) == manifest["data_hash"]
    views = {fv.name for fv in feature_store(settings).list_feature_views()}
    assert {"user_activity", "item_popularity"} <= views
    versions.add(manifest["version"])
    return manifest["version"]


def _ingest_cmd(settings: Settings, raw: Path) -> list[str]:
    return [sys.executable, "-m", "persona.cli", "ingest", str(raw), "--home", str(settings.home)]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STEP_DEADLINE = 600  # seconds for an ingest to reach a step on a busy 2-core machine


def _cpu_seconds(pid: int) -> float:
    """CPU time a process has used (user + system), from /proc: its progress, whatever the load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _docs_written_since(settings: Settings, started: float) -> bool:
    return settings.docs_dir.exists() and any(
        p.stat().st_mtime > started for p in settings.docs_dir.rglob("*") if p.is_file())


# Where a kill lands, by what the ingest has visibly reached (not by the time since it started,
# which on a busy machine is still the imports): its CPU time, the Data Docs its gates write, its
# staged offline version, its staged registry. (settings, process id, wall-clock start) -> bool
STEPS = {
    "importing": lambda settings, pid, started: _cpu_seconds(pid) >= 3.0,
    "validating": lambda settings, pid, started: _docs_written_since(settings, started),
    "publishing": lambda settings, pid, started: any(settings.offline_root.glob(".staging-*")),
    "registering": lambda settings, pid, started: any(settings.home.glob(".registry-*")),
}


def _kill_at(settings: Settings, proc: subprocess.Popen, step: str, started: float) -> None:
    """SIGKILL `proc` as soon as it has reached `step`; it must not have finished before."""
    reached = STEPS[step]
    deadline = time.monotonic() + STEP_DEADLINE
    try:
        while not reached(settings, proc.pid, started):
            assert proc.poll() is None, f"the ingest ended before {step}"
            assert time.monotonic() < deadline, f"no {step} after {STEP_DEADLINE} s"
            time.sleep(0.002)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)


# `persona ingest RAW --home HOME`, with RAW read from stdin once its imports are done (about
# 10 s of CPU, mostly Feast's): the runs killed after the imports are started together, so their
# imports overlap one another on a second core and the run killed while importing.
GATED_INGEST = ("import sys\n"
                "import expectations.gate, feature_repo.definitions, persona.jobs.ingest\n"
                "from persona.cli import app\n"
                "raw = sys.stdin.readline().strip()\n"
                "app(['ingest', raw, *sys.argv[1:]], prog_name='persona')\n")


def _gated_ingest(settings: Settings, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-c", GATED_INGEST, "--home", str(settings.home)],
                                cwd=PROJECT_ROOT, stdin=subprocess.PIPE, stdout=out,
                                stderr=subprocess.STDOUT, text=True)


def _go(proc: subprocess.Popen, raw: Path) -> float:
    """Let a gated ingest run on `raw`; returns the wall-clock time it was let go."""
    started = time.time()
    proc.stdin.write(f"{raw}\n")
    proc.stdin.close()
    return started


def test_sigkill_at_any_moment_leaves_old_or_new_complete_state(home, tmp_path: Path) -> None:
    settings, first, second = home
    seen: set[str] = set()
    before = _consistent(settings, seen)
    after_imports = [step for step in STEPS if step != "importing"]
    gated = [_gated_ingest(settings, tmp_path / f"{n}-{step}.log")
             for n, step in enumerate([*after_imports, "done"])]
    try:
        started = time.time()
        raw = second if len(seen) % 2 else first
        proc = subprocess.Popen(_ingest_cmd(settings, raw), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        _kill_at(settings, proc, "importing", started)
        _consistent(settings, seen)
        for n, (step, proc) in enumerate(zip(after_imports, gated)):
            raw = second if len(seen) % 2 else first
            try:
                _kill_at(settings, proc, step, _go(proc, raw))
            except (AssertionError, OSError) as exc:
                log = tmp_path / f"{n}-{step}.log"
                raise AssertionError(f"{exc}\n{log.read_text(errors='replace')[-3000:]}") from None
            _consistent(settings, seen)
        done = gated[-1]
        _go(done, second)
        assert done.wait(STEP_DEADLINE) == 0, (tmp_path / f"{len(after_imports)}-done.log"
                                               ).read_text(errors="replace")[-3000:]
    finally:
        for proc in gated:
            proc.kill()
            proc.wait()
    after = _consistent(settings, seen)
    assert after != before
    leftovers = [p.name for p in settings.offline_root.iterdir() if p.name.startswith(".")]
    assert leftovers == [] and len(list((settings.offline_root / "versions").iterdir())) <= 2
    assert not list(settings.home.glob(".registry-*"))


def test_a_second_writer_waits_then_fails_clearly(home) -> None:
    settings, first, _ = home
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with exclusive(settings.lock_path):
            held.set()
            release.wait(STEP_DEADLINE)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(STEP_DEADLINE)
        with pytest.raises(BusyError, match="another persona job"):
            ingest(settings, first, lock_wait=0.5)
    finally:
        release.set()
        holder.join()


def test_two_ingests_at_once_take_turns(home) -> None:
    settings, first, second = home
    procs = [subprocess.Popen(_ingest_cmd(settings, raw), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env={**os.environ})
             for raw in (first, second)]
    outputs = [p.communicate(timeout=STEP_DEADLINE)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    _consistent(settings, set())
