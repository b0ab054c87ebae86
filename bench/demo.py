"""Target 5, second half: `persona demo` (after install) in under 3 minutes.

Each round runs the whole `persona demo` in a fresh process with a fresh Persona home and
BentoML home (generate, ingest with the GE gates, train, materialize, start the service, rank
over HTTP, stop), on a free port. The floor, interleaved with it, is the same interpreter
importing the libraries the demo stands on (Feast, BentoML, XGBoost, Great Expectations, pandas):
the start-up cost no demo can avoid.

    python -m bench.demo [--rounds R] [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from bench.common import interleaved, row, run_child, spread, stat, write_result

NAME = "demo"
BUDGET_S = 180.0
QUICK_SIZE = ["--users", "300", "--items", "200", "--days", "36"]
IMPORTS = "import feast, bentoml, xgboost, great_expectations, pandas"


def _demo(size: list[str]):
    def run() -> dict:
        from serving.run import free_port

        scratch = Path(tempfile.mkdtemp(prefix="persona-bench-demo-"))
        try:
            return run_child(
                [sys.executable, "-m", "persona.cli", "demo", "--home", str(scratch / "home"),
                 "--port", str(free_port()), *size],
                env={"BENTOML_HOME": str(scratch / "bentoml"), "PERSONA_REDIS_URL": "",
                     "PERSONA_REPORTS_DIR": str(scratch / "reports")},
                timeout=600)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return run


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a tiny shop, one round (smoke)")
    parser.add_argument("--results", type=Path, default=None, help="directory for demo.json")
    args = parser.parse_args(argv)
    size = QUICK_SIZE if args.quick else []
    if args.quick:
        args.rounds = 1
    runs = interleaved(args.rounds, {
        "demo": _demo(size),
        "imports": lambda: run_child([sys.executable, "-c", IMPORTS]),
    })
    figures = {name: {key: stat([r[key] for r in rs]) for key in rs[0]}
               for name, rs in runs.items()}
    wall = figures["demo"]["wall_s"]["median"]
    table = [row(
        "5. `persona demo` end to end" + (" (tiny shop)" if args.quick else ""),
        f"{spread(figures['demo']['wall_s'], 's', 1)}",
        f"importing its libraries: {spread(figures['imports']['wall_s'], 's', 1)}",
        f"{wall / BUDGET_S:.2f}x budget; {wall / figures['imports']['wall_s']['median']:.1f}x "
        "floor", f"< {BUDGET_S:.0f} s", wall < BUDGET_S,
        f"{figures['demo']['peak_rss_mb']['max']:,.0f} MB (largest process)")]
    payload = {
        "target": "persona demo (after install) in under 3 minutes",
        "parameters": {"rounds": args.rounds, "shop": size or "persona demo's defaults"},
        "figures": figures, "ratios": {"budget": wall / BUDGET_S}, "met": wall < BUDGET_S,
        "table": table,
    }
    write_result(NAME, payload, args.results)
    return payload


if __name__ == "__main__":
    main()
