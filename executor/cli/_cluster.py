"""What the cluster commands share: the runs-dir option and the task table."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from executor.cli._render import console, safe
from executor.cluster import TaskStatus


def add_runs_dir(p: argparse.ArgumentParser, *, help_text: str | None = None) -> None:
    """``--runs-dir``: where the submission (and its records) live."""
    p.add_argument(
        "--runs-dir",
        type=Path,
        default=Path("runs"),
        help=help_text or "the --runs-dir the job was submitted with (default ./runs)",
    )


def print_tasks(tasks: Sequence[TaskStatus], *, err: bool = False) -> None:
    """A table of tasks: Slurm's state, its reason, and the record's status."""
    out = console()
    if err:
        out.file = sys.stderr
    for t in tasks:
        task = "" if t.task is None else f"task {t.task:<3} "
        record = t.record_status or "no record yet"
        reason = f" ({safe(t.reason)})" if t.reason else ""
        state = f"{safe(t.state):<12}{reason}"
        out.print(f"  {task}job {safe(t.job_id):<10} {state}  record: {safe(record)}")
