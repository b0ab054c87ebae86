"""Items' decoded rows kept between /rank requests, valid for one materialization."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Generic, TypeVar

from persona.core.settings import DEFAULT_ITEM_CACHE_SECONDS, DEFAULT_ITEM_CACHE_SIZE, Settings

Row = TypeVar("Row")


class ItemCache(Generic[Row]):
    """Items' rows, kept between requests: item rows change only when features are
    materialized, and they are most of what /rank reads. The reader keeps them decoded
    (`serving.redis_online.Entity`), so a request decodes only its user's rows.

    Valid for one materialization: `persona materialize` bumps a version key in Redis when it
    is done, every read fetches that key in its first round trip, and a new version empties the
    cache. Bounded: at most `size` items (emptied when full) and `max_age` seconds (emptied when
    older), which also bounds staleness after writes that do not bump the version (Feast's own
    `feast materialize`). `size=0` turns it off. Rows are shared between threads as they are:
    they must not be changed once stored.
    """

    def __init__(self, size: int = DEFAULT_ITEM_CACHE_SIZE,
                 max_age: float = DEFAULT_ITEM_CACHE_SECONDS) -> None:
        self.size, self.max_age = size, max_age
        self._lock = threading.Lock()
        self._rows: dict[str, Row] = {}
        self._version: bytes | None = None
        self._since = time.monotonic()

    @classmethod
    def from_settings(cls, settings: Settings) -> ItemCache:
        """PERSONA_ITEM_CACHE_SIZE (items, 0 = off) and PERSONA_ITEM_CACHE_SECONDS."""
        return cls(settings.item_cache_size, settings.item_cache_seconds)

    def lookup(self, items: Sequence[str]) -> tuple[bytes | None, dict[str, Row]]:
        """The version the cache holds and its rows of `items`."""
        with self._lock:
            if time.monotonic() - self._since > self.max_age:
                self._rows, self._since = {}, time.monotonic()
            rows = self._rows
            return self._version, {i: rows[i] for i in items if i in rows}

    def reset(self, version: bytes | None) -> None:
        """Empty the cache for a newer version (an older one, seen by a slower request, is
        ignored)."""
        with self._lock:
            if _count(version) >= _count(self._version):
                self._rows, self._version, self._since = {}, version, time.monotonic()

    def store(self, rows: dict[str, Row], version: bytes | None) -> None:
        """Keep rows read under `version`: a newer version empties the cache first, and rows
        read under an older one than the cache holds are dropped."""
        if not self.size or not rows:
            return
        with self._lock:
            if _count(version) < _count(self._version):
                return
            if version != self._version:
                self._rows, self._version, self._since = {}, version, time.monotonic()
            if len(self._rows) + len(rows) > self.size:
                self._rows = {}
            self._rows.update(rows)


def _count(version: bytes | None) -> int:
    """The materialization counter (an INCR'd key; absent before the first bump)."""
    return int(version) if version else 0
