"""A real command on a small ingested home, in its own process: no library warning on a normal
run (stderr is a pipe: the final progress line, once), the muted ones back with --verbose."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from homes import ingested_home

from persona.core.settings import Settings
from persona.jobs.quiet import MUTED

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, small_shop) -> Settings:
    return ingested_home(tmp_path_factory.mktemp("quiet"), small_shop)


def _persona(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PERSONA_REDIS_URL", "PERSONA_HOME")}
    return subprocess.run([sys.executable, "-m", "persona.cli", *args], capture_output=True,
                          text=True, env=env, timeout=600)


def test_materialize_prints_no_library_warning_and_verbose_shows_them(home: Settings) -> None:
    normal = _persona("materialize", "--home", str(home.home), "--json")
    assert normal.returncode == 0, normal.stderr
    assert json.loads(normal.stdout)["rows"]["user_profile"] == 600
    assert not [line for line in normal.stderr.splitlines() if "warning" in line.lower()]
    assert "materialize: done" in normal.stderr  # stderr is a pipe: the final line, once

    verbose = _persona("--verbose", "materialize", "--home", str(home.home), "--full")
    assert verbose.returncode == 0, verbose.stderr
    assert any(re.search(rule.message, verbose.stderr) for rule in MUTED), \
        "no muted warning left in the libraries: drop it from persona/jobs/quiet.py"
