"""Target 1: /rank over HTTP with 1 user and 50 candidates, Redis online store, 2 workers, against
the same server's no-op endpoint (/echo: the same request body parsed and validated, nothing
read or scored) measured in the same run.

wrk posts 64 different request bodies in turn. Each round runs, in rotating order, both endpoints
at concurrency 8 (throughput, p99) and at concurrency 1 (p50), after a warm-up of both. Goals:
/rank throughput >= 0.5x /echo's, p50 at concurrency 1 <= 2x /echo's, no errors. The target's
requests ask for every candidate with its reasons (the defaults); --top-k and --no-reasons
measure shorter answers (written elsewhere with --results: they are not the target's figures).

    python -m bench.rank_http [--rounds R] [--seconds S] [--quick] [--top-k K] [--no-reasons]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import psutil

from bench import wrk
from bench.common import interleaved, row, spread, stat, work_dir, write_result
from bench.redis_local import local_redis
from bench.serving_world import REQUESTS, prepare

NAME = "rank_http"
CANDIDATES = 50
WORKERS = 2
THROUGHPUT_GOAL, LATENCY_GOAL = 0.5, 2.0


def server_peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of the server and its workers, summed."""
    total = 0.0
    try:
        processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return total
    for process in processes:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) / 1024
    return total


def measure(rounds: int, seconds: float, quick: bool, answer: dict) -> tuple[dict, float]:
    """Figures per endpoint and concurrency, and the server's peak memory; `answer` is added to
    every request body (top_k, reasons)."""
    from serving.run import start_server

    root = work_dir()
    world = prepare(root, quick=quick)
    bodies = [{**body, **answer} for body in world.bodies(CANDIDATES, seed=1)]
    with local_redis(root / "redis-rank-http") as url:
        settings = world.on_redis(url)
        with start_server(settings, model_tag=world.model_tag, workers=WORKERS) as server:
            def load(path: str, connections: int, duration: float):
                return lambda: wrk.run(server.url, path, bodies, duration, connections)

            for path in ("/echo", "/rank"):
                wrk.run(server.url, path, bodies, max(seconds / 10, 1), 8)  # warm-up
            runs = interleaved(rounds, {
                "echo_c8": load("/echo", 8, seconds), "rank_c8": load("/rank", 8, seconds),
                "echo_c1": load("/echo", 1, seconds / 3), "rank_c1": load("/rank", 1, seconds / 3),
            })
            peak = server_peak_rss_mb(server.process.pid)
    figures = {name: {key: stat([r[key] for r in rs]) for key, value in rs[0].items()
                      if isinstance(value, int | float)} for name, rs in runs.items()}
    for name, rs in runs.items():
        figures[name]["statuses"] = [r["statuses"] for r in rs]
    return figures, peak


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.rank_http", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="length of each concurrency-8 run (concurrency 1: a third)")
    parser.add_argument("--quick", action="store_true", help="tiny shop, short runs (smoke test)")
    parser.add_argument("--results", type=Path, default=None, help="directory for rank_http.json")
    parser.add_argument("--top-k", type=int, default=None, help="requests' top_k (default: all)")
    parser.add_argument("--no-reasons", action="store_true", help="requests' reasons: false")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds = 1, 3.0
    answer = {"top_k": args.top_k} if args.top_k else {}
    if args.no_reasons:
        answer["reasons"] = False
    figures, peak = measure(args.rounds, args.seconds, args.quick, answer)
    throughput = (figures["rank_c8"]["requests_per_s"]["median"]
                  / figures["echo_c8"]["requests_per_s"]["median"])
    latency = figures["rank_c1"]["p50_ms"]["median"] / figures["echo_c1"]["p50_ms"]["median"]
    errors = int(sum(figures[name]["errors"]["max"] for name in figures))
    met = throughput >= THROUGHPUT_GOAL and latency <= LATENCY_GOAL and errors == 0
    rank8, echo8 = figures["rank_c8"], figures["echo_c8"]
    asked = "".join(f", {key} {value}" for key, value in answer.items())
    table = [row(
        f"1. /rank over HTTP, {CANDIDATES} candidates{asked}, {WORKERS} workers, Redis",
        f"{spread(rank8['requests_per_s'], 'req/s', 0)} at conc. 8 (p99 "
        f"{rank8['p99_ms']['median']:.1f} ms); p50 {spread(figures['rank_c1']['p50_ms'], 'ms')} "
        f"at conc. 1; {errors} errors",
        f"/echo no-op: {spread(echo8['requests_per_s'], 'req/s', 0)} (p99 "
        f"{echo8['p99_ms']['median']:.1f} ms); p50 {spread(figures['echo_c1']['p50_ms'], 'ms')}",
        f"throughput {throughput:.2f}x; p50 {latency:.2f}x",
        f">= {THROUGHPUT_GOAL}x throughput, <= {LATENCY_GOAL:g}x p50, 0 errors", met,
        f"{peak:,.0f} MB (server + workers)")]
    payload = {
        "target": "/rank (1 user, 50 items, Redis, 2 workers, concurrency 8, >= 30 s): "
                  "throughput >= 0.5x the no-op endpoint's, p50 at concurrency 1 <= 2x, 0 errors",
        "parameters": {"rounds": args.rounds, "seconds": args.seconds, "workers": WORKERS,
                       "candidates": CANDIDATES, "tool": "wrk", "bodies": REQUESTS,
                       "answer": answer},
        "figures": figures, "ratios": {"throughput": throughput, "p50": latency},
        "errors": errors, "met": met, "table": table, "server_peak_rss_mb": peak,
    }
    write_result(NAME, payload, args.results)
    return payload


if __name__ == "__main__":
    main()
