"""`python -m bench [NAME ...]` (or `make bench`): run benchmarks (default: all) and print the
Performance table.

A development tool, run from the project's checkout; it is not part of the installed product.
`run()` is the same thing for Python callers. Each benchmark is also `python -m bench.<name>`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from bench import NAMES
from bench.common import RESULTS, ROOT

app = typer.Typer(help="Run the performance benchmarks and print the README's Performance table.",
                  no_args_is_help=False, add_completion=False, pretty_exceptions_enable=False)


def run(names: list[str] | None = None, quick: bool = False) -> dict[str, dict]:
    """Run the named benchmarks in the given order (default: all), each in a process of its own
    (so one's memory does not count in the next one's peak) writing its
    bench/results/<name>.json; returns their results."""
    unknown = sorted(set(names or ()) - set(NAMES))
    if unknown:
        raise ValueError(f"unknown benchmarks: {', '.join(unknown)} (known: {', '.join(NAMES)})")
    # a quick run checks the scripts; its tiny figures must not replace the README's results
    directory = Path(tempfile.mkdtemp(prefix="persona-bench-quick-")) if quick else RESULTS
    results = {}
    for name in names or NAMES:
        args = ["--quick"] if quick else []
        subprocess.run([sys.executable, "-m", f"bench.{name}", *args, "--results", str(directory)],
                       cwd=ROOT, check=True)
        results[name] = json.loads((directory / f"{name}.json").read_text())
    return results


@app.callback(invoke_without_command=True)
def bench(
    names: Annotated[list[str] | None, typer.Argument(
        help=f"Benchmarks to run: {', '.join(NAMES)} (default: all).", show_default=False)] = None,
    quick: Annotated[bool, typer.Option(
        "--quick", help="Tiny sizes, one round: checks that the scripts run.")] = False,
) -> None:
    """Run the performance benchmarks (bench/): each measures its floor in the same run and writes
    bench/results/NAME.json; then print the Performance table."""
    from bench.table import main as table

    try:
        run(names, quick=quick)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if not quick:
        table([])
