"""``rexec submit``: the same signed, reproducible run, queued on a Slurm cluster."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from executor import cluster, spec
from executor.cli._cluster import add_runs_dir, print_tasks
from executor.cli._json import print_json
from executor.cli._options import (
    add_runtime_option,
    add_signing_options,
    add_trust_options,
    sign_options,
    upstream_policy,
)
from executor.errors import InputError

EPILOG = """\
examples:
  rexec lock specs/train.toml -o train.lock.toml
  rexec submit train.lock.toml --partition gpu --time 4h --gpus-per-node 1 --runs-dir /shared/runs
  rexec submit train.lock.toml --sweep lr=0.1,0.05,0.01 --sweep seed=1,2,3   # one job array
  rexec submit train.lock.toml --nodes 2 --gpus-per-node 4                   # multi-node
  rexec submit train.lock.toml --dry-run                                      # show the script

Everything is checked on this host before anything is queued: the spec
(exit 2), every input and the code against their pins (exit 4). The node
checks them again, runs the job in its container and signs the record,
with the job's identity, into RUNS_DIR (which must be shared storage).
Site options also come from ~/.config/rexec/cluster.toml ([slurm] partition,
account, qos, constraint, time, extra = [...]); the command line wins.
Then: rexec status RUN_ID --wait, rexec logs RUN_ID, rexec cancel RUN_ID.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec submit`` to the parser."""
    p = sub.add_parser(
        "submit",
        help="queue a locked spec on Slurm; the node runs, records and signs it",
        description=(
            "Check a locked spec and its inputs here, render a plain sbatch script, and "
            "queue it with only the environment rexec needs. On the node rexec verifies "
            "the pins again, runs the job in a hardened container bounded by the "
            "allocation, and signs a record that carries the job's identity."
        ),
        epilog=EPILOG,
    )
    p.add_argument("spec", type=Path, help="the locked run spec (TOML)")
    site = p.add_argument_group("where it runs (sbatch options; never part of the spec)")
    site.add_argument("--partition", help="sbatch --partition")
    site.add_argument("--account", help="sbatch --account")
    site.add_argument("--qos", help="sbatch --qos")
    site.add_argument("--constraint", help="sbatch --constraint")
    site.add_argument("--time", help="the time limit, as sbatch takes it (4:00:00, 2-0)")
    site.add_argument("--nodes", type=int, default=1, help="nodes (one rexec agent each)")
    site.add_argument("--gpus-per-node", type=int, help="GPUs per node (the spec's count)")
    site.add_argument("--cpus-per-task", type=int, help="CPUs on each node")
    site.add_argument("--mem", help="memory per node, as sbatch takes it (16G)")
    site.add_argument(
        "--requeue",
        action="store_true",
        help="let Slurm requeue the job (a new attempt, with its own record); default off",
    )
    site.add_argument(
        "--signal",
        metavar="SIG@SECONDS",
        help="pre-emption warning sent to rexec before the end, e.g. USR2@60: the job is "
        "stopped and a `preempted` record signed (USR2 is the one rexec handles)",
    )
    site.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="FLAG",
        help="another sbatch flag, passed through as given (repeatable): --sbatch=--exclusive",
    )
    p.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="KEY=V1,V2,…",
        help="a param (or seed) to sweep; several make their product; one job array, one "
        "signed run per task",
    )
    add_runs_dir(p, help_text="shared directory the node writes records to (default ./runs)")
    add_signing_options(p, default=None)
    add_trust_options(
        p,
        "whose records `from` inputs are read from (resolved, verified and pinned here, "
        "before anything is queued; default: the signers in ~/.config/rexec/trust.toml)",
    )
    add_runtime_option(p)
    p.add_argument("--allow-dirty", action="store_true", help="code with uncommitted changes")
    p.add_argument(
        "--rehash-inputs",
        action="store_true",
        help="nodes read and hash every input again (default: each node checks every "
        "entry's lstat against the submit host's, and hashes only what changed)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the sbatch script; queue nothing")
    p.add_argument("--json", action="store_true", help="print the submission as JSON")
    p.add_argument(
        "--wait", action="store_true", help="wait for the end (as `rexec status --wait`)"
    )
    p.set_defaults(handler=handle)


def _site(args: argparse.Namespace) -> cluster.SiteOptions:
    defaults = cluster.site_defaults()
    chosen = {
        "partition": args.partition,
        "account": args.account,
        "qos": args.qos,
        "constraint": args.constraint,
        "time": args.time,
        "gpus_per_node": args.gpus_per_node,
        "cpus_per_task": args.cpus_per_task,
        "mem": args.mem,
        "signal": args.signal,
    }
    values = {k: (v if v is not None else defaults.get(k)) for k, v in chosen.items()}
    if args.signal is not None and not args.signal.startswith(("USR2@", "SIGUSR2@")):
        raise InputError(
            f"--signal {args.signal}: rexec handles USR2 as the pre-emption warning",
            hint="use --signal USR2@60 (NCCL uses USR1)",
        )
    return cluster.SiteOptions(
        **values,
        nodes=args.nodes,
        requeue=args.requeue or bool(defaults.get("requeue")),
        extra=tuple(defaults.get("extra", ())) + tuple(args.sbatch),
    )


def handle(args: argparse.Namespace) -> int:
    """Check, render and queue a spec; print the run id and job id."""
    run_spec = spec.load(args.spec)
    tasks = cluster.sweep_tasks(args.sweep, parse=spec.parse_override, params=run_spec.params)
    chosen = sign_options(args, method=run_spec.signing.method, key=run_spec.signing.key)
    sign = cluster.node_signing(chosen)

    def say(text: str) -> None:
        print(f"rexec: {text}", file=sys.stderr, flush=True)

    sub, script = cluster.submit(
        args.spec,
        site=_site(args),
        tasks=tasks,
        runs_dir=args.runs_dir,
        sign=sign,
        allow_dirty=args.allow_dirty,
        rehash_inputs=args.rehash_inputs,
        dry_run=args.dry_run,
        say=say,
        engine=args.runtime,
        links=cluster.FromLinks(
            policy=upstream_policy(args) if any(i.from_ref for i in run_spec.inputs) else None
        ),
    )
    if args.dry_run:
        sys.stdout.write(script)
        return 0
    if args.json:
        print_json(sub.to_json())
    else:
        tasks_text = f", a job array of {len(sub.tasks)} tasks" if sub.is_array else ""
        print(f"submitted run {sub.run_id} as Slurm job {sub.job_id}{tasks_text}")
        print(f"script and logs: {sub.directory}")
    if args.wait:
        final = cluster.wait(
            [sub], cluster.Slurm(), on_change=lambda _, tasks: print_tasks(tasks, err=True)
        )
        return max(t.exit_code for t in final[sub.run_id])
    return 0
