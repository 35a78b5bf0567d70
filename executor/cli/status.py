"""``rexec status``: a submitted run's state, live or final, per task."""

from __future__ import annotations

import argparse

from executor import cluster
from executor.cli._cluster import add_runs_dir, print_tasks
from executor.cli._json import print_json

EPILOG = """\
examples:
  rexec status 20261201T120000Z-train-1a2b3c
  rexec status 4711 --wait            # by Slurm job id; until every task has ended
  rexec status 4711_3 --json           # one array task's job id finds its submission

One squeue for the queue, one sacct for jobs that left it, and the signed
records on shared storage (the truth about what the job did; the only source
on clusters without accounting). exit codes: 0 succeeded (or still pending or
running without --wait), 5 failed, timed out, out of memory, cancelled,
pre-empted or a node failed (the state and reason are printed), 6 the Slurm
controller does not answer.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec status`` to the parser."""
    p = sub.add_parser(
        "status",
        help="a submitted run's state per task: Slurm's and its signed record's",
        description="Show where each task of a submitted run stands.",
        epilog=EPILOG,
    )
    p.add_argument("ref", metavar="RUN_ID|JOB_ID", help="what `rexec submit` printed")
    add_runs_dir(p)
    p.add_argument("--wait", action="store_true", help="poll (backing off) until every task ends")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Print the tasks' states; exit 5 if any ended other than succeeded."""
    sub = cluster.find_submission(args.ref, args.runs_dir)
    slurm = cluster.Slurm()
    if args.wait:
        tasks = cluster.wait(
            sub, slurm, on_change=lambda t: None if args.json else print_tasks(t, err=True)
        )
    else:
        tasks = cluster.poll([sub], slurm)[sub.run_id]
    if args.json:
        doc = {
            "schema": "rexec.status/v1",
            "runId": sub.run_id,
            "jobId": sub.job_id,
            "tasks": [t.to_json() for t in tasks],
        }
        print_json(doc)
    else:
        print(f"run {sub.run_id} (Slurm job {sub.job_id})")
        print_tasks(tasks)
    return max(t.exit_code for t in tasks)
