"""What the cluster commands share: the runs-dir and --submit options, the task table."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from executor import cluster
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


def add_submit_options(p: argparse.ArgumentParser, what: str) -> None:
    """``--submit`` (each run that must be made a Slurm job) with where the jobs go."""
    slurm = p.add_argument_group("on a Slurm cluster")
    slurm.add_argument("--submit", action="store_true", help=what)
    slurm.add_argument("--partition", help="with --submit: the partition (else cluster.toml's)")
    slurm.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="FLAG",
        help="with --submit: another sbatch flag for every job (repeatable)",
    )


def submit_site(args: argparse.Namespace) -> cluster.SiteOptions | None:
    """With ``--submit``: the user's site defaults (~/.config/rexec/cluster.toml), the
    command line winning; None without it."""
    if not args.submit:
        return None
    defaults = cluster.site_defaults()
    extra = (*defaults.pop("extra", ()), *args.sbatch)
    if args.partition:
        defaults["partition"] = args.partition
    return cluster.SiteOptions(**defaults, extra=tuple(extra))


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
        if t.never:
            out.print("      never starts: a job it runs after failed (`rexec cancel` it)")
