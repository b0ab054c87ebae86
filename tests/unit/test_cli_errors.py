"""The CLI's first contact: option mistakes answered at once (before Feast, BentoML, XGBoost or GE
are imported), one `error: ...` line and exit code 1 for every failure (the traceback only with
--verbose), the task's choices in --help, and --version."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from persona import cli
from persona.cli import app, one_line_errors

HEAVY = ("feast", "bentoml", "xgboost", "great_expectations")


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


@pytest.mark.parametrize("args, message", [
    (["train", "--horizon", "3x"], "error: horizon '3x': expected a number of days"),
    (["train", "--until", "someday"], "error: "),
    (["score", "--task", "propensity", "--out", "x.parquet", "--as-of", "someday"],
     "error: "),
    (["ingest", ".", "--interval", "2h30"], "error: snapshot interval '2h30'"),
])
def test_option_errors_are_one_line_and_import_nothing_heavy(args: list[str],
                                                             message: str) -> None:
    probe = ("import json, sys\nfrom typer.testing import CliRunner\nfrom persona.cli import app\n"
             f"r = CliRunner().invoke(app, {args!r})\n"
             f"print(json.dumps([r.exit_code, r.output, [m for m in {HEAVY!r} "
             "if m in sys.modules]]))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    code, output, imported = json.loads(done.stdout.strip().splitlines()[-1])
    assert code == 1 and imported == []
    (line,) = _error_lines(output)
    assert line.startswith(message) and "Traceback" not in output


def test_a_wrong_task_lists_the_choices_and_help_shows_them() -> None:
    result = CliRunner().invoke(app, ["train", "--task", "nope"])
    assert result.exit_code == 2
    assert all(task in result.output
               for task in ("conversion", "propensity", "retrieval", "recommend"))
    helped = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert "<conversion|propensity|recommend|retrieval>" in helped.output


def test_version_names_persona_and_the_libraries() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].startswith("persona ")
    assert [line.split()[0] for line in lines[1:]] == list(cli.LIBRARIES)
    assert all("not installed" not in line for line in lines)


def test_serve_on_a_home_never_ingested_fails_at_once_and_creates_nothing(
        tmp_path: Path) -> None:
    home = tmp_path / "empty"
    result = CliRunner().invoke(app, ["serve", "--home", str(home)])
    assert result.exit_code == 1
    (line,) = _error_lines(result.output)
    assert line.startswith(f"error: no ingested features in {home}") and "persona ingest" in line
    assert not home.exists()


def _failing(exc: Exception) -> typer.Typer:
    demo = typer.Typer()

    @demo.command()
    @one_line_errors
    def fail() -> None:
        raise exc

    @demo.command()
    def other() -> None:  # a second command, so `fail` is addressed by name
        pass
    return demo


def test_an_unexpected_failure_names_its_type_and_verbose_shows_the_traceback(
        monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(_failing(RuntimeError("boom")), ["fail"])
    assert result.exit_code == 1
    (line,) = _error_lines(result.output)
    assert line == "error: RuntimeError: boom (--verbose for the traceback)"
    expected = CliRunner().invoke(_failing(ValueError("bad value")), ["fail"])
    assert _error_lines(expected.output) == ["error: bad value"]
    monkeypatch.setattr(cli, "_verbose", True)
    verbose = CliRunner().invoke(_failing(RuntimeError("boom")), ["fail"])
    assert isinstance(verbose.exception, RuntimeError)
