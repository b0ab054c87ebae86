"""Running the Persona service: in the foreground (`persona serve`) or in the background with a
handle that waits for readiness and stops it cleanly (the demo and the tests).

Both run `bentoml serve serving.service:PersonaService` from the project root with the settings
passed through the environment: PERSONA_HOME, PERSONA_REDIS_URL, PERSONA_MODEL_TAG,
PERSONA_PROPENSITY_TAG and, when set, PERSONA_API_KEYS (serving.auth). OpenMP's wait policy is set there too, before any server process loads
XGBoost.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import httpx

from persona.core.catalog import resolve_tag
from persona.core.settings import PROJECT_ROOT, Settings
from serving import (
    MODEL_TAG_ENV,
    PROPENSITY_MODEL_NAME,
    PROPENSITY_TAG_ENV,
    SERVICE_NAME,
    resolve_model_tag,
)
from serving.auth import API_KEYS_ENV, api_keys

SERVICE = "serving.service:PersonaService"


class ServerError(RuntimeError):
    """The server exited or did not become ready; the message ends with its log."""


def server_env(settings: Settings, tag: str | None = None, workers: int = 1,
               base: Mapping[str, str] | None = None,
               propensity_tag: str | None = None,
               keys: Sequence[str] | None = None) -> dict[str, str]:
    """The environment a server process needs: `base` (default os.environ) with Persona's
    settings applied. A setting that is not given is removed, so none leaks in from `base`;
    API keys are the exception: `keys` when given, else PERSONA_API_KEYS of `base` if set."""
    env = dict(os.environ if base is None else base)
    if keys is not None:
        _set(env, API_KEYS_ENV, ",".join(keys))
    api_keys(env)  # a malformed value fails here, before a server starts
    env["PERSONA_HOME"] = str(settings.home)
    _set(env, "PERSONA_REDIS_URL", settings.online_url)
    _set(env, MODEL_TAG_ENV, resolve_model_tag(tag) if tag else None)
    _set(env, PROPENSITY_TAG_ENV,
         resolve_tag(PROPENSITY_MODEL_NAME, propensity_tag) if propensity_tag else None)
    env["OMP_WAIT_POLICY"] = env.get("OMP_WAIT_POLICY") or "PASSIVE"
    env.setdefault("BENTOML_DO_NOT_TRACK", "True")
    env["BENTOML_CONFIG_OVERRIDES"] = json.dumps({"services": {SERVICE_NAME: {"workers": workers}}})
    return env


def server_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", host, "--port", str(port),
            "--working-dir", str(PROJECT_ROOT)]


def check_model(tag: str | None, env: Mapping[str, str] | None = None) -> str:
    """The resolved tag ("name:version") of the model a server started with `env` (default
    os.environ) would load; fails early, with a clear message, when its store has none.

    The store is opened from BENTOML_HOME as the server will see it, not through BentoML's
    in-process container, which keeps the first BENTOML_HOME it was asked for.
    """
    from bentoml.exceptions import NotFound  # noqa: PLC0415

    home, store = _model_store(env)
    wanted = resolve_model_tag(tag)
    try:
        return str(store.get(wanted).tag)
    except (NotFound, FileNotFoundError) as exc:
        raise ServerError(f"no model {wanted} in the BentoML model store under {home}: "
                          "train one first (persona train)") from exc


def check_propensity_model(tag: str | None = None,
                           env: Mapping[str, str] | None = None) -> str | None:
    """The resolved tag of the propensity model a server started with `env` would load: `tag`,
    else PERSONA_PROPENSITY_TAG, else the latest; None when none was trained (the server then
    answers /propensity with 503). A pinned version that is missing fails early."""
    from bentoml.exceptions import NotFound  # noqa: PLC0415

    env = os.environ if env is None else env
    home, store = _model_store(env)
    wanted = resolve_tag(PROPENSITY_MODEL_NAME, tag or env.get(PROPENSITY_TAG_ENV))
    try:
        return str(store.get(wanted).tag)
    except (NotFound, FileNotFoundError) as exc:
        if wanted.endswith(":latest"):
            return None
        raise ServerError(f"no model {wanted} in the BentoML model store under {home}") from exc


def _model_store(env: Mapping[str, str] | None):
    """BENTOML_HOME of `env` (default os.environ) and its model store."""
    from bentoml._internal.models import ModelStore  # noqa: PLC0415 (BentoML's own store type)

    env = os.environ if env is None else env
    home = Path(env.get("BENTOML_HOME") or Path.home() / "bentoml").expanduser()
    return home, ModelStore(home / "models")


def serve(settings: Settings, port: int = 3000, model_tag: str | None = None, workers: int = 1,
          host: str = "127.0.0.1") -> NoReturn:
    """Replace this process with the BentoML server, in the foreground, until it is stopped.

    The models are resolved (and pinned) first, so a missing model fails here with a clear
    message. Pass host="0.0.0.0" to listen on every interface (the default is loopback only).
    """
    env = server_env(settings, check_model(model_tag), workers,
                     propensity_tag=check_propensity_model())
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, server_command(host, port), env)


@dataclass
class ServerHandle:
    """A server started by `start_server`; a context manager that stops it on exit."""

    url: str
    model_tag: str
    process: subprocess.Popen
    log_path: Path
    _log: object = field(repr=False, default=None)
    propensity_tag: str | None = None  # None: the server answers /propensity with 503

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (BentoML shuts its workers down gracefully), then SIGKILL to whatever the
        server started that is still alive after `timeout`. Returns the server's exit code."""
        children = _descendants(self.process.pid) if self.running() else []
        if self.running():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        code = self.process.wait()
        for child in children:
            _kill(child)  # BentoML's workers run in sessions of their own, so no group kill
        if self._log is not None:
            self._log.close()
        return code

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def start_server(settings: Settings, port: int | None = None, model_tag: str | None = None, *,
                 host: str = "127.0.0.1", workers: int = 1, timeout: float = 120.0,
                 log_path: Path | None = None,
                 propensity_tag: str | None = None,
                 keys: Sequence[str] | None = None) -> ServerHandle:
    """Start the server in the background and return once /readyz answers 200.

    `port=None` picks a free port. Output goes to `log_path` (default under
    `settings.home / "logs"`). Raises ServerError with the log if the server exits or is not
    ready within `timeout` seconds; the process is stopped first. `keys` turns API-key
    authentication on (default: PERSONA_API_KEYS of this process, if set).
    """
    model_tag = check_model(model_tag)  # pinned, so the handle knows what it serves
    propensity_tag = check_propensity_model(propensity_tag)
    port = port or free_port(host)
    log_path = log_path or settings.home / "logs" / f"serve-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("wb")
    process = subprocess.Popen(
        server_command(host, port), cwd=PROJECT_ROOT,
        env=server_env(settings, model_tag, workers, propensity_tag=propensity_tag, keys=keys),
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )
    connect = "127.0.0.1" if host in ("0.0.0.0", "") else host
    handle = ServerHandle(f"http://{connect}:{port}", model_tag, process, log_path, log,
                          propensity_tag)
    try:
        wait_ready(handle, timeout)
    except BaseException:
        handle.stop()
        raise
    return handle


def wait_ready(handle: ServerHandle, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=handle.url, timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if not handle.running():
                raise ServerError(f"server exited with {handle.process.returncode}:\n"
                                  f"{_tail(handle.logs())}")
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
    raise ServerError(f"server not ready after {timeout:.0f}s:\n{_tail(handle.logs())}")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host if host not in ("0.0.0.0", "") else "127.0.0.1", 0))
        return sock.getsockname()[1]


def _set(env: dict[str, str], key: str, value: str | None) -> None:
    if value:
        env[key] = value
    else:
        env.pop(key, None)


def _descendants(pid: int) -> list[tuple[int, str]]:
    """(process id, start time) of every process below `pid`, from Linux /proc."""
    children: dict[int, list[tuple[int, str]]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append((int(stat.parent.name), fields[19]))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child[0])
    return found


def _kill(process: tuple[int, str]) -> None:
    """SIGKILL a process we saw earlier, only if it is still that process (same start time)."""
    pid, started = process
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        if fields[19] == started:
            os.kill(pid, signal.SIGKILL)
    except (OSError, IndexError):
        pass


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])
