"""``rexec diff A B``: compare two run records (or a run and its replay).

Also home of the human renderers that ``replay`` and ``rerun`` share, so the
three commands describe environments and outputs in the same words. Colour
comes from ``rich`` and only on a terminal; piped output is plain text.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from executor.compare import OutputComparison
from executor.compare.env import BREAKS, MAY_BREAK, EnvDiff
from executor.compare.records import RecordDiff, diff_records, load_record

_STATUS_STYLE = {
    "identical": "green",
    "within-tolerance": "yellow",
    "different": "red",
    "missing": "red",
    "extra": "red",
}
_IMPACT_STYLE = {BREAKS: "red", MAY_BREAK: "yellow"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    diff = diff_records(load_record(args.a), load_record(args.b))
    if args.json:
        print(json.dumps(diff.to_json(), indent=2, sort_keys=True))
    else:
        print_diff(console(), diff)
    return 0


def console() -> Console:
    """Colour on a terminal only; never re-wrap lines (they may be pasted into tickets)."""
    return Console(highlight=False, soft_wrap=True, no_color=not sys.stdout.isatty())


def print_diff(out: Console, diff: RecordDiff) -> None:
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


def input_lines(inputs: dict[str, Any]) -> Iterable[tuple[str, bool]]:
    for key in ("image", "code", "seed", "command"):
        item = inputs[key]
        if item["same"]:
            yield f"{key}: same", True
        else:
            yield f"{key}: {_short(item['a'])} → {_short(item['b'])}", False
    for snap in inputs["snapshots"]["entries"]:
        if snap["status"] == "same":
            yield f"snapshot {snap['name']}: same ({snap['a']})", True
            continue
        yield f"snapshot {snap['name']}: {snap['status']} {snap['a']} → {snap['b']}", False
        for kind, paths in sorted((snap["files"] or {}).items()):
            for path in paths:
                yield f"    {kind}: {path}", False
    params = inputs["params"]
    if params["same"]:
        yield "params: same", True
    for change in params["changed"]:
        yield f"param {change['key']}: {change['a']!r} → {change['b']!r}", False
    for side in ("a", "b"):
        for o in params["overrides"][side]:
            yield (
                f"  {side.upper()} overrode {o['key']}: default {o['default']!r} → {o['value']!r}",
                True,
            )
    for change in inputs["other"]["changed"]:
        yield f"spec {change['key']}: {change['a']!r} → {change['b']!r}", False


def _short(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def print_env(out: Console, env: EnvDiff, *, indent: str = "") -> None:
    if not env.differences:
        out.print(f"{indent}[green]same host capture[/]")
        return
    for d in env.differences:
        style = _IMPACT_STYLE.get(d.impact, "dim")
        out.print(
            f"{indent}[{style}]{d.impact:<17}[/] {escape(d.path)}: "
            f"{escape(_short(d.recorded))} → {escape(_short(d.current))}"
        )


def print_outputs(out: Console, comparison: OutputComparison, *, indent: str = "") -> None:
    for f in comparison.files:
        style = _STATUS_STYLE.get(f.status, "")
        line = f"{indent}[{style}]{f.status:<16}[/] {escape(f.name)}"
        if f.numeric is not None:
            n = f.numeric
            if n.structure:
                line += f"  ({escape(n.structure)})"
            else:
                line += f"  max abs diff {n.max_abs:.3g}, max rel diff {n.max_rel:.3g}"
                if f.tolerance is not None:
                    line += (
                        f", tolerance rtol={f.tolerance.rtol:g} atol={f.tolerance.atol:g}"
                        f" ({n.outside} of {n.elements} outside)"
                    )
        if f.note:
            line += f"  ({escape(f.note)})"
        out.print(line)
