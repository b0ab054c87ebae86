"""A private `redis-server` on a free 127.0.0.1 port, no persistence: for benchmarks and tests.

`RedisProcess` can be stopped and started again on the same port (an outage): with
`stop(keep_data=True)` it writes its data to `dump.rdb` in its directory first, which the next
start loads. `local_redis` runs one for the length of a block.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis


class RedisProcess:
    """`redis-server` on one loopback port (no automatic RDB saves, no AOF, working dir
    `directory`), which can be stopped and started again on the same port."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise FileNotFoundError("redis-server is not installed (make redis-server installs it)")
        if port is None:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
        self.port, self.directory = port, directory
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = 10.0) -> str:
        """Start it (loading `dump.rdb` of its directory if there is one); returns its URL."""
        with (self.directory / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.directory), "--protected-mode", "yes"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        _wait_for(self.url, self.process, timeout, self.directory / "redis.log")
        return self.url

    def stop(self, keep_data: bool = False) -> None:
        """Stop it (SIGTERM, then SIGKILL after 5 s); with `keep_data`, SAVE to dump.rdb first."""
        if self.process is None or self.process.poll() is not None:
            return
        if keep_data:
            client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
            try:
                client.save()
            finally:
                client.close()
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextmanager
def local_redis(directory: Path, timeout: float = 10.0) -> Iterator[str]:
    """Run `redis-server` on a free loopback port (no RDB, no AOF, working dir `directory`)
    until the block ends; yields its URL."""
    server = RedisProcess(directory)
    try:
        yield server.start(timeout)
    finally:
        server.stop()


def _wait_for(url: str, process: subprocess.Popen, timeout: float, log: Path) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {log.read_text(errors='replace')}")
            try:
                if client.ping():
                    return
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        raise TimeoutError(f"redis-server not answering at {url} after {timeout}s")
    finally:
        client.close()
