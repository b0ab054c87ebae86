"""Target 3: training-set retrieval through Feast's `get_historical_features` (Persona's offline
store: Feast's DuckDB store with ASOF joins, persona/featurestore/offline_store.py) for
1,000,000 entity rows at most 1.5x a hand-written DuckDB ASOF JOIN over the same Parquet files,
with identical values on every row.

Features: every feature of user_activity, item_popularity and item_catalog, the three views of
conversion_v1 that join on the (user, item, timestamp) rows themselves, taken from the registry
(conversion_v1 also needs a category column for user_category_affinity and an on-demand view).
The offline store is a generated shop (100,000 users x 10,000 items x 90 days by default) after
Persona's snapshot computation; the entity rows are a sample of the shop's view events, so rows on
a user's first active day fall before any snapshot of that user and must come back with nulls.

The floor, `ASOF LEFT JOIN` per view with each view's TTL applied afterwards (a row older than
t - ttl is the only candidate, so nulling it equals Feast's window), runs in its own process like
Feast, interleaved with it, the order rotating. Each process reads the entity rows into pandas
first (untimed), then times the join into a pandas frame ("join"); the whole process (interpreter,
imports, store, join) is timed from outside, and each reports its own peak RSS. One untimed run of
each before the rounds saves its frame, and the two are compared on every row and value. With
--profile (by default when Feast is over the goal), one more Feast run records cProfile and
DuckDB's per-operator profile (operator times are CPU summed over DuckDB's threads).

    python -m bench.retrieval [--rows N] [--users N] [--items N] [--days N] [--rounds R] [--quick]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import interleaved, report, row, run_child, spread, stat, work_dir, write_result

NAME = "retrieval"
VIEWS = ("user_activity", "item_popularity", "item_catalog")
GOAL = 1.5


# --- preparation (once, cached under the work directory) ----------------------------------------

def prepare(shop_dir: Path, users: int, items: int, days: int, rows: int) -> tuple[Path, Path]:
    """An offline store + registry of the generated shop, `rows` entity rows sampled from its view
    events (row_id, user_id, item_id, event_timestamp) and the floor's SQL (asof.sql)."""
    home = shop_dir / "home"
    entities = shop_dir / f"entities-{rows}.parquet"
    if not (home / "offline" / "current" / "manifest.json").exists():
        _build_store(home, users, items, days)
    if not entities.exists():
        _sample_entities(home, entities, rows)
    (shop_dir / "asof.sql").write_text(_floor_query(home))
    return home, entities


def _build_store(home: Path, users: int, items: int, days: int) -> None:
    from persona.core.settings import Settings
    from persona.data import offline
    from persona.data.raw import RawTables
    from persona.data.snapshots import compute_features
    from persona.featurestore.registry import apply_definitions
    from persona.synthetic_shop import generate_shop

    settings = Settings(home=home, reports_dir=home / "reports")
    shop = generate_shop(users, items, days, seed=0)
    features = compute_features(RawTables(shop.events, shop.users, shop.items, {}))
    offline.publish(settings.offline_root, features, {"source": "bench.retrieval"})
    apply_definitions(settings)
    views = shop.events[shop.events["event_type"] == "view"]
    views[["user_id", "item_id", "event_timestamp"]].to_parquet(home.parent / "view-events.parquet")


def _sample_entities(home: Path, out: Path, rows: int) -> None:
    views = pd.read_parquet(home.parent / "view-events.parquet")
    sample = views.sample(n=rows, replace=rows > len(views), random_state=0)
    sample = sample.sort_values("event_timestamp", kind="stable").reset_index(drop=True)
    sample.insert(0, "row_id", np.arange(len(sample), dtype=np.int64))
    sample["event_timestamp"] = pd.to_datetime(sample["event_timestamp"], utc=True)
    sample.to_parquet(out, index=False)


# --- the two contenders (each in its own process) -----------------------------------------------

def feast_worker(home: Path, entities: Path, out: Path | None, profile: Path | None) -> None:
    """Feast's get_historical_features on Persona's offline store, to a pandas frame."""
    begin = time.perf_counter()
    from persona.core.settings import Settings
    from persona.featurestore.config import feature_store

    imported = time.perf_counter()
    store = feature_store(Settings(home=home, reports_dir=home / "reports"))
    refs = _feature_refs(store)
    opened = time.perf_counter()
    entity_df = pd.read_parquet(entities)
    stages = {"import_s": imported - begin, "store_s": opened - imported,
              "entities_s": time.perf_counter() - opened}
    profiler = cProfile.Profile() if profile else None
    if profile:
        _duckdb_profiling(profile.with_suffix(".duckdb.json"))
        profiler.enable()
    start = time.perf_counter()
    job = store.get_historical_features(entity_df=entity_df, features=refs,
                                        full_feature_names=True)
    planned = time.perf_counter()
    frame = job.to_df()
    done = time.perf_counter()
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    if out:
        frame.to_parquet(out, index=False)
    report({"join_s": done - start, "plan_s": planned - start, "execute_s": done - planned,
            **stages, "rows": len(frame)})


def duckdb_worker(query: Path, entities: Path, out: Path | None) -> None:
    """The floor: the hand-written ASOF JOINs (written out by the parent: this process needs
    neither Feast nor Persona, as a hand-written job would not)."""
    import duckdb

    begin = time.perf_counter()
    query = query.read_text()
    entity_df = pd.read_parquet(entities)
    start = time.perf_counter()
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.register("entity_df", entity_df)
        frame = con.execute(query).df()
    seconds = time.perf_counter() - start
    if out:
        frame.to_parquet(out, index=False)
    report({"join_s": seconds, "entities_s": start - begin, "rows": len(frame)})


def _feature_refs(store) -> list[str]:
    return [f"{view}:{f.name}" for view in VIEWS for f in store.get_feature_view(view).features]


def asof_query(store, offline_current: Path) -> str:
    """Entity rows ASOF LEFT JOIN each view on its join key and timestamp <= the row's; a match
    older than the view's TTL is nulled. Column names as Feast's full_feature_names."""
    joins, columns = [], []
    for i, view in enumerate(VIEWS):
        fv = store.get_feature_view(view)
        (key,) = [c.name for c in fv.entity_columns]
        names = [f.name for f in fv.features]
        glob = offline_current / view / "**" / "*.parquet"
        selected = ", ".join(f'"{n}" AS "{view}__{n}"' for n in names)
        joins.append(
            f"ASOF LEFT JOIN (SELECT {key} AS k{i}, event_timestamp AS ts{i}, {selected} "
            f"FROM read_parquet('{glob}', hive_partitioning = false)) v{i} "
            f"ON e.{key} = v{i}.k{i} AND e.event_timestamp >= v{i}.ts{i}")
        ttl = int(fv.ttl.total_seconds()) if fv.ttl else 0
        for n in names:
            column = f'v{i}."{view}__{n}"'
            if ttl:
                column = (f"CASE WHEN v{i}.ts{i} >= e.event_timestamp - INTERVAL {ttl} SECOND "
                          f"THEN {column} END")
            columns.append(f'{column} AS "{view}__{n}"')
    return f"SELECT e.*, {', '.join(columns)} FROM entity_df e {' '.join(joins)}"


def _floor_query(home: Path) -> str:
    from persona.core.settings import Settings
    from persona.featurestore.config import feature_store

    settings = Settings(home=home, reports_dir=home / "reports")
    return asof_query(feature_store(settings), settings.offline_current)


def _duckdb_profiling(path: Path) -> None:
    """Make the DuckDB connection ibis (and so Feast) uses write a JSON per-operator profile."""
    import ibis

    con = ibis.get_backend().con
    con.execute("PRAGMA enable_profiling = 'json'")
    con.execute(f"PRAGMA profiling_output = '{path}'")


# --- checking and profiling ---------------------------------------------------------------------

def compare(feast_path: Path, floor_path: Path) -> dict:
    """Every row and value of Feast's frame equals the floor's (row_id aligns them; numbers as
    float64, since Feast's DuckDB store returns integers as floats; nulls equal nulls)."""
    feast = pd.read_parquet(feast_path).sort_values("row_id").reset_index(drop=True)
    floor = pd.read_parquet(floor_path).sort_values("row_id").reset_index(drop=True)
    aligned = (feast["row_id"].to_numpy() == floor["row_id"].to_numpy()).all()
    if len(feast) != len(floor) or not aligned:
        raise AssertionError(f"rows differ: Feast {len(feast)}, floor {len(floor)}")
    missing = set(floor.columns) ^ set(feast.columns)
    if missing:
        raise AssertionError(f"columns differ: {sorted(missing)}")
    for column in floor.columns:
        a, b = floor[column], feast[column]
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            x, y = a.to_numpy(dtype="float64"), b.to_numpy(dtype="float64")
            same = (x == y) | (np.isnan(x) & np.isnan(y))
        elif pd.api.types.is_datetime64_any_dtype(a):
            same = (pd.to_datetime(a, utc=True) == pd.to_datetime(b, utc=True)).to_numpy()
        else:
            same = ((a.isna() & b.isna()) | (a.astype(object) == b.astype(object))).to_numpy()
        if not same.all():
            raise AssertionError(f"{column}: {int((~same).sum())} of {len(a)} values differ")
    first = {view: int(floor[f"{view}__{_first_feature(floor, view)}"].isna().sum())
             for view in VIEWS}
    return {"rows": len(floor), "columns": len(floor.columns), "rows_with_null_view": first}


def _first_feature(frame: pd.DataFrame, view: str) -> str:
    return next(c for c in frame.columns if c.startswith(f"{view}__")).split("__", 1)[1]


def summarise_profile(profile: Path, top: int = 12) -> dict:
    """Where Feast's time goes: the heaviest Python functions (cumulative, import machinery left
    out, and by own time) and DuckDB's heaviest operators in the query Feast sent."""
    stats = pstats.Stats(str(profile))
    total = stats.total_tt
    entries = []
    for (file, line, name), (_, calls, own, cumulative, _) in stats.stats.items():
        if file.startswith("<frozen") or file == "~" and "import" in name:
            continue
        where = f"{Path(file).parent.name}/{Path(file).name}:{line} {name}" if file != "~" else name
        entries.append({"function": where, "calls": calls, "cumulative_s": round(cumulative, 3),
                        "own_s": round(own, 3)})
    operators = _duckdb_operators(profile.with_suffix(".duckdb.json"))
    return {
        "python_total_s": round(total, 3),
        "by_cumulative": sorted(entries, key=lambda e: e["cumulative_s"], reverse=True)[:top * 2],
        "by_own_time": sorted(entries, key=lambda e: e["own_s"], reverse=True)[:top],
        "duckdb_query_s": operators["query_s"],
        "duckdb_operators": operators["top"][:top],
    }


def _duckdb_operators(path: Path) -> dict:
    if not path.exists():
        return {"query_s": None, "top": []}
    root = json.loads(path.read_text())
    found: list[dict] = []

    def walk(node: dict) -> None:
        name = node.get("operator_name") or node.get("operator_type") or node.get("name")
        seconds = node.get("operator_timing", node.get("timing"))
        if name and seconds is not None:
            extra = node.get("extra_info", {})
            found.append({"operator": name.strip(), "seconds": round(float(seconds), 3),
                          "rows": node.get("operator_cardinality", node.get("cardinality")),
                          "detail": _detail(extra)})
        for child in node.get("children", []):
            walk(child)

    walk(root)
    query = root.get("latency", root.get("operator_timing"))
    return {"query_s": query, "top": sorted(found, key=lambda o: o["seconds"], reverse=True)}


def _detail(extra) -> str:
    if isinstance(extra, dict):
        text = "; ".join(f"{k}: {v}" for k, v in extra.items() if k in ("Join Type", "Conditions",
                                                                      "Function", "Table"))
        return text[:200]
    return str(extra)[:200]


# --- the run ------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.retrieval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="entity rows")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (0: the check only)")
    parser.add_argument("--profile", choices=["auto", "yes", "no"], default="auto",
                        help="profile one more Feast run (auto: when Feast is over the goal)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round (smoke test)")
    parser.add_argument("--results", type=Path, default=None, help="directory for retrieval.json")
    parser.add_argument("--worker", choices=["feast", "duckdb", "prepare"], help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--entities", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--query", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.users, args.items, args.days, args.rounds = 3_000, 300, 100, 20, 0
    shop_dir = work_dir() / f"retrieval-{args.users}u-{args.items}i-{args.days}d"
    if args.worker == "prepare":
        prepare(shop_dir, args.users, args.items, args.days, args.rows)
    elif args.worker == "feast":
        feast_worker(args.home, args.entities, args.out, args.profile_to)
    elif args.worker == "duckdb":
        duckdb_worker(args.query, args.entities, args.out)
    else:
        return run(args, shop_dir)
    return {}


def run(args: argparse.Namespace, shop_dir: Path) -> dict:
    me = [sys.executable, "-m", "bench.retrieval"]
    sizes = ["--rows", str(args.rows), "--users", str(args.users), "--items", str(args.items),
             "--days", str(args.days)]
    print(f"retrieval: {args.rows:,} entity rows over a {args.users:,}-user shop in {shop_dir}")
    prepared = run_child([*me, "--worker", "prepare", *sizes], timeout=7200)
    home, entities = shop_dir / "home", shop_dir / f"entities-{args.rows}.parquet"
    query = shop_dir / "asof.sql"
    outputs = {kind: shop_dir / f"out-{kind}.parquet" for kind in ("feast", "duckdb")}

    def command(kind: str) -> list[str]:
        return [*me, "--worker", kind, "--home", str(home), "--query", str(query),
                "--entities", str(entities), *sizes]

    # An untimed run of each first keeps its frame for the comparison (and warms the page cache).
    checks = {kind: run_child([*command(kind), "--out", str(outputs[kind])])
              for kind in ("feast", "duckdb")}
    checked = compare(outputs["feast"], outputs["duckdb"])
    print(f"  identical: {checked}")
    if args.rounds:
        runs = interleaved(args.rounds, {kind: (lambda k=kind: run_child(command(k)))
                                         for kind in ("feast", "duckdb")})
    else:  # --quick: the checking runs are the only ones
        runs = {kind: [checks[kind]] for kind in ("feast", "duckdb")}
    figures = {kind: {key: stat([r[key] for r in rs]) for key, value in rs[0].items()
                      if isinstance(value, int | float)} for kind, rs in runs.items()}
    feast, floor = figures["feast"], figures["duckdb"]
    ratios = {"join": feast["join_s"]["median"] / floor["join_s"]["median"],
              "process": feast["wall_s"]["median"] / floor["wall_s"]["median"]}
    met = ratios["join"] <= GOAL and ratios["process"] <= GOAL
    profile = None
    if args.profile == "yes" or (args.profile == "auto" and not met):
        target = shop_dir / "feast.prof"
        run_child([*me, "--worker", "feast", "--home", str(home), "--entities", str(entities),
                   "--profile-to", str(target), *sizes])
        profile = summarise_profile(target)
    table = [row(
        f"3. training set, {args.rows:,} entity rows x {checked['columns'] - 4} features "
        f"(`get_historical_features`, Persona's DuckDB ASOF store)",
        f"join {spread(feast['join_s'], 's', 1)}; process {spread(feast['wall_s'], 's', 1)}",
        f"hand ASOF JOIN: join {spread(floor['join_s'], 's', 1)}; process "
        f"{spread(floor['wall_s'], 's', 1)} (peak {floor['peak_rss_mb']['max']:,.0f} MB)",
        f"{ratios['join']:.2f}x join; {ratios['process']:.2f}x process",
        f"<= {GOAL}x, identical values", met, f"{feast['peak_rss_mb']['max']:,.0f} MB")]
    payload = {
        "target": "get_historical_features for 1,000,000 entity rows at most 1.5x a hand-written "
                  "DuckDB ASOF JOIN (join and whole process), identical values, rows before the "
                  "first feature row kept with nulls",
        "parameters": {"rows": args.rows, "users": args.users, "items": args.items,
                       "days": args.days, "rounds": args.rounds, "views": list(VIEWS)},
        "preparation_s": prepared["wall_s"],
        "figures": figures, "ratios": ratios, "identical": checked, "met": met,
        "profile": profile, "table": table,
    }
    write_result(NAME, payload, args.results)
    return payload


if __name__ == "__main__":
    main()
