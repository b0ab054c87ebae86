"""Every benchmark in bench/ runs end to end at tiny sizes and writes a well-formed result (no
timing assertions: this keeps the scripts working, it measures nothing)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench import NAMES, cli, table
from bench.common import ROOT

BENCH_TIMEOUT = 900  # seconds for one benchmark at its smallest size, on a busy 2-core machine
# the first test also waits for `runs`: every benchmark, one after the other
pytestmark = [pytest.mark.integration, pytest.mark.redis,
              pytest.mark.timeout(len(NAMES) * (BENCH_TIMEOUT + 60) + 60)]


@dataclass(frozen=True)
class Runs:
    """Every benchmark's output and exit code (None: stopped after BENCH_TIMEOUT), and the
    directory of their results."""

    outputs: dict[str, tuple[str, int | None]]
    results: Path

    def document(self, name: str) -> dict:
        """The result of benchmark `name`, which must have run to completion."""
        output, code = self.outputs[name]
        assert code == 0, f"bench.{name} exited with {code}:\n{output[-3000:]}"
        return json.loads((self.results / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """`python -m bench.<name> --quick` for every benchmark, one at a time (each starts servers,
    Redis and load generators of its own, and measures: side by side they would starve each
    other), into a temporary results and work directory. A failing benchmark fails its own
    tests, not the others'."""
    if shutil.which("redis-server") is None:
        pytest.skip("bench.materialize starts its own redis-server")
    root = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "PERSONA_BENCH_WORK": str(root / "work")}
    return Runs({name: _bench(name, root / "results", env) for name in NAMES}, root / "results")


def _bench(name: str, results: Path, env: dict[str, str]) -> tuple[str, int | None]:
    """Run one benchmark in a process group of its own; its output and exit code (None when it
    was still running after BENCH_TIMEOUT: then interrupted, so it stops what it started, and
    killed with its group if it does not end)."""
    process = subprocess.Popen(
        [sys.executable, "-m", f"bench.{name}", "--quick", "--results", str(results)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        output, _ = process.communicate(timeout=BENCH_TIMEOUT)
        return output, process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
        return f"still running after {BENCH_TIMEOUT} s\n{output}", None


@pytest.mark.parametrize("name", NAMES)
def test_result_is_complete(runs: Runs, name: str) -> None:
    document = runs.document(name)
    assert {"name", "date", "git", "machine", "parameters", "figures", "ratios", "met",
            "table"} <= set(document)
    assert document["machine"]["cpu_count"] >= 1 and document["git"]["revision"]
    for stat in _stats(document["figures"]):
        assert stat["min"] <= stat["median"] <= stat["max"] and len(stat["runs"]) >= 1
    assert document["table"]
    for line in document["table"]:
        assert "MB" in line["peak_rss"] and line["ratio"] and isinstance(line["met"], bool)


def _stats(figures: dict) -> list[dict]:
    """Every median/min/max figure, at any depth."""
    if "median" in figures:
        return [figures]
    return [s for value in figures.values() if isinstance(value, dict) for s in _stats(value)]


def test_retrieval_frames_are_identical_with_nulls_kept(runs: Runs) -> None:
    checked = runs.document("retrieval")["identical"]
    assert checked["rows"] == 3_000
    # rows before a user's first snapshot
    assert checked["rows_with_null_view"]["user_activity"] > 0


def test_materialize_reads_back_through_feast(runs: Runs) -> None:
    bulk = runs.document("materialize")["figures"]["bulk"]
    assert bulk["checked"]["median"] == 200 and bulk["keys"]["median"] == bulk["entities"]["median"]


def test_table_renders_every_result(runs: Runs) -> None:
    for name in NAMES:
        runs.document(name)  # every benchmark ran
    text = table.render(table.load(runs.results))
    lines = sum(len(result["table"]) for result in table.load(runs.results))
    assert text.count("\n| ") == lines >= len(NAMES)  # every result's lines under the header
    assert all(f"`{name}`" in text for name in NAMES)


def test_rank_http_compares_with_the_no_op_endpoint_and_has_no_errors(runs: Runs) -> None:
    document = runs.document("rank_http")
    figures = document["figures"]
    assert figures["rank_c8"]["requests"]["median"] > 0 < figures["echo_c8"]["requests"]["median"]
    assert document["errors"] == 0 and document["ratios"]["throughput"] > 0


def test_load_survives_a_redis_restart_with_only_503s(runs: Runs) -> None:
    """The short version of bench.load: a sustained run without errors, then Redis stopped and
    started under load: every failure a 503 with the service's JSON body, answers back after."""
    figures = runs.document("load")["figures"]
    steady, outage = figures["sustained"], figures["outage"]
    assert steady["errors"] == 0 and steady["requests"] > 0
    assert set(outage["statuses"]) <= {"200", "503"} and "503" in outage["statuses"]
    assert outage["recovered_after_s"] is not None
    assert "online store unavailable" in outage["example_503"][0]


def test_scoring_floor_and_persona_score_both_sizes(runs: Runs) -> None:
    document = runs.document("scoring")
    assert set(document["ratios"]) == {"50", "500"} and all(document["ratios"].values())


def test_cli_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown benchmarks: nope"):
        cli.run(["nope"])
