"""Rich progress bars on stderr (count, rate, elapsed, ETA), silenced by --quiet."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from gem_agents.cli.common import console


class RateColumn(ProgressColumn):
    """Items per second (or per minute when slow)."""

    def render(self, task: Task) -> Text:
        """Render the task's current speed."""
        speed = task.finished_speed or task.speed
        if not speed:
            return Text("  —/s", style="cyan")
        return Text(f"{speed:5.1f}/s" if speed >= 1 else f"{speed * 60:5.1f}/min", style="cyan")


def make_progress(quiet: bool = False) -> Progress:
    """A progress display with count, rate, elapsed time and ETA."""
    return Progress(
        TextColumn("[bold]{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
    )
