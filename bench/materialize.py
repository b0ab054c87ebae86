"""Target 4: materialization into Redis at >= 25,000 entities/s for 1,000,000 users, against
Feast's own materialization (run on a smaller sample: it manages a few thousand entities/s).

The offline store holds a synthetic user_activity table, generated directly from the view's
schema: every user has a snapshot on the last day and half of them one the day before too, so the
latest row has to be picked. Each round empties the Redis database and runs the whole
`persona.materialize.materialize(views=["user_activity"], full=True)` call in a fresh process:
reading the rows to load, the GE gate, writing, recording the interval in the registry. Persona's
bulk writer loads all the users, Feast's writer (`bulk=False`) the sample; the two alternate, the
order rotating between rounds, and each process reports its own peak memory. The bulk process then
reads a sample of users back through Feast's `get_online_features` and compares them with the
offline rows.

    python -m bench.materialize [--users N] [--feast-users N] [--rounds R] [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import interleaved, report, row, run_child, spread, stat, work_dir, write_result

NAME = "materialize"
VIEW = "user_activity"
GOAL = 25_000  # entities per second
LAST_DAY = datetime(2026, 9, 30, tzinfo=UTC)
CATEGORIES = ["books", "electronics", "fashion", "grocery", "home", "beauty", "sports", "toys"]


def synthetic_user_activity(users: int, seed: int = 0) -> pd.DataFrame:
    """One snapshot per user on LAST_DAY and, for half of them, one the day before; values drawn
    per the view's declared types and the gate's rules (counts >= 0, rates in [0, 1])."""
    from feast.types import Float64, Int64

    from feature_repo.definitions import user_activity

    rng = np.random.default_rng(seed)
    ids = np.char.add("U", np.char.zfill(np.arange(users).astype(str), 8)).astype(object)
    earlier = rng.random(users) < 0.5
    user_ids = np.concatenate([ids, ids[earlier]])
    rows = len(user_ids)
    stamps = np.concatenate([np.full(users, LAST_DAY),
                             np.full(earlier.sum(), LAST_DAY - timedelta(days=1))])
    frame = {"user_id": user_ids, "event_timestamp": pd.to_datetime(stamps, utc=True)}
    for field in user_activity.features:
        if field.dtype == Int64:
            frame[field.name] = rng.poisson(3.0, rows).astype(np.int64)
        elif field.dtype == Float64:
            values = rng.random(rows)
            if field.name == "days_since_last_purchase":
                values[rng.random(rows) < 0.3] = np.nan  # never bought: null
            frame[field.name] = values
        else:
            values = np.array(CATEGORIES, dtype=object)[rng.integers(0, len(CATEGORIES), rows)]
            values[rng.random(rows) < 0.05] = None
            frame[field.name] = values
    return pd.DataFrame(frame)


def prepare_home(users: int, root: Path) -> Path:
    """A Persona home whose offline store holds the synthetic table (built once, then reused)."""
    home = root / f"materialize-{users}u"
    if (home / "offline" / "current" / "manifest.json").exists():
        return home
    from persona.core.settings import Settings
    from persona.data import offline
    from persona.featurestore.registry import apply_definitions

    shutil.rmtree(home, ignore_errors=True)
    settings = Settings(home=home, reports_dir=root / "reports")
    frames = {VIEW: synthetic_user_activity(users)}
    offline.publish(settings.offline_root, frames, {"source": "bench.materialize"})
    apply_definitions(settings)
    return home


def worker(home: Path, url: str, bulk: bool, check: int) -> None:
    """One timed materialization into an emptied Redis database; prints its figures."""
    import redis

    from persona.core.settings import Settings
    from persona.jobs.materialize import materialize

    client = redis.Redis.from_url(url)
    client.flushdb()
    settings = Settings(home=home, reports_dir=home / "reports", online_url=url)
    marks: list[tuple[str, float]] = []
    busy = _redis_cpu(client)
    start = time.perf_counter()
    counts = materialize(settings, views=[VIEW], full=True, bulk=bulk,
                         on_step=lambda step: marks.append((step, time.perf_counter())))
    seconds = time.perf_counter() - start
    entities = counts[VIEW]
    steps = _step_seconds(marks, start + seconds)
    figures = {"seconds": seconds, "entities": entities, "entities_per_s": entities / seconds,
               "read_s": steps.get("reading the rows to load", 0.0),
               "gate_s": steps.get("validating the rows to load", 0.0),
               "write_s": sum(s for step, s in steps.items() if step.endswith(f"({VIEW})")),
               "redis_cpu_s": _redis_cpu(client) - busy,
               "keys": client.dbsize() - client.exists(*_bookkeeping_keys(settings))}
    if check:
        figures["checked"] = _check_readback(settings, check)
    report(figures)


def _bookkeeping_keys(settings) -> list[bytes | str]:
    """The keys of `persona materialize` that hold no entity: the version it bumps when done and
    the store's record of what it loaded."""
    from persona.featurestore import online_state, redis_layout
    from persona.featurestore.config import feature_store

    project = feature_store(settings).config.project
    return [redis_layout.version_key(project.encode()), online_state.record_key(project)]


def _redis_cpu(client) -> float:
    """CPU seconds the Redis server has used: how much of the write is Redis's own work."""
    info = client.info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


def _step_seconds(marks: list[tuple[str, float]], end: float) -> dict[str, float]:
    times = [t for _, t in marks] + [end]
    return {name: times[i + 1] - t for i, (name, t) in enumerate(marks)}


def _check_readback(settings, sample: int) -> int:
    """Feast's get_online_features for `sample` users equals their latest offline rows."""
    from persona.featurestore.config import feature_store
    from persona.jobs.materialize import rows_to_load

    store = feature_store(settings)
    fv = store.get_feature_view(VIEW)
    end = LAST_DAY + timedelta(seconds=1)
    latest = rows_to_load(settings, fv, end - fv.ttl, end).to_pandas()
    latest = latest.sample(n=min(sample, len(latest)), random_state=0).set_index("user_id")
    names = [f.name for f in fv.features]
    online = store.get_online_features(
        features=[f"{VIEW}:{name}" for name in names],
        entity_rows=[{"user_id": u} for u in latest.index]).to_df().set_index("user_id")
    expected, got = latest[names], online.loc[latest.index, names]
    for name in names:
        a, b = expected[name], got[name]
        same = (a.isna() & b.isna()) | (a.astype(object) == b.astype(object))
        if not same.all():
            raise AssertionError(f"{name}: online values differ from the offline rows")
    return len(latest)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.materialize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000_000,
                        help="users loaded by the bulk writer")
    parser.add_argument("--feast-users", type=int, default=100_000,
                        help="users loaded by Feast's writer")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round (smoke test)")
    parser.add_argument("--results", type=Path, default=None, help="directory for materialize.json")
    parser.add_argument("--worker", choices=["bulk", "feast"], help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    parser.add_argument("--check", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.home, args.redis, args.worker == "bulk", args.check)
        return {}
    if args.quick:
        args.users, args.feast_users, args.rounds = 2_000, 500, 1
    return run(args.users, args.feast_users, args.rounds, args.results)


def run(users: int, feast_users: int, rounds: int, results: Path | None) -> dict:
    from bench.redis_local import local_redis

    root = work_dir()
    print(f"materialize: offline stores of {users:,} and {feast_users:,} users under {root}")
    homes = {"bulk": prepare_home(users, root), "feast": prepare_home(feast_users, root)}
    with local_redis(root / "redis-materialize") as url:
        def contender(kind: str):
            command = [sys.executable, "-m", "bench.materialize", "--worker", kind,
                       "--home", str(homes[kind]), "--redis", url,
                       "--check", "200" if kind == "bulk" else "0"]
            return lambda: run_child(command)

        runs = interleaved(rounds, {"bulk": contender("bulk"), "feast": contender("feast")})
    figures = {kind: {key: stat([r[key] for r in rs]) for key, value in rs[0].items()
                      if isinstance(value, int | float)} for kind, rs in runs.items()}
    bulk, feast = figures["bulk"], figures["feast"]
    rate, feast_rate = bulk["entities_per_s"]["median"], feast["entities_per_s"]["median"]
    ratios = {"bulk_vs_goal": rate / GOAL, "bulk_vs_feast": rate / feast_rate}
    parts = {key: bulk[key]["median"] for key in ("read_s", "gate_s", "write_s", "redis_cpu_s")}
    table = [row(
        f"4. materialize {users:,} users into Redis",
        f"{spread(bulk['entities_per_s'], 'entities/s', 0)}; whole call "
        f"{bulk['seconds']['median']:.1f} s = read {parts['read_s']:.1f} + GE gate "
        f"{parts['gate_s']:.1f} + write {parts['write_s']:.1f} (Redis busy "
        f"{parts['redis_cpu_s']:.1f})",
        f"Feast's writer, {feast_users:,} users: {spread(feast['entities_per_s'], 'entities/s', 0)}"
        f" (peak {feast['peak_rss_mb']['max']:,.0f} MB)",
        f"{ratios['bulk_vs_feast']:.1f}x Feast; {ratios['bulk_vs_goal']:.2f}x goal",
        f">= {GOAL:,} entities/s", rate >= GOAL, f"{bulk['peak_rss_mb']['max']:,.0f} MB")]
    payload = {
        "target": "Materialization into Redis >= 25,000 entities/s for 1,000,000 users, "
                  "readable by Feast's get_online_features",
        "parameters": {"users": users, "feast_users": feast_users, "rounds": rounds, "view": VIEW},
        "figures": figures, "ratios": ratios, "met": rate >= GOAL, "table": table,
    }
    write_result(NAME, payload, results)
    return payload


if __name__ == "__main__":
    main()
