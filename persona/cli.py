"""The `persona` command: one entry point for every job. It only wires stages together.

Options are checked before a command imports Feast, BentoML, XGBoost or Great Expectations (the
imports live in the commands), so `--help`, `--version` and a mistyped option answer at once. A
failure prints one line, `error: ...`, and exits 1; `--verbose` adds the traceback.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import replace
from enum import Enum
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated

import click
import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from persona.core.catalog import MODELS, SCORED
from persona.core.dates import start_of_today
from persona.core.settings import Settings, library_defaults
from persona.jobs.progress import console, steps

app = typer.Typer(help="Persona: e-commerce user profiling and purchase prediction on Feast.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
# Whose versions `persona --version` prints beside Persona's.
LIBRARIES = ("feast", "bentoml", "great-expectations", "xgboost")
_verbose = False
# Errors raised by these packages are Persona's own, written for the user: printed as they are.
OUR_PACKAGES = {"persona", "serving", "training", "expectations", "feature_repo"}
Task = Enum("Task", {name: name for name in SCORED}, type=str)  # choices shown in --help
# What `persona train` trains: the scoring models, and the candidate generators.
MIN_LOG_DAYS = 36  # the ranker's weekly cuts (training/recommend_training.py) and a day before
TrainTask = Enum("TrainTask", {name: name for name in (*MODELS, "retrieval")}, type=str)

DATE = "DATE (YYYY-MM-DD = end of that day UTC, or ISO-8601)"
HomeOpt = Annotated[Path | None, typer.Option(
    "--home", help="State directory (default $PERSONA_HOME or ./data of the project).")]
OnlineOpt = Annotated[str | None, typer.Option(
    "--online",
    help="Online store URL, redis://host:port (default $PERSONA_REDIS_URL, else SQLite).")]


JsonOpt = Annotated[bool, typer.Option(
    "--json", help="Print one JSON object on stdout instead of the summary (for scripts).")]
results = Console(soft_wrap=True, highlight=False)  # results on stdout; progress, errors: stderr


def _emit(as_json: bool, data: dict, *summary: str | Table) -> None:
    """The command's result: `data` as one unwrapped JSON line, or the human summary."""
    if as_json:
        typer.echo(json.dumps(data, default=str))
        return
    for part in summary:
        results.print(part)


def _table(title: str, rows: dict, key: str, value: str) -> Table:
    """A two-column table of a mapping, numbers rounded."""
    table = Table(title=title, title_justify="left")
    table.add_column(key)
    table.add_column(value, justify="right")
    for name, number in rows.items():
        table.add_row(str(name), f"{number:,.4g}" if isinstance(number, float) else f"{number:,}")
    return table


def _settings(home: Path | None, online: str | None = None) -> Settings:
    return Settings.from_env(home=home, online=online)


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}", soft_wrap=True, highlight=False)
    raise typer.Exit(code=1)


def one_line_errors(command: Callable) -> Callable:
    """Any failure of the command becomes `error: ...` and exit code 1 (the traceback only with
    --verbose); an unexpected kind of failure also names its type."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (typer.Exit, click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            if _verbose:
                raise
            expected = (isinstance(exc, ValueError | OSError | LookupError)
                        or type(exc).__module__.split(".")[0] in OUR_PACKAGES)
            text = str(exc).strip() or type(exc).__name__
            _fail(RuntimeError(text if expected else f"{type(exc).__name__}: {text} "
                                                     "(--verbose for the traceback)"))
    return run


def _versions(show: bool) -> None:
    if not show:
        return
    def of(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"
    console.print(f"persona {of('persona')}", highlight=False)
    for name in LIBRARIES:
        console.print(f"{name} {of(name)}", highlight=False)
    raise typer.Exit()


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
         show_version: Annotated[bool, typer.Option(
             "--version", is_eager=True, callback=_versions,
             help="Persona's version and those of Feast, BentoML, GE and XGBoost.")] = False,
         ) -> None:
    from persona.jobs.progress import CurrentStderr
    from persona.jobs.quiet import quiet_libraries

    global _verbose
    _verbose = verbose
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=CurrentStderr())
    if not verbose:
        quiet_libraries()  # the library warnings a user cannot act on (persona/jobs/quiet.py)
    library_defaults()  # before xgboost (OpenMP) and GX load


@app.command()
@one_line_errors
def generate(
    out: Annotated[Path, typer.Option(help="Directory to write events/users/items into.")],
    users: Annotated[int, typer.Option(help="Number of users.")] = 5000,
    items: Annotated[int, typer.Option(help="Number of items.")] = 1000,
    days: Annotated[int | None, typer.Option(
        help="Days of history (default 60; 548 for the cohort profile).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same bytes.")] = 0,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    profile: Annotated[str, typer.Option(
        help="browsing (views, carts and purchases) or cohort (purchase-only, one acquisition "
             "quarter, date-stamped).")] = "browsing",
    end: Annotated[str | None, typer.Option(
        help="Last day of the log, YYYY-MM-DD (default: today, UTC, so features are current).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a synthetic shop log that follows the data contract."""
    from persona.synthetic_cohort import COHORT_DAYS, generate_cohort
    from persona.synthetic_shop import generate_shop, write_shop

    try:
        last = pd.Timestamp(end, tz="UTC") if end else start_of_today()
    except ValueError:
        _fail(ValueError(f"--end {end!r}: expected a date like 2026-10-01"))

    makers = {"browsing": (generate_shop, 60), "cohort": (generate_cohort, COHORT_DAYS)}
    if profile not in makers:
        _fail(ValueError(f"unknown profile {profile!r}; choose one of {sorted(makers)}"))
    make, default_days = makers[profile]
    days = default_days if days is None else days
    with steps("generate") as on_step:
        on_step(f"{profile}: {users} users x {items} items x {days} days")
        try:
            shop = make(users, items, days, seed, end=last.to_pydatetime())
        except ValueError as exc:
            _fail(exc)
        paths = write_shop(shop, out, fmt)
    times = shop.events["event_timestamp"]
    rows = {"events": len(shop.events), "users": len(shop.users), "items": len(shop.items)}
    span = {"events_from": times.min().isoformat() if len(times) else None,
            "events_until": times.max().isoformat() if len(times) else None}
    _emit(as_json, {"profile": profile, "rows": rows, **span,
                    "files": {name: str(path) for name, path in paths.items()}},
          _table(f"{profile} shop, events {span['events_from']} .. {span['events_until']}",
                 rows, "table", "rows"),
          *(f"{name}: {path}" for name, path in paths.items()))


@app.command()
@one_line_errors
def ingest(
    raw_dir: Annotated[Path, typer.Argument(
        help="Directory with events, users, items (.parquet or .csv).")],
    home: HomeOpt = None,
    interval: Annotated[str | None, typer.Option(
        help="Snapshot interval, e.g. 1d (default) or 1h.")] = None,
    timestamp_format: Annotated[str | None, typer.Option(
        help="strptime layout of text timestamps, e.g. '%m/%d/%Y %H:%M' (default: ISO 8601 "
             "or epoch seconds).")] = None,
    dedupe: Annotated[bool, typer.Option(
        help="Drop events repeating an earlier event_id instead of refusing the batch.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Validate a raw directory, compute point-in-time snapshots, publish and register them."""
    from persona.core.settings import parse_interval

    settings = _settings(home)
    if interval:
        try:
            settings = replace(settings, snapshot_interval=parse_interval(interval))
        except ValueError as exc:
            _fail(exc)
    from expectations.gate import DataQualityError
    from persona.core.contract import ContractError
    from persona.data.locking import BusyError
    from persona.data.raw import ReadOptions
    from persona.jobs.ingest import ingest as run

    try:
        with steps("ingest") as on_step:
            manifest = run(settings, raw_dir, on_step,
                           options=ReadOptions(timestamp_format, dedupe),
                           on_progress=on_step.count)
    except (ContractError, DataQualityError, BusyError, ValueError) as exc:
        _fail(exc)
    dropped = manifest["duplicate_event_ids_dropped"]
    _emit(as_json, {key: manifest[key] for key in (
              "version", "data_hash", "rows", "events_from", "events_until",
              "duplicate_event_ids_dropped")},
          f"published version {manifest['version']} (data hash {manifest['data_hash'][:12]}), "
          f"events {manifest['events_from']} .. {manifest['events_until']}",
          *([f"dropped {dropped} event(s) repeating an earlier event_id (--dedupe)"]
            if dropped else []),
          _table("rows per feature table", manifest["rows"], "table", "rows"))


@app.command()
@one_line_errors
def apply(home: HomeOpt = None, online: OnlineOpt = None) -> None:
    """Register the feature definitions (idempotent)."""
    from persona.data.locking import exclusive
    from persona.featurestore.registry import apply_definitions

    settings = _settings(home, online)
    with exclusive(settings.lock_path):  # one registry writer at a time per home
        names = apply_definitions(settings)
    console.print("registered: " + ", ".join(names))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@one_line_errors
def feast(ctx: typer.Context, home: HomeOpt = None, online: OnlineOpt = None) -> None:
    """Feast's own CLI on this home: persona feast ui | feature-views list | materialize-incremental
    END | ... (the arguments after `feast` go to Feast)."""
    from persona.featurestore.feast_cli import run_feast

    run_feast(_settings(home, online), list(ctx.args))


@app.command()
@one_line_errors
def materialize(
    home: HomeOpt = None,
    online: OnlineOpt = None,
    full: Annotated[bool, typer.Option(
        "--full", help="Reload the whole TTL window (progress is kept per online store).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Load the latest validated feature values into the online store (incremental)."""
    from expectations.gate import DataQualityError
    from persona.data.locking import BusyError
    from persona.jobs.materialize import NothingToMaterialize
    from persona.jobs.materialize import materialize as run

    try:
        with steps("materialize") as on_step:
            counts = run(_settings(home, online), full=full, on_step=on_step,
                         on_progress=on_step.count)
    except (DataQualityError, BusyError, NothingToMaterialize) as exc:
        _fail(exc)
    _emit(as_json, {"rows": counts}, _table("rows loaded per view", counts, "view", "rows"))


@app.command()
@one_line_errors
def train(
    home: HomeOpt = None,
    task: Annotated[TrainTask, typer.Option(
        "--task", help="conversion (view -> purchase of the item), propensity (user buys "
                       "anything), retrieval (candidate generators) or recommend (the ranker of "
                       "recommendation lists).")] = "conversion",
    horizon: Annotated[str | None, typer.Option(
        help="Label horizon, e.g. 30d (default 7d for conversion, 30d for propensity).")] = None,
    until: Annotated[str | None, typer.Option(
        help=f"Use only what was known at {DATE}.")] = None,
    features: Annotated[str | None, typer.Option(
        help="Feature service version, e.g. conversion_v2 or propensity_v2 (default v1).")
    ] = None,
    tune: Annotated[bool, typer.Option(
        "--tune", help="Search the booster's parameters on the end of the training period first."
    )] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a model on point-in-time features and save it to the BentoML store."""
    from persona.core.dates import parse_as_of, parse_horizon

    try:
        horizon_days = parse_horizon(horizon) if horizon else None
        cut = parse_as_of(until) if until else None
    except ValueError as exc:
        _fail(exc)
    if task.value == "retrieval":
        _train_retrieval(_settings(home), cut, as_json)
        return
    if task.value == "recommend":
        _train_recommend(_settings(home), cut, as_json)
        return
    from expectations.gate import DataQualityError
    from training.pipeline import train as run

    try:
        with steps(f"train {task.value}") as on_step:
            result = run(_settings(home), task=task.value, horizon_days=horizon_days,
                         until=cut, features=features, tune=tune, on_step=on_step)
    except (DataQualityError, ValueError) as exc:
        _fail(exc)
    scorers = {name: m for name, m in result.metrics.items() if isinstance(m, dict)}
    table = Table(title="validation metrics", title_justify="left")
    table.add_column("scorer")
    shown = [k for k in ("roc_auc", "pr_auc", "top_decile_lift", "ndcg@10", "log_loss", "ece")
             if any(k in m for m in scorers.values())]
    for key in shown:
        table.add_column(key, justify="right")
    for name, m in scorers.items():
        table.add_row(name, *(f"{m[k]:.3f}" if isinstance(m.get(k), float) else ""
                              for k in shown))
    _emit(as_json, {"model": result.tag, "report": str(result.report_path),
                    "n_train": result.n_train, "n_valid": result.n_valid,
                    "metrics": result.metrics},
          f"model {result.tag}; report {result.report_path}", table)


def _train_retrieval(settings: Settings, until: pd.Timestamp | None, as_json: bool) -> None:
    from training.candidate_training import RECALL_AT, train_retrieval

    with steps("train retrieval") as on_step:
        on_step("fitting ALS, item2vec and popularity, measuring their recall, writing the "
                "users' candidates")
        result = train_retrieval(settings, until, on_progress=on_step.count)
    table = Table(title=f"recall on the last week ({result.users} users)", title_justify="left")
    table.add_column("generator")
    for k in RECALL_AT:
        table.add_column(f"recall@{k}", justify="right")
    for name, values in result.recall.items():
        table.add_row(name, *(f"{values[k]:.3f}" for k in RECALL_AT))
    _emit(as_json, {"model": result.tag, "report": str(result.report_path),
                    "kept": list(result.kept), "recall": result.recall},
          f"model {result.tag} (kept {', '.join(result.kept)}); report {result.report_path}",
          table)


def _train_recommend(settings: Settings, until: pd.Timestamp | None, as_json: bool) -> None:
    from expectations.gate import DataQualityError
    from training.recommend_metrics import METRICS
    from training.recommend_training import train_recommend

    try:
        with steps("train recommend") as on_step:
            result = train_recommend(settings, until, on_step=on_step)
    except DataQualityError as exc:
        _fail(exc)
    table = Table(title=f"the test week, all users ({result.metrics['all']['users']})",
                  title_justify="left")
    table.add_column("method")
    shown = METRICS[:5]
    for name in shown:
        table.add_column(name, justify="right")
    for name, values in result.metrics["all"].items():
        if name != "users":
            table.add_row(name, *(f"{values[m]:.3f}" for m in shown))
    _emit(as_json, {"model": result.tag, "report": str(result.report_path),
                    "objective": result.objective, "validation_ndcg@10": result.choice,
                    "metrics": result.metrics},
          f"model {result.tag} ({result.objective}); report {result.report_path}", table)


@app.command()
@one_line_errors
def availability(
    file: Annotated[Path, typer.Argument(help="CSV or Parquet: item_id, available (true/false).")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Mark items available or not, offline and online at once, without a full ingest."""
    from persona.jobs.availability import update_availability

    result = update_availability(_settings(home), file)
    _emit(as_json, {"items": result.items, "unavailable": result.unavailable,
                    "stamped": result.stamped.isoformat(), "version": result.version},
          f"{result.items:,} items updated ({result.unavailable:,} unavailable) as of "
          f"{result.stamped.isoformat()}; offline version {result.version}")


@app.command()
@one_line_errors
def recommend(
    as_of: Annotated[str, typer.Option("--as-of", help=f"The lists as of {DATE}.")],
    out: Annotated[Path, typer.Option(help="Parquet file for the lists.")],
    k: Annotated[int, typer.Option("--k", min=1, max=100, help="Items per user.")] = 10,
    users: Annotated[Path | None, typer.Option(
        help="A CSV or Parquet file with a user_id column (default: every user active at "
             "DATE).")] = None,
    model: Annotated[str | None, typer.Option(
        help="Ranker version (persona-recommend) to order with (default: this home's "
             "latest).")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Top-k recommendations per user as of a date: candidates, the ranker, the rules."""
    from persona.core.dates import parse_as_of

    when = parse_as_of(as_of)
    from persona.jobs.progress import bar
    from persona.jobs.recommend import recommend as run

    wanted = None
    if users is not None:
        frame = (pd.read_parquet(users, columns=["user_id"]) if users.suffix == ".parquet"
                 else pd.read_csv(users, usecols=["user_id"], dtype={"user_id": "string"}))
        wanted = frame["user_id"].dropna().astype(str).drop_duplicates().tolist()
    with bar("recommend") as on_progress:
        result = run(_settings(home), when, k, out, users=wanted, model_tag=model,
                     on_progress=on_progress)
    _emit(as_json, {"rows": result.rows, "users": result.users, "model": result.model_tag,
                    "generators": list(result.generators), "path": str(result.path)},
          f"{result.rows:,} recommendations for {result.users:,} users by {result.model_tag} "
          f"(candidates of {', '.join(result.generators)}) -> {result.path}")


@app.command()
@one_line_errors
def score(
    task: Annotated[Task, typer.Option(
        "--task", help="propensity (users) or conversion (user-item pairs).")],
    out: Annotated[Path, typer.Option(help="Parquet file to write the scores to.")],
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help=f"Score with the features known at {DATE}; optional when the candidates "
                        "carry event_timestamp.")] = None,
    candidates: Annotated[Path | None, typer.Option(
        help="Parquet or CSV of user_id[, item_id][, event_timestamp] to score (required for "
             "conversion).")] = None,
    model: Annotated[str | None, typer.Option(
        help="Model tag to use (default: the task's latest).")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Batch-score users (propensity) or user-item pairs (conversion) with reasons, to Parquet."""
    from persona.core.dates import parse_as_of

    try:
        when = parse_as_of(as_of) if as_of else None
    except ValueError as exc:
        _fail(exc)
    from persona.jobs.progress import bar
    from training.model_store import ModelNotFoundError
    from training.score import score as run

    try:
        with bar(f"score {task.value}") as on_progress:
            result = run(_settings(home), task.value, out, as_of=when, candidates=candidates,
                         model_tag=model, on_progress=on_progress)
    except (ValueError, ModelNotFoundError) as exc:
        _fail(exc)
    _emit(as_json, {"rows": result.rows, "model": result.model_tag, "path": str(result.path)},
          f"{result.rows:,} scores by {result.model_tag} -> {result.path}")


@app.command()
@one_line_errors
def segments(
    as_of: Annotated[str, typer.Option("--as-of", help=f"{DATE}.")],
    out: Annotated[Path | None, typer.Option(
        help="Parquet file for the per-user tags and segments (default "
             "<home>/segments-<DATE>.parquet).")] = None,
    tags: Annotated[Path | None, typer.Option(
        help="Tag file (default feature_repo/profile_tags.yaml).")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Tag and segment every active user as of DATE; print segment sizes, write a per-user file."""
    from persona.core.dates import parse_as_of
    from persona.jobs.segments import segment_users
    from persona.profiling.segments import segment_sizes
    from persona.profiling.tags import TAGS_FILE, TagBook, TagFileError

    settings = _settings(home)
    try:
        when = parse_as_of(as_of)
        book = TagBook.load(tags or TAGS_FILE)
        with steps("segments") as on_step:
            segmented = segment_users(settings, when, book, on_step=on_step,
                                      on_progress=on_step.count)
    except (ValueError, TagFileError) as exc:
        _fail(exc)
    out = out or settings.home / f"segments-{when.strftime('%Y%m%dT%H%M%S')}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    segmented.to_parquet(out, index=False)
    sizes = segment_sizes(segmented, book)
    table = Table(title=f"Segments as of {when.isoformat()}")
    for column in ("segment", "users", "mean propensity"):
        table.add_column(column, justify="left" if column == "segment" else "right")
    for name, row in sizes.iterrows():
        mean = "" if pd.isna(row["mean_propensity"]) else f"{row['mean_propensity']:.3f}"
        table.add_row(name, f"{int(row['users']):,}", mean)
    _emit(as_json, {"as_of": when.isoformat(), "users": len(segmented), "path": str(out),
                    "segments": {name: int(row["users"]) for name, row in sizes.iterrows()}},
          table, f"{len(segmented):,} users -> {out}")


@app.command()
@one_line_errors
def serve(
    home: HomeOpt = None,
    online: OnlineOpt = None,
    port: Annotated[int, typer.Option(help="HTTP port.")] = 3000,
    host: Annotated[str, typer.Option(
        help="Interface to listen on (0.0.0.0 for all).")] = "127.0.0.1",
    model: Annotated[str | None, typer.Option(help="Model tag to pin (default: latest).")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Start the BentoML prediction service."""
    from serving.run import serve as run

    run(_settings(home, online), port=port, model_tag=model, workers=workers, host=host)


@app.command()
@one_line_errors
def demo(
    home: HomeOpt = None,
    online: OnlineOpt = None,
    port: Annotated[int, typer.Option(help="HTTP port for the demo service.")] = 3000,
    users: Annotated[int, typer.Option(help="Users in the generated shop.", min=50)] = 3000,
    items: Annotated[int, typer.Option(help="Items in the generated shop.", min=20)] = 1000,
    days: Annotated[int, typer.Option(
        help="Days of events in the generated shop (the recommendation ranker learns from five "
             "weeks).", min=MIN_LOG_DAYS)] = 60,
) -> None:
    """Generate a small shop, ingest, train, materialize, serve and query it, end to end."""
    from persona.jobs.demo import run

    run(_settings(home, online), port=port,
        shop_size={"n_users": users, "n_items": items, "days": days})


if __name__ == "__main__":
    app()
