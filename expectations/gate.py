"""The runner of the data-quality gates: validate a frame, write Data Docs, fail loudly.

Suites are declared in `raw`, `features` and `training`; this module only runs them, each run
in an ephemeral (in-memory) Data Context: a throwaway one when no docs are wanted, else one per
Data Docs directory, whose site keeps each result and suite in files of its own (`docs_site`)
and so lists every gate of every command.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlparse

import great_expectations as gx
import pandas as pd
from great_expectations.checkpoint.actions import ValidationAction
from great_expectations.core import ExpectationSuiteValidationResult
from great_expectations.core.batch_definition import BatchDefinition
from great_expectations.core.expectation_validation_result import ExpectationValidationResult
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context import AbstractDataContext
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.datasource.fluent import PandasDatasource

from expectations import docs_site

SITE_NAME = "persona"
DATASOURCE = "persona_frames"
MAX_EXAMPLES = 5
# SUMMARY keeps a short list of unexpected values (and, for multi-column expectations, rows)
# without materialising every failing row as COMPLETE would.
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": MAX_EXAMPLES}


@dataclass
class Failure:
    """One failed expectation, with a few of the values (or rows) that broke it and their row
    numbers (the frame's index) when GX reports them."""

    expectation: str
    column: str | None
    examples: list = field(default_factory=list)
    detail: str = ""  # what went wrong, examples included, as the error message shows it
    rows: list = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.expectation}: {self.detail}" if self.detail else self.expectation


class DataQualityError(Exception):
    """A frame failed its gate. The message names the file it came from (when known) and every
    failed expectation with examples."""

    def __init__(self, suite: str, failures: list[Failure], docs_path: Path | None = None,
                 source: Path | None = None) -> None:
        self.suite = suite
        self.failures = failures
        self.docs_path = docs_path
        self.source = source
        where = f" on {source}" if source else ""
        lines = [f"data-quality gate {suite!r} failed {len(failures)} expectation(s){where}:"]
        lines += [f"  - {failure}" for failure in failures]
        lines.append(f"Data Docs: {docs_path}" if docs_path else "Data Docs: not built")
        super().__init__("\n".join(lines))


@dataclass
class GateResult:
    """What a passed gate reports; `summary()` is stored with the model as its data provenance."""

    suite: str
    success: bool
    statistics: dict
    docs_path: Path | None

    def summary(self) -> dict:
        """JSON-able summary: suite, success, GE statistics and the Data Docs page."""
        return {
            "suite": self.suite,
            "success": bool(self.success),
            "statistics": {k: _jsonable(v) for k, v in self.statistics.items()},
            "docs_path": str(self.docs_path) if self.docs_path else None,
        }


def run_gate(
    suite: gx.ExpectationSuite, df: pd.DataFrame, docs_dir: Path | None = None,
    source: Path | None = None,
) -> GateResult:
    """Validate `df` against `suite`; build Data Docs under `docs_dir` when given.

    Raises DataQualityError naming each failed expectation (and `source`, the file `df` was read
    from, when given) when any expectation fails.
    The caller's suite is copied, not bound to a context, so it can be run again.
    The docs name the data asset (`source`'s file name, else the suite's) and the run (the command
    and when it started, e.g. "persona-ingest-20240601T120000Z").
    """
    context = _context(Path(docs_dir) if docs_dir is not None else None)
    # Validation definitions and checkpoints get a name unique to the run, so adding them is safe.
    name = f"{suite.name} #{next(_RUN_NUMBERS)}"
    asset = _safe(Path(source).name) if source is not None else suite.name
    stored = context.suites.add_or_update(_copy_suite(suite))
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=_whole_frame(context, asset), suite=stored)
    )
    actions: list[ValidationAction] = []
    if docs_dir is not None:
        actions.append(docs_site.KeepInDataDocs(name="update_docs", site_names=[SITE_NAME],
                                                docs_dir=str(Path(docs_dir).resolve())))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=name,
            validation_definitions=[validation],
            actions=actions,
            result_format=RESULT_FORMAT,
        )
    )
    # GX filters the whole frame by `df[column].notnull()` for every column expectation, a full
    # copy each time without Copy-on-Write (minutes for a wide 2.5M-row feature table); with it,
    # those copies are lazy. The option is process-wide while the checkpoint runs.
    with pd.option_context("mode.copy_on_write", True):
        run = checkpoint.run(batch_parameters={"dataframe": df}, run_id=_run_id())
    ((key, result),) = run.run_results.items()
    docs_path = _docs_path(context, key, Path(docs_dir)) if docs_dir is not None else None
    if not result.success:
        raise DataQualityError(suite.name, failures(result), docs_path, source)
    return GateResult(suite.name, True, dict(result.statistics), docs_path)


def failures(result: ExpectationSuiteValidationResult) -> list[Failure]:
    """The failed expectations of a validation result, each with up to five examples."""
    return [_failure(r) for r in result.results if not r.success]


# One context per Data Docs directory for the life of the process, made on first use. Its site's
# stores are files beside the site, shared by every process writing to it.
_CONTEXTS: dict[Path, AbstractDataContext] = {}
_RUN_NUMBERS = itertools.count(1)
_PROCESS_STARTED = datetime.now(UTC)  # when the command loaded its gates: the run's name


def _context(docs_dir: Path | None) -> AbstractDataContext:
    """The context for `docs_dir`, with its Data Docs site; a throwaway one without docs."""
    if docs_dir is None:
        return _ephemeral_context()
    key = docs_dir.resolve()
    if key not in _CONTEXTS:
        key.mkdir(parents=True, exist_ok=True)
        _CONTEXTS[key] = _ephemeral_context(
            stores=docs_site.stores_config(key),
            data_docs_sites={SITE_NAME: docs_site.site_config(key)},
        )
    return _CONTEXTS[key]


def _ephemeral_context(stores: dict | None = None,
                       data_docs_sites: dict | None = None) -> AbstractDataContext:
    """An in-memory context with analytics and progress bars off, `stores` beside its own (by
    store name) and `data_docs_sites` as its only sites."""
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    config.stores = {**config.stores, **(stores or {})}
    config.data_docs_sites = data_docs_sites or {}
    return gx.get_context(mode="ephemeral", project_config=config)


def _run_id() -> RunIdentifier:
    """This validation's run: named after the command and when its process started, e.g.
    "persona-ingest-20240601T120000Z" (every gate of one command shares it), timed now."""
    name = f"{_command()}-{_PROCESS_STARTED:%Y%m%dT%H%M%SZ}"
    return RunIdentifier(run_name=_safe(name), run_time=datetime.now(UTC))


def _command() -> str:
    """The command line's program and its first plain word, e.g. "persona-ingest" for
    `persona ingest raw/ --home h`: options, paths and values are left out."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] not in ("", "-c") else Path("python")
    name = program.parent.name if program.stem == "__main__" else program.stem  # python -m pkg
    word = next((a for a in sys.argv[1:] if re.fullmatch(r"[a-z][a-z0-9_-]*", a)), None)
    return f"{name}-{word}" if word else name


def _safe(name: str) -> str:
    """`name` as one path segment of the docs (run and asset names become folders and files),
    nothing in it to quote in a shell."""
    return re.sub(r"[^\w.@+-]", "_", name) or "_"


def _whole_frame(context: AbstractDataContext, asset_name: str) -> BatchDefinition:
    """The whole-dataframe batch of the asset `asset_name`, created on first use."""
    sources = context.data_sources
    datasource: PandasDatasource
    if DATASOURCE in sources.all():
        datasource = cast(PandasDatasource, sources.get(DATASOURCE))
    else:
        datasource = sources.add_pandas(name=DATASOURCE)
    if asset_name in datasource.get_asset_names():
        asset = datasource.get_asset(asset_name)
    else:
        asset = datasource.add_dataframe_asset(name=asset_name)
    try:
        return asset.get_batch_definition("whole_frame")
    except KeyError:
        return asset.add_batch_definition_whole_dataframe(name="whole_frame")


def _copy_suite(suite: gx.ExpectationSuite) -> gx.ExpectationSuite:
    # A new suite may own only expectations without an id; a shallow copy is enough (the run
    # never mutates their arguments) and, unlike copy.copy's deep copy, cheap for large value sets.
    return gx.ExpectationSuite(
        name=suite.name,
        expectations=[e.copy(update={"id": None}) for e in suite.expectations],
        meta=copy.deepcopy(suite.meta),
        notes=suite.notes,
    )


def _docs_path(context: AbstractDataContext, key, docs_dir: Path) -> Path:
    """The HTML page of this validation result, or the site index if its URL is not available."""
    for site in context.get_docs_sites_urls(resource_identifier=key, site_names=[SITE_NAME]):
        url = site.get("site_url")
        if url and urlparse(url).scheme == "file":
            page = Path(unquote(urlparse(url).path))
            if page.exists():
                return page
    return docs_dir.resolve() / "index.html"


def _failure(r: ExpectationValidationResult) -> Failure:
    config = r.expectation_config
    assert config is not None, "validation results carry their expectation's configuration"
    kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
    column = kwargs.get("column")
    if column is None and kwargs.get("column_list"):
        column = ",".join(kwargs["column_list"])
    call = f"{config.type}({', '.join(f'{k}={_format_arg(v)}' for k, v in kwargs.items())})"
    result: dict[str, Any] = r.result or {}
    error = _exception_message(r.exception_info)
    if error:
        return Failure(call, column, [], f"could not be evaluated: {error}")
    if "partial_unexpected_list" in result:
        examples = list(result["partial_unexpected_list"])[:MAX_EXAMPLES]
        rows = list(result.get("partial_unexpected_index_list") or [])[:MAX_EXAMPLES]
        at = f" at rows {rows}" if rows else ""
        detail = (f"{result.get('unexpected_count')} of {result.get('element_count')} rows "
                  f"unexpected{at}, e.g. {_format_examples(examples)}")
        return Failure(call, column, examples, detail, rows)
    if "observed_value" in result:
        observed = result["observed_value"]
        return Failure(call, column, [observed], f"observed {_format_example(observed)}")
    if config.type == "expect_column_to_exist":
        return Failure(call, column, [], "no such column")
    return Failure(call, column, [], "failed")


def _exception_message(info: dict | None) -> str | None:
    """The message of an exception raised while evaluating an expectation, if any. GX reports it
    either flat or keyed by the metric that raised it."""
    if not info:
        return None
    if "raised_exception" in info:
        return info.get("exception_message") if info["raised_exception"] else None
    messages = [v.get("exception_message") for v in info.values() if isinstance(v, dict)]
    return "; ".join(dict.fromkeys(str(m) for m in messages if m)) or None


def _format_arg(value: Any) -> str:
    """Render an expectation argument; long value sets are cut to their first few members."""
    if isinstance(value, (list, tuple, set, frozenset)):
        values = sorted(value, key=str) if isinstance(value, (set, frozenset)) else list(value)
        shown = ", ".join(str(v) for v in values[:8])
        more = f", ... ({len(values)} values)" if len(values) > 8 else ""
        return f"[{shown}{more}]"
    return str(value)


def _format_examples(examples: list) -> str:
    return "[" + ", ".join(_format_example(e) for e in examples) + "]"


def _format_example(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_format_example(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (pd.Timestamp,)):
        return str(value)
    return repr(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return value
