"""Rich progress for long jobs, drawn on stderr (stdout carries the results and `--json`).

Each pipeline stage reports a step name; a step with a natural count (tables computed, files
written, rows loaded, users scored) also reports how far it is, drawn as a bar with done/total.
On a terminal the line is redrawn in place; on a file or a pipe Rich prints only its final state.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

console = Console(stderr=True)

Count = Callable[[int, int | None], None]  # on_progress(done, total); total None: not known yet
BAR_WIDTH = 30


class CurrentStderr:
    """`sys.stderr` as it is at each write, for the log handler: while a progress line is drawn
    on a terminal, Rich swaps `sys.stderr` for a proxy that prints above that line, so a log
    line does not land in the middle of it."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def count_text(done: int, total: int | None) -> str:
    """`1,200/5,000`, or `1,200` while the total is not known."""
    return f"{done:,}" if total is None else f"{done:,}/{total:,}"


class _StepColumn(ProgressColumn):
    """The job and its current step, then the step's bar and done/total when it has a count
    (a step without one shows no empty bar)."""

    def render(self, task: Task) -> RenderableType:
        row = Table.grid(padding=(0, 1))
        done, total = task.fields.get("done"), task.fields.get("of")
        cells: list[RenderableType] = [Text(task.description, style="bold")]
        if done is not None:
            cells += [ProgressBar(total=total, completed=done, width=BAR_WIDTH,
                                  animation_time=task.get_time()),
                      Text(count_text(done, total), style="progress.download")]
        row.add_row(*cells)
        return row


class Steps:
    """What `steps()` yields. Called with a step's name, it shows that step (and clears the
    previous step's count); `count(done, total)` draws the current step's bar. Both are plain
    callbacks, so stages take them as `on_step` and `on_progress`."""

    def __init__(self, progress: Progress, task: TaskID, title: str) -> None:
        self._progress, self._task, self._title = progress, task, title

    def __call__(self, name: str) -> None:
        self._progress.update(self._task, description=f"{self._title}: {name}",
                              done=None, of=None)

    def count(self, done: int, total: int | None) -> None:
        self._progress.update(self._task, done=done, of=total)


@contextmanager
def steps(title: str, out: Console = console) -> Iterator[Steps]:
    """Yield a `Steps` callback that shows the current step with the job's elapsed time, and
    the step's bar with done/total once it reports a count."""
    with Progress(SpinnerColumn(), _StepColumn(), TimeElapsedColumn(), console=out,
                  transient=False) as progress:
        task = progress.add_task(title, total=None, done=None, of=None)
        on_step = Steps(progress, task, title)
        yield on_step
        progress.update(task, description=f"{title}: done")  # the last count stays shown


@contextmanager
def bar(title: str) -> Iterator[Count]:
    """Yield an `on_progress(done, total)` callback that draws a bar of rows done out of total
    (a pulsing bar while the total is unknown), with elapsed and remaining time."""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                  transient=False) as progress:
        task = progress.add_task(title, total=None)

        def on_progress(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        yield on_progress
