"""Rich progress for long jobs: each pipeline stage reports a step name; this shows them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

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
