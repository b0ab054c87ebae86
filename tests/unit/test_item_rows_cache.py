"""Items' rows as the item cache keeps them: HMGET answers decoded once into `Entity` (numbers
as a read-only numpy row, transform inputs, stamps, the item's category), shared between
threads by one cache."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from feast.protos.feast.types.Value_pb2 import Value
from google.protobuf.timestamp_pb2 import Timestamp

from serving.item_cache import ItemCache
from serving.online import CATALOG_VIEW
from serving.redis_online import Entity, _Hash


def catalog_plan() -> _Hash:
    """The items' hash as the reader plans it: two numbers, the category as a text input and
    the catalogue's stamp."""
    plan = _Hash(("item_id",), b"prefix")
    plan.stamp_of(CATALOG_VIEW)
    plan.numbers += [(plan.field_of(CATALOG_VIEW, "list_price"), 5),
                     (plan.field_of(CATALOG_VIEW, "stock"), 2)]
    plan.category_field = plan.field_of(CATALOG_VIEW, "category")
    plan.inputs.append((plan.category_field, "category", True))
    return plan


def answer(plan: _Hash, **values: bytes | None) -> list[bytes | None]:
    """An HMGET answer of `plan` holding `values` by field position name."""
    raw: list[bytes | None] = [None] * len(plan.fields)
    for name, value in values.items():
        raw[int(name[1:])] = value
    return raw


def test_an_item_is_decoded_once_into_numbers_inputs_stamps_and_category() -> None:
    plan = catalog_plan()
    stamp = Timestamp(seconds=1_790_000_000).SerializeToString()
    price = Value(double_val=12.5).SerializeToString()
    stock = Value(int64_val=-3).SerializeToString()
    books = Value(string_val="books").SerializeToString()
    item = plan.decode(answer(plan, f0=stamp, f1=price, f2=stock, f3=books))
    assert isinstance(item, Entity)
    assert item.numbers.tolist() == [12.5, -3.0] and item.numbers.dtype == np.float64
    assert item.inputs == ("books",) and item.category == "books"
    assert item.stamps == {CATALOG_VIEW: stamp}
    with pytest.raises(ValueError):  # shared by every request that reads the item
        item.numbers[0] = 0.0

    null_category = plan.decode(answer(plan, f0=stamp, f1=price, f3=b""))
    assert np.isnan(null_category.numbers[1]) and null_category.category == ""
    assert null_category.inputs == (None,)
    unknown = plan.decode(answer(plan))  # no catalogue row: no category, every value missing
    assert unknown.category == "" and np.isnan(unknown.numbers).all()
    assert not unknown.stamps[CATALOG_VIEW]


def test_readers_always_get_rows_of_the_version_they_are_told() -> None:
    """Threads reading one cache while materializations replace its rows: every lookup answers
    rows (the stored objects, not copies) of the very version it reports, and rows read under
    an older version than the cache's are dropped."""
    plan = catalog_plan()
    items = [f"i{n}" for n in range(100)]

    def rows_of(version: int) -> dict[str, Entity]:
        value = Value(double_val=version).SerializeToString()
        return {i: plan.decode(answer(plan, f1=value)) for i in items}

    cache: ItemCache[Entity] = ItemCache()
    stored = {1: rows_of(1)}
    cache.store(stored[1], b"1")
    wrong: list[str] = []

    def read() -> None:
        for _ in range(300):
            version, got = cache.lookup(items)
            wrong.extend(i for i, row in got.items() if row is not stored[int(version)][i])

    threads = [threading.Thread(target=read) for _ in range(3)]
    for thread in threads:
        thread.start()
    for version in range(2, 30):
        stored[version] = rows_of(version)
        cache.reset(str(version).encode())
        cache.store(stored[version], str(version).encode())
    for thread in threads:
        thread.join()
    assert wrong == []
    cache.store(rows_of(5), b"5")  # read before the latest materialization: not kept
    assert cache.lookup(items[:1]) == (b"29", {items[0]: stored[29][items[0]]})
