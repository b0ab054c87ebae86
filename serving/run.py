"""Running the Persona service: in the foreground (`persona serve`) or in the background with a
handle that waits for readiness and stops it cleanly (the demo and the tests).

Both run `bentoml serve serving.service:PersonaService` from the project root with the settings
passed through the environment the settings build (`Settings.environment`): the home, the
online store, the pinned model versions, API keys and OpenMP's wait policy, set before any
server process loads XGBoost.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NoReturn

import httpx

from persona.core.catalog import (
    WrongHomeError,
    foreign_model_warning,
    newest_for_home,
    resolve_tag,
)
from persona.core.settings import BENTOML_HOME, PROJECT_ROOT, Settings
from serving import (
    MODEL_NAME,
    PROPENSITY_MODEL_NAME,
    SERVICE_NAME,
    resolve_model_tag,
    resolve_propensity_tag,
)

SERVICE = "serving.service:PersonaService"
log = logging.getLogger(__name__)


class ServerError(RuntimeError):
    """The server exited or did not become ready; the message ends with its log."""


def server_env(settings: Settings, tag: str | None = None, workers: int = 1,
               base: Mapping[str, str] | None = None,
               propensity_tag: str | None = None,
               keys: Sequence[str] | None = None) -> dict[str, str]:
    """The environment a server process needs: `base` (default this process's environment) with
    Persona's settings applied. A model tag that is not given is removed, so none leaks in from
    `base`; `keys`, when given, replace the settings' API keys."""
    pinned = replace(
        settings,
        model_tag=resolve_model_tag(tag) if tag else None,
        propensity_tag=resolve_propensity_tag(propensity_tag) if propensity_tag else None,
        api_keys=settings.api_keys if keys is None else tuple(keys))
    overrides = json.dumps({"services": {SERVICE_NAME: {"workers": workers}}})
    env = pinned.environment(base, {"BENTOML_CONFIG_OVERRIDES": overrides})
    env.setdefault("BENTOML_DO_NOT_TRACK", "True")
    return env


def server_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", host, "--port", str(port),
            "--working-dir", str(PROJECT_ROOT)]


def check_home(settings: Settings) -> None:
    """Fail, touching nothing, when the home was never ingested: a server without its feature
    registry would fail in every worker, and BentoML restarts failed workers forever."""
    from persona.data.offline import current_manifest  # noqa: PLC0415

    if not settings.registry_path.exists() or current_manifest(settings.offline_root) is None:
        raise ServerError(f"no ingested features in {settings.home}: run persona ingest DIR "
                          "and persona materialize first (or pass the home that has them)")


def check_model(tag: str | None, settings: Settings | None = None) -> str:
    """The resolved tag ("name:version") of the model a server started with `settings` (default
    from the environment) would load: `tag`, else PERSONA_MODEL_TAG, else the latest trained on
    the settings' home; fails early, with a clear message, when there is none (or only other
    homes' models). A pinned model of another home is served, with a warning.

    The store is opened from BENTOML_HOME as the server will see it, not through BentoML's
    in-process container, which keeps the first BENTOML_HOME it was asked for.
    """
    settings = settings or Settings.from_env()
    found = _home_model(settings, MODEL_NAME, "conversion", tag or settings.model_tag)
    if found is None:
        home, _ = _model_store(settings)
        raise ServerError(f"no model {resolve_model_tag(tag, settings)} in the BentoML model "
                          f"store under {home}: train one first (persona train)")
    return found


def check_propensity_model(tag: str | None = None,
                           settings: Settings | None = None) -> str | None:
    """The resolved tag of the propensity model a server started with `settings` would load: `tag`,
    else PERSONA_PROPENSITY_TAG, else the latest trained on the home; None when there is none
    (the server then answers /propensity with 503; only other homes' models: with a warning). A
    pinned version that is missing fails early."""
    settings = settings or Settings.from_env()
    try:
        return _home_model(settings, PROPENSITY_MODEL_NAME, "propensity",
                           tag or settings.propensity_tag)
    except ServerError as exc:
        if isinstance(exc.__cause__, WrongHomeError):
            log.warning("serving without a propensity model: %s", exc)
            return None
        raise


def _home_model(settings: Settings, name: str, task: str, pinned: str | None) -> str | None:
    """The tag of `pinned` (warning when it was trained on another home), else of the newest
    model `name` trained on the settings' home; None when there is none at all."""
    from bentoml.exceptions import NotFound  # noqa: PLC0415

    from persona.data.offline import home_of  # noqa: PLC0415

    home, store = _model_store(settings)
    if pinned is None:
        try:
            versions = store.list(name)
        except (NotFound, FileNotFoundError):
            versions = []
        try:
            chosen = newest_for_home(versions, home_of(settings), task)
        except WrongHomeError as exc:
            raise ServerError(str(exc)) from exc
        return None if chosen is None else str(chosen.tag)
    wanted = resolve_tag(name, pinned)
    try:
        model = store.get(wanted)
    except (NotFound, FileNotFoundError) as exc:
        raise ServerError(f"no model {wanted} in the BentoML model store under {home}") from exc
    warning = foreign_model_warning(str(model.tag), model.info.metadata, home_of(settings))
    if warning:
        log.warning("%s", warning)
    return str(model.tag)


def _model_store(settings: Settings):
    """The BentoML home a server started with `settings` sees, and its model store."""
    from bentoml._internal.models import ModelStore  # noqa: PLC0415 (BentoML's own store type)

    home = Path(settings.environment().get(BENTOML_HOME) or Path.home() / "bentoml").expanduser()
    return home, ModelStore(home / "models")


def serve(settings: Settings, port: int = 3000, model_tag: str | None = None, workers: int = 1,
          host: str = "127.0.0.1") -> NoReturn:
    """Replace this process with the BentoML server, in the foreground, until it is stopped.

    The models are resolved (and pinned) first, so a missing model fails here with a clear
    message. Pass host="0.0.0.0" to listen on every interface (the default is loopback only).
    """
    check_home(settings)
    env = server_env(settings, check_model(model_tag, settings), workers,
                     propensity_tag=check_propensity_model(settings=settings))
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
    authentication on (default: the settings' API keys).
    """
    check_home(settings)
    model_tag = check_model(model_tag, settings)  # pinned, so the handle knows what it serves
    propensity_tag = check_propensity_model(propensity_tag, settings)
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
