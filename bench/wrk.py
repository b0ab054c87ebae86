"""HTTP load with wrk (Debian's `wrk` package) against 127.0.0.1 only, bounded in time.

A generated Lua script posts JSON bodies in turn, counts every response by status in each of
wrk's threads and prints one JSON line at the end: requests, throughput, latency percentiles,
socket errors and the status counts, so a run tells 200s from 503s from 500s.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

MARKER = "WRK-JSON "
_SCRIPT = """
local bodies = {%(bodies)s}
local counter = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function request()
  counter = counter %% #bodies + 1
  return wrk.format("POST", "%(path)s", {["Content-Type"] = "application/json"}, bodies[counter])
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[tostring(status)] = (counts[tostring(status)] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%%s": %%d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    '%(marker)s{"requests": %%d, "duration_s": %%f, "p50_ms": %%f, "p90_ms": %%f, ' ..
    '"p99_ms": %%f, "max_ms": %%f, "mean_ms": %%f, "errors_connect": %%d, "errors_read": %%d, ' ..
    '"errors_write": %%d, "errors_timeout": %%d, "statuses": {%%s}}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3,
    latency:percentile(90) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3,
    latency.mean / 1e3, e.connect, e.read, e.write, e.timeout, table.concat(parts, ", ")))
end
"""


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string for ASCII text


def run(url: str, path: str, bodies: list[dict], seconds: float, connections: int,
        threads: int = 2, timeout_s: float = 5.0) -> dict:
    """`connections` connections over `threads` threads for `seconds`, posting `bodies` in turn.
    Returns wrk's figures plus requests_per_s and errors (socket errors and non-2xx)."""
    binary = shutil.which("wrk")
    if binary is None:
        raise FileNotFoundError("wrk is not installed (make bench installs Debian's wrk)")
    if urlsplit(url).hostname != "127.0.0.1":
        raise ValueError(f"load is only sent to 127.0.0.1, not {url}")
    script = _SCRIPT % {"bodies": ", ".join(_lua_string(json.dumps(b)) for b in bodies),
                        "path": path, "marker": MARKER}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        done = subprocess.run(
            [binary, "-t", str(min(threads, connections)), "-c", str(connections),
             "-d", f"{max(round(seconds), 1)}s", "--timeout", f"{timeout_s:g}s",
             "-s", handle.name, url],
            capture_output=True, text=True, timeout=seconds + 60, check=False)
    finally:
        Path(handle.name).unlink()
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-2000:]}"
                           f"{done.stderr[-2000:]}")
    figures = json.loads(lines[-1][len(MARKER):])
    figures["requests_per_s"] = figures["requests"] / figures["duration_s"]
    socket_errors = sum(figures[k] for k in ("errors_connect", "errors_read", "errors_write",
                                             "errors_timeout"))
    not_ok = sum(n for status, n in figures["statuses"].items() if not status.startswith("2"))
    figures["errors"] = socket_errors + not_ok
    return figures
