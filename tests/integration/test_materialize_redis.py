"""The bulk Redis writer (persona/redis_layout.py) behind `persona materialize`: the same bytes as
Feast's own writer, read back by Feast's get_online_features, Feast's timestamp rule, and the
materialization intervals Feast records."""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import redis
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import python_values_to_proto_values
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp
from worlds import start_redis

from persona.core.settings import Settings
from persona.data import offline
from persona.data.raw import RawTables
from persona.data.snapshots import compute_features
from persona.featurestore import online_state, redis_layout
from persona.featurestore.config import feature_store
from persona.featurestore.registry import apply_definitions
from persona.jobs.materialize import last_snapshot, materialize, rows_to_load

pytestmark = [pytest.mark.integration, pytest.mark.redis]

# --- serialisation against Feast's own conversion (no Redis) ------------------------------------

VALUES = {
    "double": (pa.array([1.5, None, math.nan, 0.0, -0.0, math.inf, -1e300, 5e-324]),
               ValueType.DOUBLE),
    "int64": (pa.array([0, 1, -1, 127, 128, 300, 16_384, 2**62, 2**63 - 1, -(2**63)], pa.int64()),
              ValueType.INT64),
    "int32": (pa.array([0, -7, 2**31 - 1], pa.int32()), ValueType.INT64),
    "int64 with nulls": (pa.array([3, None, 2**40], pa.int64()), ValueType.INT64),
    "string": (pa.array(["", "books", None, "é", "x" * 200, "y" * 20_000]), ValueType.STRING),
    "bool (Feast's path)": (pa.array([True, False, None]), ValueType.BOOL),
}


@pytest.mark.parametrize("case", list(VALUES))
def test_value_bytes_equal_feasts(case: str) -> None:
    array, value_type = VALUES[case]
    expected = [p.SerializeToString() for p in python_values_to_proto_values(
        array.to_numpy(zero_copy_only=False), value_type)]
    assert redis_layout.value_protos(array, value_type).to_pylist() == expected


def test_entity_keys_equal_feasts() -> None:
    users, categories = ["U0000042", "é" * 300, ""], ["books", "", "z"]
    table = pa.table({"user_id": users, "category": categories})
    strings = {"user_id": ValueType.STRING, "category": ValueType.STRING}
    both = redis_layout.entity_keys(table, strings, b"persona").to_pylist()
    assert both == [_feast_key(["user_id", "category"], [Value(string_val=u), Value(string_val=c)],
                               b"persona") for u, c in zip(users, categories)]
    numbers = pa.table({"n": pa.array([1, -5, 2**40], pa.int64())})
    assert redis_layout.entity_keys(numbers, {"n": ValueType.INT64}, b"p").to_pylist() == [
        _feast_key(["n"], [Value(int64_val=v)], b"p") for v in (1, -5, 2**40)]


def _feast_key(names: list[str], values: list[Value], project: bytes) -> bytes:
    return serialize_entity_key(EntityKey(join_keys=names, entity_values=values), 3) + project


def test_timestamp_bytes_equal_feasts() -> None:
    stamps = [datetime(2026, 9, 30, tzinfo=UTC),
              datetime(2026, 9, 30, 1, 2, 3, 456_789, tzinfo=UTC),
              datetime(1960, 1, 1, 0, 0, 0, 5, tzinfo=UTC),
              datetime(1970, 1, 1, tzinfo=UTC)]
    array = pa.array(stamps, pa.timestamp("us", tz="UTC"))
    expected = []
    for stamp in stamps:
        proto = Timestamp()
        proto.FromDatetime(stamp)
        expected.append(proto.SerializeToString())
    protos = redis_layout.timestamp_protos(redis_layout.timestamp_nanos(array))
    assert protos.to_pylist() == expected


# --- against a real Redis and Feast's own writer ------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    bulk: Settings  # materialized by the bulk writer, still in Redis
    feast: Settings  # the same offline store, materialized by Feast's writer (then removed)
    feast_hashes: dict[bytes, dict[bytes, bytes]]
    bulk_hashes: dict[bytes, dict[bytes, bytes]]
    counts: dict[str, int]


def _hashes(url: str) -> dict[bytes, dict[bytes, bytes]]:
    client = redis.Redis.from_url(url)
    return {key: client.hgetall(key) for key in client.scan_iter(match=b"*persona", count=1000)}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory, small_shop, own_redis_url: str) -> Loaded:
    """The shop materialized by Feast's writer, its hashes kept and removed, then by the bulk
    writer, into a Redis of the module's own (every hash in it is compared)."""
    redis_url = own_redis_url
    root = tmp_path_factory.mktemp("materialize-redis")
    base = Settings(home=root / "bulk", reports_dir=root / "reports", online_url=redis_url)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PERSONA_HOME", str(base.home))
        raw = RawTables(small_shop.events, small_shop.users, small_shop.items, {})
        features = compute_features(raw, base.snapshot_interval)
        offline.publish(base.offline_root, features, {"source": "tests/test_materialize_redis.py"})
        apply_definitions(base)
    shutil.copytree(base.home, root / "feast", symlinks=True)
    other = Settings(home=root / "feast", reports_dir=root / "reports", online_url=redis_url)
    materialize(other, bulk=False)
    feast_hashes = _hashes(redis_url)
    # emptied, record and all, for the bulk writer's own first load
    redis.Redis.from_url(redis_url).delete(*feast_hashes, online_state.record_key("persona"))
    counts = materialize(base)
    return Loaded(base, other, feast_hashes, _hashes(redis_url), counts)


def test_bulk_writer_writes_feasts_bytes(loaded: Loaded) -> None:
    assert len(loaded.feast_hashes) > 1000
    assert loaded.bulk_hashes.keys() == loaded.feast_hashes.keys()
    differing = [k for k in loaded.feast_hashes if loaded.bulk_hashes[k] != loaded.feast_hashes[k]]
    assert not differing, (len(differing), loaded.feast_hashes[differing[0]],
                           loaded.bulk_hashes[differing[0]])


def _equal(expected: pd.Series, got: pd.Series) -> pd.Series:
    return (expected.isna() & got.isna()) | (expected.astype(object) == got.astype(object))


@pytest.mark.parametrize("view", ["user_profile", "user_activity", "item_catalog",
                                  "item_popularity", "user_category_affinity"])
def test_feast_reads_back_the_latest_offline_rows(loaded: Loaded, view: str) -> None:
    store = feature_store(loaded.bulk)
    fv = store.get_feature_view(view)
    start, end = fv.materialization_intervals[0]
    latest = rows_to_load(loaded.bulk, fv, start, end).to_pandas()
    assert len(latest) == loaded.counts[view] > 0
    keys = [c.name for c in fv.entity_columns]
    names = [f.name for f in fv.features]
    online = store.get_online_features(
        features=[f"{view}:{name}" for name in names],
        entity_rows=latest[keys].to_dict("records"),
    ).to_df()
    assert len(online) == len(latest)
    for name in names:
        same = _equal(latest[name].reset_index(drop=True), online[name].reset_index(drop=True))
        assert same.all(), f"{view}:{name}: {int((~same).sum())} of {len(latest)} entities differ"


def test_intervals_are_recorded_like_feasts_and_carry_on(loaded: Loaded) -> None:
    bulk, feast = feature_store(loaded.bulk), feature_store(loaded.feast)
    for fv in bulk.list_feature_views():
        expected = feast.get_feature_view(fv.name).materialization_intervals
        assert fv.materialization_intervals == expected
    assert materialize(loaded.bulk) == dict.fromkeys(loaded.counts, 0)  # nothing new
    end = bulk.get_feature_view("user_activity").most_recent_end_time
    bulk.materialize_incremental(end_date=end + timedelta(days=1), feature_views=["user_activity"])
    fv = feature_store(loaded.bulk).get_feature_view("user_activity")
    # Feast resumed where Persona stopped
    assert fv.materialization_intervals[-1] == (end, end + timedelta(days=1))


def test_each_materialization_bumps_the_version_services_watch(loaded: Loaded) -> None:
    config = feature_store(loaded.bulk).config
    client = redis.Redis.from_url(loaded.bulk.online_url)
    key = redis_layout.version_key(config.project.encode())
    before = int(client.get(key))
    materialize(loaded.bulk, views=["item_catalog"])
    assert int(client.get(key)) == before + 1


def test_older_rows_do_not_overwrite_newer(loaded: Loaded) -> None:
    store = feature_store(loaded.bulk)
    fv = store.get_feature_view("item_catalog")
    when = datetime(2026, 9, 1, tzinfo=UTC)

    def write(stamp: datetime, price: float) -> int:
        table = pa.table({"item_id": ["I_TEST_1"], "category": ["books"], "brand": ["b"],
                          "list_price": [price],
                          "event_timestamp": pa.array([stamp], pa.timestamp("us", tz="UTC"))})
        return redis_layout.write_view(store.config, fv, table)

    def price() -> float:
        online = store.get_online_features(features=["item_catalog:list_price"],
                                           entity_rows=[{"item_id": "I_TEST_1"}])
        return online.to_dict()["list_price"][0]

    assert write(when, 10.0) == 1 and price() == 10.0
    assert write(when - timedelta(days=1), 5.0) == 0 and price() == 10.0  # older: kept out
    assert write(when, 7.0) == 0 and price() == 10.0  # same instant: kept out, as Feast does
    assert write(when + timedelta(seconds=1), 12.5) == 1 and price() == 12.5


def test_batches_and_key_expiry(loaded: Loaded) -> None:
    """Many small batches give the same bytes; key_ttl_seconds adds Feast's EXPIRE."""
    store = feature_store(loaded.bulk)
    fv = store.get_feature_view("item_catalog")
    rows = 250
    table = pa.table({"item_id": [f"I_BATCH_{i}" for i in range(rows)],
                      "category": ["books"] * rows, "brand": ["b"] * rows,
                      "list_price": np.arange(rows, dtype=float),
                      "event_timestamp": pa.array([datetime(2026, 9, 1, tzinfo=UTC)] * rows,
                                                  pa.timestamp("us", tz="UTC"))})
    config = store.config.model_copy(deep=True)
    config.online_store.key_ttl_seconds = 3600
    assert redis_layout.write_view(config, fv, table, batch_rows=7) == rows
    client = redis.Redis.from_url(loaded.bulk.online_url)
    keys = redis_layout.entity_keys(table, {"item_id": ValueType.STRING}, b"persona").to_pylist()
    assert all(0 < client.ttl(key) <= 3600 for key in keys)
    entity_rows = [{"item_id": f"I_BATCH_{i}"} for i in range(rows)]
    online = store.get_online_features(features=["item_catalog:list_price"],
                                       entity_rows=entity_rows)
    assert online.to_dict()["list_price"] == list(np.arange(rows, dtype=float))


def test_switching_online_stores_loads_the_new_one(loaded: Loaded, tmp_path) -> None:
    """Progress is per online store: after loading Redis, a run into the same home's SQLite
    loads every view's whole window (not nothing, as the registry's record alone would say);
    a second run has nothing new; a deleted SQLite file is loaded again."""
    home = tmp_path / "switched"
    shutil.copytree(loaded.bulk.home, home, symlinks=True)
    sqlite = Settings(home=home, reports_dir=tmp_path / "reports")
    assert all(fv.most_recent_end_time for fv in feature_store(sqlite).list_feature_views()
               if fv.name in loaded.counts)
    assert materialize(sqlite) == loaded.counts
    assert set(materialize(sqlite).values()) == {0}
    sqlite.sqlite_path.unlink()
    assert materialize(sqlite) == loaded.counts
    store = feature_store(sqlite)
    ends = online_state.loaded_until(store.config)
    views = list(loaded.counts)  # every view with rows (retrieval's lists have none here)
    assert ends == dict.fromkeys(views, last_snapshot(sqlite, views) + timedelta(seconds=1))
    assert online_state.loaded_until(feature_store(loaded.bulk).config).keys() == ends.keys()


@pytest.mark.parametrize("online", ["redis", "sqlite"])
def test_rows_older_than_the_ttl_are_not_served(loaded: Loaded, tmp_path, online: str) -> None:
    """Online, as in training's point-in-time join at the load's end, a user whose latest
    activity snapshot is older than the view's TTL has no activity row (Feast alone keeps the
    last row for ever): each load removes the rows that expired meanwhile."""
    home = tmp_path / "expiry"
    shutil.copytree(loaded.bulk.home, home, symlinks=True)
    server = None
    if online == "redis":
        if shutil.which("redis-server") is None:
            pytest.skip("no redis-server binary")
        server = start_redis(tmp_path / "redis")  # empty: the module's holds newer rows
    settings = Settings(home=home, reports_dir=tmp_path / "reports",
                        online_url=server.url if server else None)
    try:
        _expire_and_check(settings)
    finally:
        if server:
            server.stop()


def _expire_and_check(settings: Settings) -> None:
    store = feature_store(settings)
    fv = store.get_feature_view("user_activity")
    activity = pd.read_parquet(settings.offline_current / "user_activity")
    users = sorted(activity["user_id"].unique())
    end = last_snapshot(settings, ["user_activity"]) + timedelta(seconds=1)
    # the last load ends past the log: every user's latest snapshot has expired by then
    for at in (end - timedelta(days=10), end, end + fv.ttl + timedelta(days=1)):
        materialize(settings, end=at, views=["user_activity"])
        latest = activity[activity["event_timestamp"] <= at].groupby("user_id")[
            "event_timestamp"].max()
        current = set(latest[latest >= at - fv.ttl].index)
        served = store.get_online_features(
            features=[f"user_activity:{fv.features[0].name}"],
            entity_rows=[{"user_id": u} for u in users]).to_df()
        found = set(served.loc[served[fv.features[0].name].notna(), "user_id"])
        assert found == current, (at, len(found - current), len(current - found))
        assert (len(current) > 0) == (at <= end) and len(latest) > 0
