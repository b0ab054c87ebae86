"""One writer at a time per Persona home: a second ingest or materialize waits, then fails."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class BusyError(RuntimeError):
    """Another Persona job holds the lock on this home."""


@contextmanager
def exclusive(lock_path: Path, wait_seconds: float = 30.0) -> Iterator[None]:
    """Hold an advisory lock; the kernel releases it if the process dies, so no stale locks."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BusyError(f"another persona job is writing to {lock_path.parent} "
                                    f"(waited {wait_seconds:.0f}s); try again when it ends"
                                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
