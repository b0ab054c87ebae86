"""Model matrices for (user, item) pairs read straight from Feast's Redis layout: the /rank path.

`serving.online.OnlineFeatureReader` reads through Feast's `get_online_features`, whose response
building and per-value conversion cost most of a /rank request (8.6 of 14.6 ms for 1 user + 50
items, measured with py-spy). On a Redis online store this reader does the same reads itself.
The registry is read once, at start-up, into a plan: which hash fields of which entity keys feed
which model column. Each entity's HMGET answer is decoded once into an `Entity` (its numbers as
a numpy row, its transform inputs, its views' timestamps), and items' entities are kept in the
item cache, so a request whose items are cached is one pipelined round trip (the cache's version
key, the users, their rows for the items' categories) that decodes only the users' rows; other
items take a second one. On-demand features come from the on-demand view's own transform, the
function Feast runs for training and get_online_features. Every value equals what
get_online_features returns (tests/integration/test_online_readers.py compares them over many
entities).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from feast import FeatureStore, OnDemandFeatureView
from feast.infra.online_stores.helpers import _mmh3, compute_versioned_name
from feast.infra.online_stores.redis import RedisOnlineStore
from feast.types import String
from google.protobuf.timestamp_pb2 import Timestamp

from persona.featurestore import redis_layout
from serving.item_cache import ItemCache
from serving.online import (
    CATALOG_VIEW,
    CATEGORY_KEY,
    ITEM_KEY,
    USER_KEY,
    FeatureRows,
    OnlineFeatureReader,
    needs_request_time,
    resolve_service,
    ttl_seconds,
)
from training.categories import Categories


@dataclass(frozen=True)
class Entity:
    """One entity's hash, decoded: what a request takes from it. Shared by the item cache's
    readers, so its arrays are read-only."""

    numbers: np.ndarray  # float64, one per `_Hash.numbers` (NaN for a null)
    inputs: tuple  # one per `_Hash.inputs`
    stamps: dict[str, bytes | None]  # view -> its stored `_ts:<view>` (None or b"": no row)
    category: str = ""  # an item's category; "" when unknown or null (matches no affinity row)


@dataclass
class _Hash:
    """What is read from one kind of entity hash (the views sharing these join keys)."""

    join_keys: tuple[str, ...]  # sorted, as in Feast's key
    prefix: bytes
    fields: list[bytes] = field(default_factory=list)  # the HMGET's field names
    numbers: list[tuple[int, int]] = field(default_factory=list)  # (field, matrix column)
    inputs: list[tuple[int, str, bool]] = field(default_factory=list)  # (field, input, is text)
    stamps: dict[str, int] = field(default_factory=dict)  # view -> field of its `_ts:<view>`
    category_field: int | None = None  # the catalogue's category, in the items' hash

    def field_of(self, view: str, feature: str) -> int:
        """The position of a view's feature in the HMGET, added on first use."""
        name = _mmh3(f"{view}:{feature}")
        if name not in self.fields:
            self.fields.append(name)
        return self.fields.index(name)

    def stamp_of(self, view: str) -> None:
        if view not in self.stamps:
            self.stamps[view] = len(self.fields)
            self.fields.append(f"_ts:{view}".encode())

    def decode(self, raw: list[bytes | None]) -> Entity:
        """An HMGET answer of this hash as an `Entity`."""
        numbers = np.array([redis_layout.number(raw[f]) for f, _ in self.numbers],
                           dtype=np.float64)
        numbers.flags.writeable = False
        inputs = tuple((redis_layout.value if text else redis_layout.number)(raw[f])
                       for f, _, text in self.inputs)
        stamps = {view: raw[f] for view, f in self.stamps.items()}
        category = ""
        if self.category_field is not None and raw[self.stamps[CATALOG_VIEW]]:
            category = redis_layout.value(raw[self.category_field]) or ""
        return Entity(numbers, inputs, stamps, category)


def online_reader(store: FeatureStore, feature_service: str, columns: Sequence[str],
                  cache: ItemCache[Entity] | None = None, categories: Categories | None = None
                  ) -> OnlineFeatureReader | RedisFeatureReader:
    """The reader /rank and /predict use: the direct one (with `cache`) where Feast's layout is
    a single Redis server's and the model takes numbers only, from stored rows alone (the v1
    services); Feast's get_online_features elsewhere (SQLite, Redis Cluster or Sentinel, and
    models with categories or request-time features)."""
    plain = not categories and not needs_request_time(
        store, store.get_feature_service(feature_service))
    if plain and redis_layout.supports(store.config):
        return RedisFeatureReader(store, feature_service, columns, cache)
    return OnlineFeatureReader(store, feature_service, columns, categories)


class RedisFeatureReader:
    """The same interface and answers as `OnlineFeatureReader`, for a single Redis server with
    version-3 entity keys (`persona.redis_layout.supports`)."""

    def __init__(self, store: FeatureStore, feature_service: str, columns: Sequence[str],
                 cache: ItemCache[Entity] | None = None):
        config = store.config
        if not redis_layout.supports(config):
            raise redis_layout.UnsupportedLayout("the direct reader needs a single Redis server "
                                               "and key version 3")
        service = resolve_service(store, feature_service, columns)
        self.columns = list(columns)
        self._client = RedisOnlineStore()._get_client(config.online_store)
        self._project = config.project.encode()
        versioning = config.registry.enable_online_feature_view_versioning
        views = {fv.name: fv for fv in store.list_feature_views()}
        self._hashes: dict[tuple[str, ...], _Hash] = {}
        self._transforms: list[tuple[OnDemandFeatureView, list[tuple[str, int]]]] = []
        position = {column: j for j, column in enumerate(self.columns)}

        def hash_of(view_name: str) -> tuple[_Hash, str]:
            view = views[view_name]
            keys = _keys(view)
            if not set(keys) <= {USER_KEY, ITEM_KEY, CATEGORY_KEY}:
                raise ValueError(f"view {view_name!r} is keyed by {keys}, which /rank cannot key")
            plan = self._hashes.setdefault(keys, _Hash(keys, redis_layout.key_prefix(keys)))
            stored_name = compute_versioned_name(view, versioning)
            plan.stamp_of(stored_name)
            return plan, stored_name

        for projection in service.feature_view_projections:
            if projection.name not in views:
                odfv = store.get_on_demand_feature_view(projection.name)
                outputs = [(f.name, position[f"{projection.name_to_use()}__{f.name}"])
                           for f in projection.features]
                self._transforms.append((odfv, outputs))
                for source in odfv.source_feature_view_projections.values():
                    plan, stored_name = hash_of(source.name)
                    for feature in source.features:
                        plan.inputs.append((plan.field_of(stored_name, feature.name),
                                            feature.name, feature.dtype == String))
                continue
            plan, stored_name = hash_of(projection.name)
            for feature in projection.features:
                plan.numbers.append((plan.field_of(stored_name, feature.name),
                                     position[f"{projection.name_to_use()}__{feature.name}"]))
        self._user_views = {p.name: ttl_seconds(views[p.name])
                            for p in service.feature_view_projections
                            if p.name in views and _keys(views[p.name]) == (USER_KEY,)}
        if not self._user_views:
            raise ValueError(f"feature service {feature_service!r} has no view keyed by {USER_KEY}")
        catalog = self._hashes.get((ITEM_KEY,))
        if catalog is None or CATALOG_VIEW not in catalog.stamps:
            raise ValueError(f"feature service {feature_service!r} reads no {CATALOG_VIEW}")
        catalog.category_field = catalog.field_of(CATALOG_VIEW, CATEGORY_KEY)
        self._packed = {keys: redis_layout.hmget_parts(plan.fields)  # packed once
                        for keys, plan in self._hashes.items()}
        self._version_command = redis_layout.get_command(redis_layout.version_key(self._project))
        self._cache = cache or ItemCache(size=0)

    def for_user(self, user_id: str, item_ids: Sequence[str]) -> FeatureRows:
        """One user against candidate items (the /rank case)."""
        return self.rows([user_id] * len(item_ids), item_ids)

    def rows(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> FeatureRows:
        """Arbitrary (user, item) pairs, in the order given."""
        if len(user_ids) != len(item_ids):
            raise ValueError("user_ids and item_ids must have the same length")
        pairs = len(item_ids)
        keys = {USER_KEY: list(user_ids), ITEM_KEY: list(item_ids)}
        entities = self._entities(keys)
        items = entities[(ITEM_KEY,)]
        keys[CATEGORY_KEY] = [items[(i,)].category for i in keys[ITEM_KEY]]

        matrix = np.full((pairs, len(self.columns)), np.nan)
        inputs: dict[str, np.ndarray] = {}
        read: dict[tuple[str, ...], tuple[list[Entity], np.ndarray]] = {}
        for plan in self._hashes.values():
            distinct, take = _index(plan.join_keys, keys)
            rows = [entities[plan.join_keys][t] for t in distinct]
            read[plan.join_keys] = rows, take
            if plan.numbers:
                numbers = np.array([r.numbers for r in rows]).reshape(-1, len(plan.numbers))
                matrix[:, [column for _, column in plan.numbers]] = numbers[take]
            for j, (_, name, text) in enumerate(plan.inputs):
                inputs[name] = np.array([r.inputs[j] for r in rows],
                                        dtype=object if text else np.float64)[take]
        for join_key in (USER_KEY, ITEM_KEY, CATEGORY_KEY):
            inputs.setdefault(join_key, np.array(keys[join_key], dtype=object))
        if self._transforms:
            frame = pd.DataFrame(inputs, copy=False)  # the arrays are this request's own
            for odfv, outputs in self._transforms:
                computed = odfv.feature_transformation.udf(frame)
                for name, column in outputs:
                    matrix[:, column] = _floats(computed[name])
        found_item = _written(*read[(ITEM_KEY,)], CATALOG_VIEW)
        found_user = np.zeros(pairs, dtype=bool)
        stale_user = np.zeros(pairs, dtype=bool)
        now = time.time()
        for view, ttl in self._user_views.items():
            found_user |= _written(*read[(USER_KEY,)], view)
            if ttl:
                stale_user |= _written(*read[(USER_KEY,)], view, before=now - ttl)
        return FeatureRows(matrix, ~found_user, ~found_item, stale_user)

    def categories(self, item_ids: Sequence[str]) -> dict[str, str | None]:
        """Each known item's category (None if its row holds no category); unknown items are
        left out. Read from Redis, never from the cache: also the readiness probe's read."""
        unique = list(dict.fromkeys(item_ids))
        if not unique:
            return {}
        plan = self._hashes[(ITEM_KEY,)]
        replies = redis_layout.pipeline(self._client, self._commands(plan, [(i,) for i in unique]))
        out = {}
        for item, raw in zip(unique, replies):
            if raw[plan.stamps[CATALOG_VIEW]]:
                out[item] = redis_layout.value(raw[plan.category_field])
        return out

    def _entities(self, keys: dict[str, list[str]], retry: bool = True
                  ) -> dict[tuple[str, ...], dict[tuple[str, ...], Entity]]:
        """Every plan's decoded entities over the pairs. Items come from the cache where it
        holds them, so that their users' category rows are read in the same round trip as the
        users; the rest take a second one."""
        items = list(dict.fromkeys(keys[ITEM_KEY]))
        version, cached = self._cache.lookup(items)
        found: dict[tuple[str, ...], dict[tuple[str, ...], Entity]] = {
            k: {} for k in self._hashes}
        found[(ITEM_KEY,)] = {(i,): entity for i, entity in cached.items()}
        categories = {i: entity.category for i, entity in cached.items()}
        wanted = {}
        for plan in self._hashes.values():
            if plan.join_keys == (ITEM_KEY,):
                wanted[plan.join_keys] = [(i,) for i in items if i not in cached]
            else:
                wanted[plan.join_keys] = _distinct(plan.join_keys, keys, categories)
        stored_version, *replies = self._read(wanted, [self._version_command])
        if stored_version != version and cached and retry:
            self._cache.reset(stored_version)  # materialized since: the cached rows are stale
            return self._entities(keys, retry=False)
        self._decode(wanted, replies, found)
        fresh = {t[0]: found[(ITEM_KEY,)][t] for t in wanted[(ITEM_KEY,)]}
        if not fresh:
            return found
        self._cache.store(fresh, stored_version)
        categories.update({i: entity.category for i, entity in fresh.items()})
        later = {keys_: [t for t in _distinct(keys_, keys, categories) if t not in found[keys_]]
                 for keys_ in self._hashes if CATEGORY_KEY in keys_}
        if any(later.values()):
            self._decode(later, self._read(later), found)
        return found

    def _read(self, wanted: dict[tuple[str, ...], list[tuple[str, ...]]],
              first: Sequence[bytes] = ()) -> list:
        """The replies of `first` and of every wanted entity's HMGET, in one round trip."""
        commands = [*first, *(command for keys_, tuples in wanted.items()
                              for command in self._commands(self._hashes[keys_], tuples))]
        return redis_layout.pipeline(self._client, commands)

    def _decode(self, wanted: dict[tuple[str, ...], list[tuple[str, ...]]], replies: list,
                found: dict[tuple[str, ...], dict[tuple[str, ...], Entity]]) -> None:
        """Decode the replies of `_read(wanted)` into `found`."""
        answers = iter(replies)
        for keys_, tuples in wanted.items():
            plan = self._hashes[keys_]
            found[keys_].update((t, plan.decode(next(answers))) for t in tuples)

    def _commands(self, plan: _Hash, tuples: Sequence[tuple[str, ...]]) -> list[bytes]:
        command = self._packed[plan.join_keys]
        return [redis_layout.hmget(command, redis_layout.entity_key(plan.prefix, values,
                                                                  self._project))
                for values in tuples]


def _distinct(join_keys: tuple[str, ...], keys: dict[str, list[str]],
              categories: dict[str, str]) -> list[tuple[str, ...]]:
    """The distinct entities of a plan over the pairs; for a plan keyed by category, only the
    pairs whose item's category is known yet."""
    if CATEGORY_KEY not in join_keys:
        return list(dict.fromkeys(zip(*(keys[k] for k in join_keys))))
    columns = [keys[k] if k != CATEGORY_KEY else [categories.get(i) for i in keys[ITEM_KEY]]
               for k in join_keys]
    return list(dict.fromkeys(t for t in zip(*columns) if None not in t))


def _index(join_keys: tuple[str, ...], keys: dict[str, list[str]]
           ) -> tuple[list[tuple[str, ...]], np.ndarray]:
    """A plan's distinct entities over the pairs, and which one each pair takes."""
    tuples = list(zip(*(keys[k] for k in join_keys)))
    index: dict[tuple[str, ...], int] = {}
    take = np.fromiter((index.setdefault(t, len(index)) for t in tuples), dtype=np.intp,
                       count=len(tuples))
    return list(index), take


def _written(rows: list[Entity], take: np.ndarray, view: str,
             before: float | None = None) -> np.ndarray:
    """Per pair: was the view written for its entity (a stored row always carries its
    `_ts:<view>` field), with a timestamp before `before` (epoch s) when given?"""
    stamps = [row.stamps[view] for row in rows]
    if before is None:
        written = [bool(stamp) for stamp in stamps]
    else:
        written = [bool(stamp) and Timestamp.FromString(stamp).seconds < before
                   for stamp in stamps]
    return np.array(written, dtype=bool)[take]


def _floats(column: pd.Series) -> np.ndarray:
    """A transform's output column as float64, NaN where missing or not a number."""
    if not pd.api.types.is_numeric_dtype(column.dtype):
        column = pd.to_numeric(column, errors="coerce")
    return column.to_numpy(dtype=np.float64, na_value=np.nan)


def _keys(view) -> tuple[str, ...]:
    """A view's join keys, sorted as in Feast's entity key."""
    return tuple(sorted(c.name for c in view.entity_columns))
