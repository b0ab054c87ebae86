"""Target 2: the in-process scoring path (everything /rank does but HTTP) at most 2x the floor of
raw redis-py reads of the needed keys, decoding and XGBoost `inplace_predict`, for 50 and 500
candidates.

Three contenders score the same requests (a warm user and random candidate items, cycled) against
the same Redis, in one process, alternating by round:

* persona: `Scorer.rank` over the direct Redis reader with its item cache, as the service runs
  it: features, the on-demand transform, probabilities, reasons, the sorted response;
* uncached: the same without the item cache (every item read from Redis on every call);
* floor: a hand-written minimum: one redis-py pipeline of HMGETs for the user's and the items'
  hashes, a second for the user x category hashes of their categories, every value decoded with
  protobuf's `Value.FromString` into a matrix, then `inplace_predict` (no transform, no reasons,
  no response);
* feast: `Scorer.rank` over Feast's `get_online_features` (the path the service took before; for
  context, not a target).

    python -m bench.scoring [--rounds R] [--calls N] [--quick]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.common import interleaved, peak_rss_mb, row, spread, stat, work_dir, write_result
from bench.redis_local import local_redis
from bench.serving_world import ServingWorld, prepare

NAME = "scoring"
GOAL = 2.0  # at most this multiple of the floor
SIZES = (50, 500)


class Floor:
    """Raw redis-py reads of the keys /rank needs, decoded, then predicted: the least any
    implementation must do. Field names are resolved once, as any client would."""

    def __init__(self, store, booster, columns: list[str]) -> None:
        from feast.infra.online_stores.helpers import _mmh3
        from feast.infra.online_stores.redis import RedisOnlineStore
        from feast.protos.feast.types.Value_pb2 import Value

        from persona.featurestore import redis_layout

        self.value, self.keys, self.booster = Value, redis_layout, booster
        self.client = RedisOnlineStore()._get_client(store.config.online_store)
        self.project = store.config.project.encode()
        self.width = len(columns)
        by_view: dict[str, list[str]] = {}
        for column in columns:
            view, feature = column.split("__", 1)
            by_view.setdefault(view, []).append(feature)
        self.user_fields = [_mmh3(f"user_activity:{f}") for f in by_view["user_activity"]]
        self.item_fields = [_mmh3(f"{v}:{f}") for v in ("item_catalog", "item_popularity")
                            for f in by_view[v]] + [_mmh3("item_catalog:category")]  # last
        self.affinity_fields = [_mmh3(f"user_category_affinity:{f}")
                                for f in by_view["user_category_affinity"]]
        self.prefixes = {keys: redis_layout.key_prefix(keys)
                         for keys in (("user_id",), ("item_id",), ("category", "user_id"))}

    def _key(self, join_keys: tuple[str, ...], *values: str) -> bytes:
        return self.keys.entity_key(self.prefixes[join_keys], values, self.project)

    def _decode(self, raw: bytes | None):
        if not raw:
            return None
        proto = self.value.FromString(raw)
        kind = proto.WhichOneof("val")
        return getattr(proto, kind) if kind else None

    def rank(self, user: str, items: list[str]) -> np.ndarray:
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(self._key(("user_id",), user), self.user_fields)
        for item in items:
            pipe.hmget(self._key(("item_id",), item), self.item_fields)
        user_raw, *items_raw = pipe.execute()
        categories = [self._decode(raw[-1]) or "" for raw in items_raw]
        distinct = list(dict.fromkeys(categories))
        pipe = self.client.pipeline(transaction=False)
        for category in distinct:
            pipe.hmget(self._key(("category", "user_id"), category, user), self.affinity_fields)
        affinity = dict(zip(distinct, pipe.execute()))
        matrix = np.full((len(items), self.width), np.nan)
        user_values = [self._decode(raw) for raw in user_raw]
        for i, (raw, category) in enumerate(zip(items_raw, categories)):
            values = [*user_values, *(self._decode(r) for r in raw[:-1]),
                      *(self._decode(r) for r in affinity[category])]
            numbers = [np.nan if v is None or isinstance(v, str) else v for v in values]
            matrix[i, :len(numbers)] = numbers[:self.width]
        return self.booster.inplace_predict(matrix, missing=np.nan)


def _timed(call, bodies: list[dict], calls: int) -> dict:
    """p50 and p99 per call over `calls` calls cycling through `bodies`, in ms."""
    times = []
    for n in range(calls):
        body = bodies[n % len(bodies)]
        start = time.perf_counter()
        call(body)
        times.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)),
            "mean_ms": float(np.mean(times))}


def _contender(call, requests: list, calls: int):
    return lambda: _timed(call, requests, calls)


def measure(world: ServingWorld, url: str, rounds: int, calls: int) -> dict:
    from persona.core.settings import Settings, library_defaults

    library_defaults()  # before xgboost loads
    from persona.featurestore.config import feature_store
    from serving.item_cache import ItemCache
    from serving.online import OnlineFeatureReader
    from serving.redis_online import RedisFeatureReader
    from serving.schemas import RankRequest
    from serving.scoring import Scorer
    from serving.service import load_booster

    settings = world.on_redis(url)
    store = feature_store(settings)
    import bentoml

    stored = bentoml.models.get(world.model_tag)
    booster = load_booster(stored)
    columns = stored.info.metadata["features"]
    service = stored.info.metadata["feature_service"]
    persona = Scorer(booster, RedisFeatureReader(
        store, service, columns, ItemCache.from_settings(Settings.from_env())),
                     world.model_tag)
    uncached = Scorer(booster, RedisFeatureReader(store, service, columns), world.model_tag)
    feast = Scorer(booster, OnlineFeatureReader(store, service, columns), world.model_tag)
    floor = Floor(store, booster, columns)
    out = {}
    for size in SIZES:
        bodies = world.bodies(size, seed=size)
        requests = [RankRequest(**b) for b in bodies]
        contenders = {
            "persona": _contender(persona.rank, requests, calls),
            "uncached": _contender(uncached.rank, requests, calls),
            "floor": _contender(lambda r: floor.rank(r.user_id, r.item_ids), requests, calls),
            "feast": _contender(feast.rank, requests, max(calls // 4, 1)),
        }
        for contender in contenders.values():
            contender()  # warm-up: first calls pay for lazy set-up
        runs = interleaved(rounds, contenders)
        out[size] = {name: {key: stat([r[key] for r in rs]) for key in rs[0]}
                     for name, rs in runs.items()}
        out[size]["candidates"] = len(bodies[0]["item_ids"])
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.scoring", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=400, help="calls per contender per round")
    parser.add_argument("--quick", action="store_true", help="tiny shop, one round (smoke test)")
    parser.add_argument("--results", type=Path, default=None, help="directory for scoring.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.calls = 1, 20
    root = work_dir()
    world = prepare(root, quick=args.quick)
    with local_redis(root / "redis-scoring") as url:
        figures = measure(world, url, args.rounds, args.calls)
    ratios = {size: figures[size]["persona"]["p50_ms"]["median"]
              / figures[size]["floor"]["p50_ms"]["median"] for size in SIZES}
    met = all(r <= GOAL for r in ratios.values())
    peak = f"{peak_rss_mb():,.0f} MB (whole process)"
    table = [row(
        f"2. in-process /rank path, {figures[size]['candidates']} candidates",
        f"p50 {spread(figures[size]['persona']['p50_ms'], 'ms')}; without the item cache "
        f"{figures[size]['uncached']['p50_ms']['median']:.2f} ms; Feast path "
        f"{figures[size]['feast']['p50_ms']['median']:.2f} ms",
        f"redis-py + decode + inplace_predict: {spread(figures[size]['floor']['p50_ms'], 'ms')}",
        f"{ratios[size]:.2f}x floor", f"<= {GOAL:g}x floor", ratios[size] <= GOAL, peak)
        for size in SIZES]
    payload = {
        "target": "In-process scoring path at most 2x raw redis-py reads + decoding + "
                  "inplace_predict, for 50 and 500 candidates",
        "parameters": {"rounds": args.rounds, "calls": args.calls, "sizes": list(SIZES),
                       "model": world.model_tag},
        "figures": {str(k): v for k, v in figures.items()},
        "ratios": {str(k): v for k, v in ratios.items()}, "met": met, "table": table,
        "peak_rss_mb": peak_rss_mb(),
    }
    write_result(NAME, payload, args.results)
    return payload


if __name__ == "__main__":
    main()
