"""Load and an outage under load (issue 5): /rank (1 user, 50 candidates) on 2 workers with Redis.

1. Sustained: wrk at concurrency 8 for `--seconds` (60): the rate held, p50/p99, errors (goal 0).
2. Outage: the same load for `--seconds` while the Redis server is stopped once (its data saved
   to disk first) and started again `--down` seconds later on the same port. Every response is
   counted by status: failures must all be 503s with the service's JSON body, none a 500. A
   probe posting /rank every 20 ms records when the first failure came and when answers came
   back after Redis did: the recovery time, with no restart of the service.

    python -m bench.load [--seconds S] [--down D] [--quick]
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import httpx

from bench import wrk
from bench.common import row, work_dir, write_result
from bench.rank_http import CANDIDATES, WORKERS, server_peak_rss_mb
from bench.redis_local import RedisProcess
from bench.serving_world import prepare

NAME = "load"
CONNECTIONS = 8


class Probe(threading.Thread):
    """Posts one /rank every `every` seconds until stopped; keeps (time, status) of each."""

    def __init__(self, url: str, body: dict, every: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.url, self.body, self.every = url, body, every
        self.seen: list[tuple[float, int]] = []
        self.bodies_503: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10, trust_env=False) as client:
            while not self.halt.is_set():
                try:
                    reply = client.post("/rank", json=self.body)
                    status = reply.status_code
                    if status == 503 and len(self.bodies_503) < 3:
                        self.bodies_503.append(reply.text)
                except httpx.HTTPError:
                    status = 0
                self.seen.append((time.monotonic(), status))
                self.halt.wait(self.every)

    def recovery(self, back_at: float) -> dict:
        """First failure seen, and seconds from Redis answering again to the first 200."""
        failures = [t for t, status in self.seen if status != 200]
        after = [t for t, status in self.seen if t >= back_at and status == 200]
        return {"probe_requests": len(self.seen), "probe_failures": len(failures),
                "recovered_after_s": (after[0] - back_at) if after else None,
                "probe_statuses": sorted({status for _, status in self.seen})}


def outage(server_url: str, redis: RedisProcess, bodies: list[dict], seconds: float,
           down: float) -> dict:
    """wrk for `seconds`; Redis stopped a quarter of the way in, started `down` s later."""
    result: dict = {}
    load = threading.Thread(target=lambda: result.update(
        wrk.run(server_url, "/rank", bodies, seconds, CONNECTIONS)))
    probe = Probe(server_url, bodies[0])
    load.start()
    probe.start()
    time.sleep(seconds / 4)
    stopped_at = time.monotonic()
    redis.stop(keep_data=True)
    time.sleep(down)
    redis.start()
    back_at = time.monotonic()
    load.join()
    probe.halt.set()
    probe.join()
    return {**result, **probe.recovery(back_at), "redis_down_s": back_at - stopped_at,
            "example_503": probe.bodies_503[:1]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    parser.add_argument("--down", type=float, default=5.0, help="seconds Redis stays down")
    parser.add_argument("--quick", action="store_true", help="tiny shop, short phases (smoke)")
    parser.add_argument("--results", type=Path, default=None, help="directory for load.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.down = 4.0, 1.0
    from serving.run import start_server

    root = work_dir()
    world = prepare(root, quick=args.quick)
    bodies = world.bodies(CANDIDATES, seed=2)
    redis = RedisProcess(root / "redis-load")
    try:
        settings = world.on_redis(redis.start())
        with start_server(settings, model_tag=world.model_tag, workers=WORKERS) as server:
            wrk.run(server.url, "/rank", bodies, max(args.seconds / 10, 1), CONNECTIONS)  # warm-up
            steady = wrk.run(server.url, "/rank", bodies, args.seconds, CONNECTIONS)
            print(f"  sustained: {steady['requests_per_s']:.0f} req/s, p99 "
                  f"{steady['p99_ms']:.1f} ms, {steady['errors']} errors", flush=True)
            fault = outage(server.url, redis, bodies, args.seconds, args.down)
            print(f"  outage: statuses {fault['statuses']}, recovered after "
                  f"{fault['recovered_after_s']} s", flush=True)
            peak = server_peak_rss_mb(server.process.pid)
    finally:
        redis.stop()
    failed = sum(n for status, n in fault["statuses"].items() if status != "200")
    not_503 = sum(n for status, n in fault["statuses"].items()
                  if status not in ("200", "503")) + sum(
        fault[k] for k in ("errors_connect", "errors_read", "errors_write", "errors_timeout"))
    recovered = fault["recovered_after_s"]
    met = steady["errors"] == 0 and not_503 == 0 and recovered is not None
    table = [row(
        f"load: /rank {CANDIDATES} candidates, {WORKERS} workers, conc. {CONNECTIONS}, "
        f"{args.seconds:.0f} s; then Redis restarted under the same load",
        f"{steady['requests_per_s']:.0f} req/s held, p50 {steady['p50_ms']:.1f} ms, p99 "
        f"{steady['p99_ms']:.1f} ms, {steady['errors']} errors; restart: {failed} of "
        f"{fault['requests']} requests failed ({not_503} not 503), answers back "
        f"{recovered if recovered is None else f'{recovered:.2f}'} s after Redis",
        f"Redis down {fault['redis_down_s']:.1f} s", "-",
        "0 errors sustained; only 503s during the outage; recovery without restart", met,
        f"{peak:,.0f} MB (server + workers)")]
    payload = {
        "target": "Sustained /rank load with zero errors, then a Redis restart under load: "
                  "only 503s, recovery without a service restart",
        "parameters": {"seconds": args.seconds, "down": args.down, "connections": CONNECTIONS,
                       "workers": WORKERS, "candidates": CANDIDATES, "tool": "wrk"},
        "figures": {"sustained": steady, "outage": fault},
        "ratios": {"failed_share_during_outage_run": failed / max(fault["requests"], 1)},
        "met": met, "table": table, "server_peak_rss_mb": peak,
    }
    write_result(NAME, payload, args.results)
    return payload


if __name__ == "__main__":
    main()
