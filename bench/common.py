"""What every benchmark shares: interleaved rounds, summaries, child processes with their own peak
memory, machine facts and the result file."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from statistics import median

from persona.core.settings import LIBRARY_DEFAULTS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
MARKER = "BENCH-RESULT "
PEAK_MARKER = "BENCH-PEAK "  # bench/peak.py's
_started: dict[str, float | None] = {"load": None}  # set when the timed rounds start


def work_dir() -> Path:
    """Cached inputs (generated shops, offline stores): $PERSONA_BENCH_WORK or bench/.work."""
    return Path(os.environ.get("PERSONA_BENCH_WORK") or ROOT / "bench" / ".work").resolve()


def stat(values: Sequence[float]) -> dict:
    """Median with min and max, and every run."""
    values = [float(v) for v in values]
    return {"median": median(values), "min": min(values), "max": max(values), "runs": values}


def interleaved(rounds: int, contenders: dict[str, Callable[[], dict]]) -> dict[str, list[dict]]:
    """Run every contender once per round, rotating who goes first, so a slow spell on a shared
    machine lands on all of them rather than on one."""
    _started["load"] = round(os.getloadavg()[0], 2)
    names = list(contenders)
    out: dict[str, list[dict]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            out[name].append(contenders[name]())
            print(f"  round {r + 1}/{rounds} {name}: {_brief(out[name][-1])}", flush=True)
    return out


def _brief(figures: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" for k, v in figures.items() if isinstance(v, int | float))


def run_child(args: Sequence[str], env: dict | None = None, timeout: float = 3600) -> dict:
    """Run a command to completion: its wall time, the JSON it printed after MARKER, if any, and
    the peak RSS of its largest process (its own or a descendant's it waited for), measured by
    `bench.peak` so that this process's own size does not count."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "bench.peak", *args], stdout=out,
                                   stderr=err, cwd=ROOT,
                                   env={**LIBRARY_DEFAULTS, **os.environ, **(env or {})})
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {process.returncode}:\n{stderr[-4000:]}")
    reported = [line[len(MARKER):] for line in stdout.splitlines() if line.startswith(MARKER)]
    figures = json.loads(reported[-1]) if reported else {}
    peaks = [line[len(PEAK_MARKER):] for line in stdout.splitlines()
             if line.startswith(PEAK_MARKER)]
    return {"wall_s": wall, **figures, "peak_rss_mb": json.loads(peaks[-1])["peak_rss_mb"]}


def report(figures: dict) -> None:
    """Print a child's figures for run_child (the last MARKER line wins)."""
    print(MARKER + json.dumps(figures), flush=True)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        # 1-minute load average when the timed rounds started and when they ended: on 2 cores,
        # anything above ~0.3 means other work shared the machine.
        "load_average": {"start": _started["load"], "end": round(os.getloadavg()[0], 2)},
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def git_revision() -> dict:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    # bench/results/ is what the benchmarks write, not a change to what they measure
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".",
                     ":(exclude)bench/results"))
    return {"revision": git("rev-parse", "HEAD"), "dirty": dirty}


def write_result(name: str, payload: dict, results_dir: Path | None = None) -> Path:
    """bench/results/<name>.json, with the date, machine and git revision; written aside, then
    renamed, so a reader never sees half a file."""
    directory = Path(results_dir or RESULTS)
    directory.mkdir(parents=True, exist_ok=True)
    document = {
        "name": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_revision(),
        "machine": machine(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        **payload,
    }
    path = directory / f"{name}.json"
    staging = path.with_suffix(".json.tmp")
    staging.write_text(json.dumps(document, indent=2, default=str) + "\n")
    os.replace(staging, path)
    print(f"wrote {path}")
    return path


def row(target: str, figure: str, baseline: str, ratio: str, goal: str, met: bool | None,
        peak_rss: str) -> dict:
    """One line of the README's Performance table (bench/table.py renders them)."""
    return {"target": target, "figure": figure, "baseline": baseline, "ratio": ratio, "goal": goal,
            "met": met, "peak_rss": peak_rss}


def spread(figure: dict, unit: str = "", digits: int = 2) -> str:
    """'median (min-max) unit' of a stat()."""
    f = f"{{:,.{digits}f}}"
    text = f"{f.format(figure['median'])} ({f.format(figure['min'])}-{f.format(figure['max'])})"
    return f"{text} {unit}".strip()
