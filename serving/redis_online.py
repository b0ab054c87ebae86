"""Model matrices for (user, item) pairs read straight from Feast's Redis layout: the /rank path.

`serving.online.OnlineFeatureReader` reads through Feast's `get_online_features`, whose response
building and per-value conversion cost most of a /rank request (STACK-NOTES: 8.6 of 14.6 ms for
1 user + 50 items). On a Redis online store this reader does the same reads itself. The registry
is read once, at start-up, into a plan: which hash fields of which entity keys feed which model
column. A request is then two pipelines (the user and the items; then the user x
category rows of the items' categories), decoded straight into the matrix. On-demand features
come from the on-demand view's own transform, the function Feast runs for training and
get_online_features. Every value equals what get_online_features returns (tests/test_serving.py
compares them over many entities).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from feast import FeatureStore, OnDemandFeatureView
from feast.infra.online_stores.helpers import _mmh3, compute_versioned_name
from feast.infra.online_stores.redis import RedisOnlineStore
from feast.types import String

from persona import fast_redis
from serving.online import (
    CATALOG_VIEW,
    CATEGORY_KEY,
    ITEM_KEY,
    USER_KEY,
    FeatureRows,
    OnlineFeatureReader,
    resolve_service,
)


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

    @property
    def command(self) -> tuple[bytes, bytes]:
        """The packed HMGET of `fields` (see `persona.fast_redis.hmget_parts`)."""
        return fast_redis.hmget_parts(self.fields)

    def stamp_of(self, view: str) -> None:
        if view not in self.stamps:
            self.stamps[view] = len(self.fields)
            self.fields.append(f"_ts:{view}".encode())


def online_reader(store: FeatureStore, feature_service: str,
                  columns: Sequence[str]) -> OnlineFeatureReader | RedisFeatureReader:
    """The reader /rank and /predict use: the direct one where Feast's layout is a single Redis
    server's, Feast's get_online_features elsewhere (SQLite, Redis Cluster or Sentinel)."""
    if fast_redis.supports(store.config):
        return RedisFeatureReader(store, feature_service, columns)
    return OnlineFeatureReader(store, feature_service, columns)


class RedisFeatureReader:
    """The same interface and answers as `OnlineFeatureReader`, for a single Redis server with
    version-3 entity keys (`persona.fast_redis.supports`)."""

    def __init__(self, store: FeatureStore, feature_service: str, columns: Sequence[str]):
        config = store.config
        if not fast_redis.supports(config):
            raise fast_redis.UnsupportedLayout("the direct reader needs a single Redis server "
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
            plan = self._hashes.setdefault(keys, _Hash(keys, fast_redis.key_prefix(keys)))
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
        self._user_views = [p.name for p in service.feature_view_projections
                             if p.name in views and _keys(views[p.name]) == (USER_KEY,)]
        if not self._user_views:
            raise ValueError(f"feature service {feature_service!r} has no view keyed by {USER_KEY}")
        catalog = self._hashes.get((ITEM_KEY,))
        if catalog is None or CATALOG_VIEW not in catalog.stamps:
            raise ValueError(f"feature service {feature_service!r} reads no {CATALOG_VIEW}")
        self._category_field = catalog.field_of(CATALOG_VIEW, CATEGORY_KEY)
        self._commands = {keys: plan.command for keys, plan in self._hashes.items()}

    def for_user(self, user_id: str, item_ids: Sequence[str]) -> FeatureRows:
        """One user against candidate items (the /rank case)."""
        return self.rows([user_id] * len(item_ids), item_ids)

    def rows(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> FeatureRows:
        """Arbitrary (user, item) pairs, in the order given."""
        if len(user_ids) != len(item_ids):
            raise ValueError("user_ids and item_ids must have the same length")
        pairs = len(item_ids)
        keys = {USER_KEY: list(user_ids), ITEM_KEY: list(item_ids)}
        first = [plan for plan in self._hashes.values() if CATEGORY_KEY not in plan.join_keys]
        read = self._read(first, keys)
        items = read[(ITEM_KEY,)]
        catalog = self._hashes[(ITEM_KEY,)]
        found_item = items.found(catalog.stamps[CATALOG_VIEW])
        categories = [fast_redis.value(raw) or "" for raw in items.column(self._category_field)]
        keys[CATEGORY_KEY] = [c if ok else "" for c, ok in zip(categories, found_item)]
        second = [plan for plan in self._hashes.values() if CATEGORY_KEY in plan.join_keys]
        read.update(self._read(second, keys))

        matrix = np.full((pairs, len(self.columns)), np.nan)
        inputs: dict[str, list] = {}
        for plan in self._hashes.values():
            rows = read[plan.join_keys]
            if plan.numbers:
                fields, columns = zip(*plan.numbers)
                decoded = np.array([[fast_redis.number(raw[f]) for f in fields]
                                    for raw in rows.distinct], dtype=np.float64)
                matrix[:, list(columns)] = decoded.reshape(-1, len(fields))[rows.take]
            for index, name, text in plan.inputs:
                decode = fast_redis.value if text else fast_redis.number
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
        for view in self._user_views:
            found_user |= users.found(user_plan.stamps[view])
        return FeatureRows(matrix, ~found_user, ~found_item)

    def categories(self, item_ids: Sequence[str]) -> dict[str, str | None]:
        """Each known item's category (None if its row holds no category); unknown items are
        left out. One HMGET per item: also the readiness probe's read."""
        unique = list(dict.fromkeys(item_ids))
        if not unique:
            return {}
        plan = self._hashes[(ITEM_KEY,)]
        rows = self._read([plan], {ITEM_KEY: unique})[(ITEM_KEY,)]
        found = rows.found(plan.stamps[CATALOG_VIEW])
        values = [fast_redis.value(raw) for raw in rows.column(self._category_field)]
        return {item: value for item, value, ok in zip(unique, values, found) if ok}

    def _read(self, plans: Sequence[_Hash], keys: dict[str, list[str]]) -> dict:
        """One pipeline of HMGETs, one per distinct entity of each plan; each plan's answer
        expanded back to one row per pair."""
        commands, wanted = [], []
        for plan in plans:
            tuples = list(zip(*(keys[k] for k in plan.join_keys)))
            distinct = list(dict.fromkeys(tuples))
            command = self._commands[plan.join_keys]
            commands += [fast_redis.hmget(command, fast_redis.entity_key(plan.prefix, values,
                                                                          self._project))
                         for values in distinct]
            wanted.append((plan, tuples, distinct))
        replies = fast_redis.pipeline(self._client, commands)
        out, offset = {}, 0
        for plan, tuples, distinct in wanted:
            index = {values: i for i, values in enumerate(distinct)}
            take = np.fromiter((index[t] for t in tuples), dtype=np.intp, count=len(tuples))
            out[plan.join_keys] = _Rows(replies[offset:offset + len(distinct)], take)
            offset += len(distinct)
        return out


def _keys(view) -> tuple[str, ...]:
    """A view's join keys, sorted as in Feast's entity key."""
    return tuple(sorted(c.name for c in view.entity_columns))


@dataclass(frozen=True)
class _Rows:
    """The HMGET answer of each distinct entity, and which one each pair takes."""

    distinct: list[list[bytes | None]]
    take: np.ndarray

    def column(self, index: int) -> list[bytes | None]:
        """One field, per pair."""
        return [self.distinct[i][index] for i in self.take]

    def found(self, stamp_field: int) -> np.ndarray:
        """Per pair: was the view written for its entity? A stored row always carries its
        `_ts:<view>` field."""
        written = np.array([bool(raw[stamp_field]) for raw in self.distinct], dtype=bool)
        return written[self.take]
