"""``rexec slurm-node DIR``: what a batch script written by `rexec submit` runs on the node."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from executor import cluster


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec slurm-node`` (run by the batch script, not by hand) to the parser."""
    p = sub.add_parser(
        "slurm-node",
        help="(run by the batch script) this node's part of a submitted run",
        description=(
            "Run on a Slurm node by the script `rexec submit` wrote: check the submission "
            "is the one submitted, re-verify the pins, run this task in its container "
            "within the allocation, sign the record."
        ),
    )
    p.add_argument(
        "directory", type=Path, help="the submission directory (RUNS_DIR/.rexec-jobs/ID)"
    )
    p.add_argument(
        "--submission-sha256",
        metavar="HEX",
        help="the sha256 submission.json must have (the batch script names it; anything "
        "else is refused and recorded in refused.json)",
    )
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run this node's task; a job that did not succeed exits 5."""

    def say(text: str) -> None:
        print(f"rexec: {text}", file=sys.stderr, flush=True)

    return cluster.run_on_node(args.directory, sha256=args.submission_sha256, say=say)
