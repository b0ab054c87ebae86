"""Rich progress for long jobs: each pipeline stage reports a step name; this shows them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


@contextmanager
def steps(title: str) -> Iterator:
    """Yield an `on_step(name)` callback that shows the current step with elapsed time."""
    with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task(title, total=None)

        def on_step(name: str) -> None:
            progress.update(task, description=f"{title}: {name}")

        yield on_step
        progress.update(task, description=f"{title}: done")


@contextmanager
def bar(title: str) -> Iterator[Callable[[int, int | None], None]]:
    """Yield an `on_progress(done, total)` callback that draws a bar of rows done out of total
    (a pulsing bar while the total is unknown), with elapsed and remaining time."""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                  transient=False) as progress:
        task = progress.add_task(title, total=None)

        def on_progress(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        yield on_progress
