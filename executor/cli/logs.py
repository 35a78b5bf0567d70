"""``rexec logs``: a submitted run's Slurm log, and the job's own once its record exists."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from executor import cluster, safeio
from executor.cli._cluster import add_runs_dir

CHUNK = 1 << 16


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec logs`` to the parser."""
    p = sub.add_parser(
        "logs",
        help="print a submitted run's log (Slurm's, with the job's output in it)",
        description=(
            "Print the Slurm log of a submitted run (rexec's progress and the job's "
            "stdout and stderr as they stream). --follow keeps printing until the job ends."
        ),
        epilog="example:\n  rexec logs 20261201T120000Z-train-1a2b3c --follow\n",
    )
    p.add_argument("ref", metavar="RUN_ID|JOB_ID", help="what `rexec submit` printed")
    add_runs_dir(p)
    p.add_argument("--task", type=int, help="the array task (default: all, one after another)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    p.set_defaults(handler=handle)


def _log_files(sub: cluster.Submission, task: int | None) -> list[Path]:
    """Each task's logs, one per attempt, in order."""
    tasks: Sequence[int | None] = (
        [task] if task is not None else range(len(sub.tasks)) if sub.is_array else [None]
    )
    return [path for t in tasks for path in sub.logs(t)]


def _copy(path: Path, offset: int) -> int:
    """Print what ``path`` holds from ``offset``; the new offset. No link is followed."""
    try:
        fd = safeio.open_regular(path)
    except (FileNotFoundError, safeio.UnsafeFile):
        return offset
    try:
        import os

        os.lseek(fd, offset, os.SEEK_SET)
        while chunk := os.read(fd, CHUNK):
            sys.stdout.buffer.write(chunk)
            offset += len(chunk)
        sys.stdout.flush()
    finally:
        os.close(fd)
    return offset


def handle(args: argparse.Namespace) -> int:
    """Print (and with --follow, keep printing) the run's Slurm log files."""
    sub = cluster.find_submission(args.ref, args.runs_dir)
    offsets: dict[Path, int] = {}
    slurm = cluster.Slurm()

    def copy_all() -> list[Path]:
        files = _log_files(sub, args.task)  # a requeue adds an attempt's log as it goes
        for path in files:
            offsets[path] = _copy(path, offsets.get(path, 0))
        return files

    while True:
        # Known finished before the last copy, so that copy holds the end of every log.
        finished = not args.follow or all(
            t.finished for t in cluster.poll([sub], slurm)[sub.run_id]
        )
        files = copy_all()
        if finished:
            break
        time.sleep(1.0)
    if not any(offsets.values()) and not any(p.exists() for p in files):
        print(
            f"rexec: no log yet in {sub.directory} (the job may still be pending)", file=sys.stderr
        )
    return 0
