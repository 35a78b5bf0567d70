"""``rexec cancel``: stop a submitted run; the node stops its container and signs `interrupted`."""

from __future__ import annotations

import argparse

from executor import cluster
from executor.cli._cluster import add_runs_dir
from executor.cli._json import print_json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec cancel`` to the parser."""
    p = sub.add_parser(
        "cancel",
        help="cancel a submitted run (all its tasks, or one)",
        description=(
            "scancel the run's job. Slurm sends SIGTERM to rexec on the node, which stops "
            "the job's container (Docker's containers outlive scancel on their own) and "
            "signs an `interrupted` record."
        ),
        epilog="examples:\n  rexec cancel 20261201T120000Z-train-1a2b3c\n  rexec cancel 4711_3\n",
    )
    p.add_argument("ref", metavar="RUN_ID|JOB_ID", help="a run id, job id, or array task (123_4)")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    add_runs_dir(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Cancel the job (or the one array task named)."""
    sub = cluster.find_submission(args.ref, args.runs_dir)
    assert sub.job_id is not None
    target = args.ref if "_" in args.ref and args.ref.split("_")[0] == sub.job_id else sub.job_id
    cluster.Slurm().cancel(target)
    if args.json:
        print_json({"cancelled": target, "run_id": sub.run_id})
        return 0
    print(f"cancelled Slurm job {target} (run {sub.run_id}); `rexec status {sub.run_id} --wait`")
    return 0
