"""``rexec gc``: remove what a rexec that was killed (SIGKILL, OOM, a crash) left behind.

A rexec that is stopped normally (Ctrl-C, SIGTERM, SIGHUP) stops its job and
signs an ``interrupted`` record. One that is killed cannot: its container keeps
running in the engine and its staging directory stays as ``.<run-id>.partial``.
Both name their owner (host, pid, process start time), and this command removes
only those whose owner ran on this host and is gone: a run in progress, or one
from another machine sharing the runs directory, is never touched.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from executor import safeio
from executor.cli._json import print_json
from executor.cli._options import add_runtime_option
from executor.errors import ExitCode
from executor.owner import is_orphan
from executor.record import writer
from executor.runtime import (
    OWNER_HOST_LABEL,
    OWNER_PID_LABEL,
    OWNER_START_LABEL,
    RUN_LABEL,
    ContainerRuntime,
    default_runtime,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec gc`` to the parser."""
    p = sub.add_parser(
        "gc",
        help="remove containers and partial records left by a killed rexec",
        description=(
            "Find job containers (by their rexec labels) and .partial staging directories "
            "whose rexec process is gone, and remove them. Only what this host's rexec "
            "started is judged; a run in progress is never touched."
        ),
        epilog=(
            "examples:\n"
            "  rexec gc                       clean ./runs and the engine\n"
            "  rexec gc --runs-dir /shared/runs --dry-run\n"
            "  rexec gc --json                what was removed, for scripts"
        ),
    )
    p.add_argument(
        "--runs-dir",
        type=Path,
        default=Path("runs"),
        help="where partial records are looked for (default ./runs)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="list what would be removed, remove nothing"
    )
    p.add_argument(
        "--partials-only",
        action="store_true",
        help="only partial records; leave the engine alone (the Slurm epilog runs this as "
        "the job's user, who may have no engine access)",
    )
    p.add_argument("--json", action="store_true", help="print what was found as JSON")
    add_runtime_option(p)
    p.set_defaults(handler=handle)


def orphan_containers(runtime: ContainerRuntime) -> list[tuple[str, str]]:
    """(container id, run id) of job containers whose owning rexec is gone."""
    found = []
    for info in runtime.list_containers(RUN_LABEL):
        labels = info.labels
        host, pid = labels.get(OWNER_HOST_LABEL), labels.get(OWNER_PID_LABEL)
        if host is None or pid is None:
            continue  # made by an older rexec, or by hand: not ours to judge
        if is_orphan(host, pid, labels.get(OWNER_START_LABEL, "")):
            found.append((info.id, labels.get(RUN_LABEL, "?")))
    return found


def handle(args: argparse.Namespace, runtime: ContainerRuntime | None = None) -> int:
    """Remove orphan containers and partial records; ``runtime`` is the seam tests fill."""
    if args.partials_only:
        runtime = None
    else:
        runtime = runtime or default_runtime(getattr(args, "runtime", None))
    containers = [] if runtime is None else orphan_containers(runtime)
    partials = writer.stale_partials(args.runs_dir)
    verb = "would remove" if args.dry_run else "removed"
    if not args.dry_run:
        for container_id, _ in containers:
            assert runtime is not None
            runtime.remove_container(container_id)
        for path, _ in partials:
            safeio.rmtree(path)
    if args.json:
        doc = {
            "dryRun": args.dry_run,
            "containers": [{"id": c, "runId": r} for c, r in containers],
            "partials": [{"path": str(p), "why": why} for p, why in partials],
        }
        print_json(doc)
        return int(ExitCode.OK)
    for container_id, run_id in containers:
        print(f"{verb} container {container_id[:12]} (run {run_id}): its rexec is gone")
    for path, why in partials:
        print(f"{verb} {path}: {why}")
    if not containers and not partials:
        print("nothing to remove")
    return int(ExitCode.OK)
