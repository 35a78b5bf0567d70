"""``rexec status``: a submitted run's state, live or final, per task."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from executor import cluster
from executor.cli._cluster import add_runs_dir, print_tasks
from executor.cli._json import print_json
from executor.cluster import TaskStatus
from executor.errors import InfrastructureError
from executor.outputs import display_text

EPILOG = """\
examples:
  rexec status                         every run submitted under ./runs
  rexec status 20261201T120000Z-train-1a2b3c
  rexec status 4711 4712 --wait        by Slurm job ids; until every task has ended
  rexec status 4711_3 --json           one array task's job id finds its submission

One squeue for the queue and at most one sacct for jobs that left it, per poll,
however many runs are shown, and the signed records on shared storage (the truth
about what the job did; the only source on clusters without accounting). --wait
polls every second. A task that failed shows its exit code, the signal that ended
it and the last line of its error log. exit codes: 0 succeeded (or still pending
or running without --wait), 5 failed, timed out, out of memory, cancelled,
pre-empted or a node failed, 6 the Slurm controller does not answer (the records
on disk are still shown).
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec status`` to the parser."""
    p = sub.add_parser(
        "status",
        help="submitted runs' states per task: Slurm's and their signed records'",
        description="Show where each task of submitted runs stands (all under --runs-dir "
        "unless named).",
        epilog=EPILOG,
    )
    p.add_argument("refs", nargs="*", metavar="RUN_ID|JOB_ID", help="what `rexec submit` printed")
    add_runs_dir(p)
    p.add_argument("--wait", action="store_true", help="poll until every task has ended")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Print the tasks' states; exit 5 if any ended other than succeeded, 6 if Slurm's
    controller did not answer."""
    subs = (
        [cluster.find_submission(ref, args.runs_dir) for ref in args.refs]
        if args.refs
        else cluster.tracked(args.runs_dir)
    )
    trouble: InfrastructureError | None = None
    try:
        found = (
            cluster.wait(subs, cluster.Slurm(), on_change=_progress(args))
            if args.wait
            else cluster.poll(subs, cluster.Slurm())
        )
    except InfrastructureError as exc:
        trouble, found = exc, cluster.poll(subs, None)  # what the records on disk say
    if args.json:
        runs = [_run_json(sub, found[sub.run_id]) for sub in subs]
        controller = str(trouble) if trouble else None
        if len(args.refs) == 1:
            print_json({"schema": "rexec.status/v1", **runs[0], "controller": controller})
        else:
            doc = {"schema": "rexec.status-list/v1", "runs": runs, "controller": controller}
            print_json(doc)
    else:
        for sub in subs:
            print(f"run {display_text(sub.run_id)} (Slurm job {display_text(sub.job_id)})")
            print_tasks(found[sub.run_id])
        if not subs:
            print(f"no submitted runs under {args.runs_dir}")
    if trouble is not None:
        raise trouble  # after what the records say: exit 6, with its hint
    return max((t.exit_code for run in found.values() for t in run), default=0)


def _progress(args: argparse.Namespace) -> Callable[[cluster.Submission, list[TaskStatus]], None]:
    def show(sub: cluster.Submission, tasks: list[TaskStatus]) -> None:
        if not args.json:
            print_tasks(tasks, err=True, run_id=sub.run_id)

    return show


def _run_json(sub: cluster.Submission, tasks: list[TaskStatus]) -> dict[str, object]:
    return {"runId": sub.run_id, "jobId": sub.job_id, "tasks": [t.to_json() for t in tasks]}
