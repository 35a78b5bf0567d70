"""``rexec diff A B``: compare two run records (or a run and its replay).

Also home of the human renderers that ``replay`` and ``rerun`` share, so the
three commands describe environments and outputs in the same words. Colour
comes from ``rich`` and only on a terminal; piped output is plain text.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from executor.cli._json import print_json
from executor.cli._render import console, input_lines, print_env, print_outputs
from executor.compare import RecordDiff, diff_records
from executor.record import load_record


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec diff`` to the parser."""
    p = sub.add_parser(
        "diff",
        help="what differs between two run records: inputs, environment, outputs",
        description=(
            "Compare two run records (A is the reference): image, snapshots (naming the "
            "files that changed, from the recorded listings), code, params with their "
            "override history, seed and command; the host capture, each difference "
            "classified as breaks-bitwise, may-break-bitwise or provenance-only; and the "
            "outputs file by file, with numeric differences for .npy/.npz/.safetensors/JSON. "
            "Records are read, not verified: run `rexec verify` first if you need to trust them."
        ),
        epilog="example:\n  rexec diff runs/<original> runs/<replay> --json\n"
        "exit codes: 0 compared (whatever the differences), 2 not a run record",
    )
    p.add_argument("a", type=Path, metavar="A", help="reference run record")
    p.add_argument("b", type=Path, metavar="B", help="run record to compare with A")
    p.add_argument("--json", action="store_true", help="print one JSON document (rexec.diff/v1)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Print what differs between two records, as tables or one JSON document."""
    diff = diff_records(load_record(args.a), load_record(args.b))
    if args.json:
        print_json(diff.to_json())
    else:
        print_diff(console(), diff)
    return 0


def print_diff(out: Console, diff: RecordDiff) -> None:
    """The human form of a record diff: inputs, environment, params, outputs."""
    doc = diff.to_json()
    out.print(f"[bold]A[/] {escape(diff.a.run_id)}  ({escape(str(diff.a.path))})")
    out.print(f"[bold]B[/] {escape(diff.b.run_id)}  ({escape(str(diff.b.path))})")
    if diff.a.status != diff.b.status:
        out.print(f"[red]status: {diff.a.status} → {diff.b.status}[/]")
    out.print("[bold]inputs[/]")
    for line, same in input_lines(doc["inputs"]):
        out.print(f"  [{'green' if same else 'red'}]{escape(line)}[/]")
    out.print("[bold]environment[/]")
    if diff.environment is None:
        out.print("  (a host capture is missing from one record)")
    else:
        print_env(out, diff.environment, indent="  ")
    out.print("[bold]outputs[/]")
    print_outputs(out, diff.outputs, indent="  ")
