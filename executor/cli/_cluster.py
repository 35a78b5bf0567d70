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


def print_tasks(
    tasks: Sequence[TaskStatus], *, err: bool = False, run_id: str | None = None
) -> None:
    """A table of tasks: Slurm's state, its reason, the record's status, and for a failed
    task its exit code, signal and last error line."""
    out = console()
    if err:
        out.file = sys.stderr
    prefix = f"{safe(run_id)} " if run_id else ""
    for t in tasks:
        task = "" if t.task is None else f"task {t.task:<3} "
        record = t.record_status or "no record yet"
        reason = f" ({safe(t.reason)})" if t.reason else ""
        state = f"{safe(t.state):<12}{reason}"
        ended = ""
        if t.failed and t.job_exit is not None:
            ended += f"  exit {t.job_exit}"
        if t.failed and t.job_signal:
            ended += f"  signal {t.job_signal}"
        out.print(
            f"  {prefix}{task}job {safe(t.job_id):<10} {state}  record: {safe(record)}{ended}"
        )
        if t.last_error:
            out.print(f"      last error: {safe(t.last_error)}")
