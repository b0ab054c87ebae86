"""Model matrices for (user, item) pairs read straight from Feast's Redis layout: the /rank path.

`serving.online.OnlineFeatureReader` reads through Feast's `get_online_features`, whose response
building and per-value conversion cost most of a /rank request (8.6 of 14.6 ms for 1 user + 50
items, measured with py-spy). On a Redis online store this reader does the same reads itself.
The registry is read once, at start-up, into a plan: which hash fields of which entity keys feed
which model column. A request is then one pipelined round trip when its items' rows are in the
item cache (the cache's version key, the users, their rows for the items' categories) and two
otherwise (the uncached items first), decoded straight into the matrix. On-demand features come
from the on-demand view's own transform, the function Feast runs for training and
get_online_features. Every value equals what get_online_features returns
(tests/integration/test_online_readers.py compares them over many entities).
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


@dataclass
class _Hash:
    """What is read from one kind of entity hash (the views sharing these join keys)."""

    join_keys: tuple[str, ...]  # sorted, as in Feast's key
    prefix: bytes
    fields: list[bytes] = field(default_factory=list)  # the HMGET's field names
    numbers: list[tuple[int, int]] = field(default_factory=list)  # (field, matrix column)
    inputs: list[tuple[int, str, bool]] = field(default_factory=list)  # (field, input, is text)
    stamps: dict[str, int] = field(default_factory=dict)  # view -> field of its `_ts:<view>`

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


def online_reader(store: FeatureStore, feature_service: str, columns: Sequence[str],
                  cache: ItemCache | None = None, categories: Categories | None = None
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
                 cache: ItemCache | None = None):
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
        self._category_field = catalog.field_of(CATALOG_VIEW, CATEGORY_KEY)
        self._catalog_stamp = catalog.stamps[CATALOG_VIEW]
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
        answers, categories = self._answers(keys)
        keys[CATEGORY_KEY] = [categories[i] for i in keys[ITEM_KEY]]
        read = {plan.join_keys: _Rows.of(plan.join_keys, keys, answers[plan.join_keys])
                for plan in self._hashes.values()}
        found_item = read[(ITEM_KEY,)].found(self._hashes[(ITEM_KEY,)].stamps[CATALOG_VIEW])

        matrix = np.full((pairs, len(self.columns)), np.nan)
        inputs: dict[str, np.ndarray] = {}
        for plan in self._hashes.values():
            rows = read[plan.join_keys]
            if plan.numbers:
                fields, columns = zip(*plan.numbers)
                decoded = np.array([[redis_layout.number(raw[f]) for f in fields]
                                    for raw in rows.distinct], dtype=np.float64)
                matrix[:, list(columns)] = decoded.reshape(-1, len(fields))[rows.take]
            for index, name, text in plan.inputs:
                decode = redis_layout.value if text else redis_layout.number
                distinct = np.array([decode(raw[index]) for raw in rows.distinct],
                                    dtype=object if text else np.float64)
                inputs[name] = distinct[rows.take]
        for join_key in (USER_KEY, ITEM_KEY, CATEGORY_KEY):
            inputs.setdefault(join_key, np.array(keys[join_key], dtype=object))
        frame = pd.DataFrame(inputs)
        for odfv, outputs in self._transforms:
            computed = odfv.feature_transformation.udf(frame)
            for name, column in outputs:
                matrix[:, column] = pd.to_numeric(computed[name], errors="coerce").to_numpy(
                    dtype=np.float64, na_value=np.nan)
        users = read[(USER_KEY,)]
        user_plan = self._hashes[(USER_KEY,)]
        found_user = np.zeros(pairs, dtype=bool)
        stale_user = np.zeros(pairs, dtype=bool)
        now = time.time()
        for view, ttl in self._user_views.items():
            found_user |= users.found(user_plan.stamps[view])
            if ttl:
                stale_user |= users.older_than(user_plan.stamps[view], now - ttl)
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
                out[item] = redis_layout.value(raw[self._category_field])
        return out

    def _answers(self, keys: dict[str, list[str]], retry: bool = True
                 ) -> tuple[dict[tuple[str, ...], dict[tuple, list]], dict[str, str]]:
        """Every plan's HMGET answer per distinct entity, and each item's category ("" when
        unknown). Items come from the cache where it holds them, so that their users' category
        rows are read in the same round trip as the users; the rest take a second one."""
        items = list(dict.fromkeys(keys[ITEM_KEY]))
        version, cached = self._cache.lookup(items)
        answers: dict[tuple[str, ...], dict[tuple, list]] = {k: {} for k in self._hashes}
        answers[(ITEM_KEY,)] = {(i,): raw for i, raw in cached.items()}
        categories = {i: self._category(raw) for i, raw in cached.items()}
        wanted = {}
        for plan in self._hashes.values():
            if plan.join_keys == (ITEM_KEY,):
                wanted[plan.join_keys] = [(i,) for i in items if i not in cached]
            else:
                wanted[plan.join_keys] = _distinct(plan.join_keys, keys, categories)
        commands = [self._version_command] + [
            command for keys_, tuples in wanted.items()
            for command in self._commands(self._hashes[keys_], tuples)]
        stored_version, *replies = redis_layout.pipeline(self._client, commands)
        if stored_version != version and cached and retry:
            self._cache.reset(stored_version)  # materialized since: the cached rows are stale
            return self._answers(keys, retry=False)
        offset = 0
        for keys_, tuples in wanted.items():
            answers[keys_].update(zip(tuples, replies[offset:offset + len(tuples)]))
            offset += len(tuples)
        fresh = {t[0]: answers[(ITEM_KEY,)][t] for t in wanted[(ITEM_KEY,)]}
        self._cache.store(fresh, stored_version)
        categories.update({i: self._category(raw) for i, raw in fresh.items()})
        later = {keys_: [t for t in _distinct(keys_, keys, categories) if t not in answers[keys_]]
                 for keys_ in self._hashes if CATEGORY_KEY in keys_}
        commands = [command for keys_, tuples in later.items()
                    for command in self._commands(self._hashes[keys_], tuples)]
        if commands:
            replies = redis_layout.pipeline(self._client, commands)
            offset = 0
            for keys_, tuples in later.items():
                answers[keys_].update(zip(tuples, replies[offset:offset + len(tuples)]))
                offset += len(tuples)
        return answers, categories

    def _category(self, raw: list) -> str:
        """An item's category from its HMGET answer; "" for an unknown item or a null category
        (matches no affinity row, as in Feast's path)."""
        if not raw[self._catalog_stamp]:
            return ""
        return redis_layout.value(raw[self._category_field]) or ""

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


def _keys(view) -> tuple[str, ...]:
    """A view's join keys, sorted as in Feast's entity key."""
    return tuple(sorted(c.name for c in view.entity_columns))


@dataclass(frozen=True)
class _Rows:
    """The HMGET answer of each distinct entity, and which one each pair takes."""

    distinct: list[list[bytes | None]]
    take: np.ndarray

    @classmethod
    def of(cls, join_keys: tuple[str, ...], keys: dict[str, list[str]],
           answers: dict[tuple, list]) -> _Rows:
        tuples = list(zip(*(keys[k] for k in join_keys)))
        distinct = list(dict.fromkeys(tuples))
        index = {t: i for i, t in enumerate(distinct)}
        take = np.fromiter((index[t] for t in tuples), dtype=np.intp, count=len(tuples))
        return cls([answers[t] for t in distinct], take)

    def found(self, stamp_field: int) -> np.ndarray:
        """Per pair: was the view written for its entity? A stored row always carries its
        `_ts:<view>` field."""
        written = np.array([bool(raw[stamp_field]) for raw in self.distinct], dtype=bool)
        return written[self.take]

    def older_than(self, stamp_field: int, cutoff: float) -> np.ndarray:
        """Per pair: was the view's row written with a timestamp before `cutoff` (epoch s)?"""
        old = np.array([bool(raw[stamp_field])
                        and Timestamp.FromString(raw[stamp_field]).seconds < cutoff
                        for raw in self.distinct], dtype=bool)
        return old[self.take]
