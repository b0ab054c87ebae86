"""What the CLI prints besides its results: the progress line with counts (on stderr), and no
library warning a user cannot act on, unless --verbose."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from rich.console import Console

from persona.jobs.progress import count_text, steps
from persona.jobs.quiet import module_of, muted

SITE = Path(sysconfig.get_paths()["purelib"])


@pytest.mark.parametrize("done, total, text", [
    (0, 9, "0/9"), (1200, 5000, "1,200/5,000"), (7, None, "7"), (0, 0, "0/0"),
])
def test_count_text(done: int, total: int | None, text: str) -> None:
    assert count_text(done, total) == text


def _drawn(*calls: tuple) -> str:
    """What `steps("job")` leaves on a file (not a terminal: Rich prints the final state once)
    after `calls`: a step name, or a (done, total) count."""
    out = io.StringIO()
    with steps("job", out=Console(file=out, width=120)) as on_step:
        for call in calls:
            on_step.count(*call) if isinstance(call, tuple) else on_step(call)
    return out.getvalue()


def test_a_counted_step_draws_done_of_total_and_keeps_the_job_line() -> None:
    drawn = _drawn("loading", (0, 2538), (1200, 2538), (2538, 2538))
    assert re.fullmatch(r"\S job: done ━{30} 2,538/2,538 0:00:0\d\n", drawn)


def test_a_new_step_clears_the_count_and_an_unknown_total_shows_done_only() -> None:
    assert re.fullmatch(r"\S job: done 0:00:0\d\n", _drawn("tables", (3, 9), "validating"))
    assert re.fullmatch(r"\S job: done 0:00:0\d\n", _drawn("one step"))
    assert re.fullmatch(r"\S job: done ━{30} 5 0:00:0\d\n", _drawn("rows", (5, None)))


def _library_file(*parts: str) -> str:
    return str(SITE.joinpath(*parts))


@pytest.mark.parametrize("category, filename, message, expected", [
    (DeprecationWarning, _library_file("ibis", "backends", "duckdb", "__init__.py"),
     "fetch_arrow_table() is deprecated, use to_arrow_table() instead.", True),
    (RuntimeWarning, _library_file("feast", "feature_store.py"),
     "On demand feature view is an experimental feature. This API is stable, but ...", True),
    (DeprecationWarning, _library_file("great_expectations", "datasource", "fluent",
                                       "data_connector", "file_path_data_connector.py"),
     "module 'sre_parse' is deprecated", True),
    (DeprecationWarning, _library_file("pathspec", "pattern.py"),
     "GitWildMatchPattern ('gitwildmatch') is deprecated. Use 'gitignore' ...", True),
    # the same message from another module, another category, another message: shown
    (DeprecationWarning, _library_file("ibis", "expr", "api.py"),
     "fetch_arrow_table() is deprecated, use to_arrow_table() instead.", False),
    (UserWarning, _library_file("ibis", "backends", "duckdb", "__init__.py"),
     "fetch_arrow_table() is deprecated", False),
    (DeprecationWarning, _library_file("feast", "feature_store.py"),
     "entity_key_serialization_version 2 is deprecated", False),
])
def test_only_the_named_library_warnings_are_muted(category: type[Warning], filename: str,
                                                   message: str, expected: bool) -> None:
    assert muted(category, filename, message) is expected


def test_module_of_names_the_module_from_its_file() -> None:
    assert module_of(_library_file("ibis", "backends", "duckdb", "__init__.py")) == \
        "ibis.backends.duckdb"
    assert module_of(_library_file("feast", "feature_store.py")) == "feast.feature_store"


def test_quiet_libraries_survives_feast_and_ge_resetting_the_warning_machinery() -> None:
    """In a fresh process: after quiet_libraries(), a library's own `simplefilter("once")` (Feast
    does it on import) and `logging.captureWarnings(True)` (GE does) do not bring the muted
    warning back; any other warning still shows."""
    ibis = _library_file("ibis", "backends", "duckdb", "__init__.py")
    probe = (
        "import logging, warnings\n"
        "from persona.jobs.quiet import quiet_libraries\n"
        "logging.basicConfig(format='%(levelname)s %(name)s: %(message)s')\n"
        "quiet_libraries()\n"
        "warnings.simplefilter('once', DeprecationWarning)\n"
        "logging.captureWarnings(True)\n"
        f"warnings.warn_explicit('fetch_arrow_table() is deprecated', DeprecationWarning, "
        f"{ibis!r}, 332)\n"
        f"warnings.warn_explicit('something else is deprecated', DeprecationWarning, "
        f"{ibis!r}, 333)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert "fetch_arrow_table" not in done.stderr
    assert "DeprecationWarning: something else is deprecated" in done.stderr
