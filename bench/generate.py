"""Target 5 (first half): `persona generate` for 100,000 users x 10,000 items x 90 days in under
60 s, timed as the CLI process end to end.

Two floors run in the same rounds, interleaved with it (the order rotates): the CLI's start-up
(`persona --help`: interpreter and imports) and rewriting the generated Parquet files with pyarrow
(reading and encoding the same bytes, no generation). A warm-up run writes the files first; every
round must write the same bytes again (same seed, same bytes).

    python -m bench.generate [--users N] [--items N] [--days N] [--rounds R] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import time
from pathlib import Path

from bench.common import interleaved, report, row, run_child, spread, stat, work_dir, write_result

NAME = "generate"
BUDGET_S = 60.0
PERSONA = str(Path(sys.executable).with_name("persona"))


def rewrite(directory: Path, into: Path) -> None:
    """The encoding floor: read every generated Parquet file and write it again."""
    import pyarrow.parquet as pq

    into.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for path in sorted(directory.glob("*.parquet")):
        pq.write_table(pq.read_table(path), into / path.name)
    report({"seconds": time.perf_counter() - start})


def digest(directory: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(directory.glob("*.parquet")):
        sha.update(path.name.encode())
        sha.update(path.read_bytes())
    return sha.hexdigest()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round (smoke test)")
    parser.add_argument("--results", type=Path, default=None, help="directory for generate.json")
    parser.add_argument("--rewrite", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rewrite:
        rewrite(*args.rewrite)
        return {}
    if args.quick:
        args.users, args.items, args.days, args.rounds = 500, 100, 10, 1
    return run(args.users, args.items, args.days, args.rounds, args.results)


def run(users: int, items: int, days: int, rounds: int, results: Path | None) -> dict:
    out = work_dir() / f"generate-{users}u-{items}i-{days}d"
    shutil.rmtree(out, ignore_errors=True)
    generate = [PERSONA, "generate", "--users", str(users), "--items", str(items),
                "--days", str(days), "--seed", "0", "--out", str(out)]
    print(f"generate: {users:,} users x {items:,} items x {days} days -> {out}")
    warm = run_child(generate)
    expected = digest(out)
    events = _events(out)

    def timed_generate() -> dict:
        done = run_child(generate)
        if digest(out) != expected:
            raise AssertionError("same seed, different bytes")
        return done

    runs = interleaved(rounds, {
        "generate": timed_generate,
        "startup": lambda: run_child([PERSONA, "--help"]),
        "rewrite": lambda: run_child([sys.executable, "-m", "bench.generate", "--rewrite",
                                      str(out), str(out.with_name(out.name + "-rewrite"))]),
    })
    figures = {
        "generate_s": stat([r["wall_s"] for r in runs["generate"]]),
        "startup_s": stat([r["wall_s"] for r in runs["startup"]]),
        "rewrite_s": stat([r["seconds"] for r in runs["rewrite"]]),
        "generate_peak_rss_mb": stat([r["peak_rss_mb"] for r in runs["generate"]]),
        "warm_up_s": warm["wall_s"],
        "events": events,
    }
    seconds = figures["generate_s"]["median"]
    ratios = {"generate_vs_budget": seconds / BUDGET_S,
              "generate_vs_startup_plus_rewrite": seconds / (figures["startup_s"]["median"]
                                                             + figures["rewrite_s"]["median"])}
    table = [row(
        f"5. `persona generate` {users:,} x {items:,} x {days} days",
        f"{spread(figures['generate_s'], 's', 1)} end to end ({events:,} events)",
        f"CLI start-up {figures['startup_s']['median']:.1f} s + Parquet rewrite "
        f"{figures['rewrite_s']['median']:.1f} s",
        f"{ratios['generate_vs_budget']:.2f}x budget; "
        f"{ratios['generate_vs_startup_plus_rewrite']:.1f}x floors",
        f"< {BUDGET_S:.0f} s", seconds < BUDGET_S,
        f"{figures['generate_peak_rss_mb']['max']:,.0f} MB")]
    payload = {
        "target": "persona generate 100,000 users x 10,000 items x 90 days in under 60 s",
        "parameters": {"users": users, "items": items, "days": days, "rounds": rounds},
        "figures": figures, "ratios": ratios, "met": seconds < BUDGET_S, "table": table,
    }
    write_result(NAME, payload, results)
    return payload


def _events(directory: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(directory / "events.parquet").metadata.num_rows


if __name__ == "__main__":
    main()
