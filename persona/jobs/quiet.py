"""Library warnings a Persona user can do nothing about, kept off normal runs of the CLI
(`persona --verbose` shows them). Each is named by category, the library module that raises it
and the start of its message, so any other warning, and every log line of Persona's own, still
shows.

Why not `warnings.filterwarnings(module=..., message=...)`: Feast calls
`warnings.simplefilter("once", DeprecationWarning)` (and RuntimeWarning) as each of its modules is
imported, which puts that filter in front of every filter set before, and the commands import
Feast after the CLI's callback ran. So the same three tests are made where a warning is shown.
Great Expectations sends warnings to the `py.warnings` logger when it is imported; doing it first
here keeps the filter in place (that call replaces `warnings.showwarning` only once).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Muted:
    category: type[Warning]
    module: str  # regular expression the whole dotted module name matches
    message: str  # regular expression the start of the message matches
    why: str


MUTED = (
    Muted(RuntimeWarning, r"feast\.feature_store",
          r"On demand feature view is an experimental feature",
          "Feast says so on every apply of an on-demand view; Persona's recency transforms are "
          "on-demand views by design"),
    Muted(DeprecationWarning, r"ibis\.backends\.duckdb", r"fetch_arrow_table\(\) is deprecated",
          "Feast's DuckDB offline store reads through ibis, which calls DuckDB's old name"),
    Muted(DeprecationWarning,
          r"great_expectations\.datasource\.fluent\.data_connector\.file_path_data_connector",
          r"module 'sre_(constants|parse)' is deprecated",
          "Great Expectations imports Python's old regex internals"),
    Muted(DeprecationWarning, r"pathspec(\..+)?", r"GitWildMatchPattern \('gitwildmatch'\)",
          "BentoML builds its default ignore patterns with pathspec's old pattern name"),
)


def module_of(filename: str) -> str:
    """The dotted name of the module in `filename`, relative to the deepest `sys.path`
    directory holding it (`.../site-packages/ibis/backends/duckdb/__init__.py` ->
    `ibis.backends.duckdb`); the file's name when no directory of the path holds it."""
    path = Path(os.path.abspath(filename))
    roots = sorted({Path(os.path.abspath(p)) for p in sys.path if p},
                   key=lambda p: len(p.parts), reverse=True)
    for root in roots:
        if path.is_relative_to(root):
            parts = path.relative_to(root).with_suffix("").parts
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    return path.stem


def muted(category: type[Warning], filename: str, message: str) -> bool:
    """Whether a warning is one of MUTED."""
    module = module_of(filename)
    return any(issubclass(category, rule.category) and re.fullmatch(rule.module, module)
               and re.match(rule.message, message) for rule in MUTED)


def quiet_libraries() -> None:
    """Drop the MUTED warnings from here on, in this process (idempotent)."""
    logging.captureWarnings(True)
    shown = warnings.showwarning
    if getattr(shown, "persona_quiet", False):
        return

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if not muted(category, filename, str(message)):
            shown(message, category, filename, lineno, file, line)

    showwarning.persona_quiet = True
    warnings.showwarning = showwarning
