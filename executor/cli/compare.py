"""``rexec compare RUN RUN [RUN…]``: runs side by side, one row per key, changed rows only."""

from __future__ import annotations

import argparse
from typing import Any

from executor import catalog
from executor.cli._catalog import add_catalog_option
from executor.cli._json import print_json
from executor.cli._render import console, safe


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec compare`` to the parser."""
    p = sub.add_parser(
        "compare",
        help="runs side by side from the catalog: params, metrics, inputs, outputs",
        description=(
            "Compare runs vertically (a row per key, a column per run, the first run the "
            "reference, numeric deltas beside the values): status, seed, image, code, every "
            "param and metric, every input and output digest. Only rows that differ unless --all."
        ),
        epilog="examples:\n  rexec compare 20261201T1200 20261201T1300\n"
        "  rexec compare A B C --all --json\n",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="2 to 50 runs (ids, prefixes, paths)")
    p.add_argument("--all", action="store_true", help="also the rows that are the same")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    add_catalog_option(p)
    p.set_defaults(handler=handle)


def _cell(value: object, delta: float | None, noise: dict[str, Any] | None) -> str:
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    if len(text) > 28:
        text = text[:27] + "…"
    if delta:
        text += f" ({delta:+.3g}"
        if noise and noise["sds"] is not None:
            text += f"; {noise['sds']:.1f} sd, {noise['verdict'].split()[0]}"
        text += ")"
    return text


def handle(args: argparse.Namespace) -> int:
    """Print the comparison table."""
    cat = catalog.open_catalog(args.catalog, create=False)
    try:
        doc = catalog.compare(cat, args.runs, changed_only=not args.all)
    finally:
        cat.close()
    if args.json:
        print_json({"schema": "rexec.compare/v1", **doc})
        return 0
    out = console()
    width = max([len(r["key"]) for r in doc["rows"]] + [3])
    out.print(safe("key".ljust(width) + "  " + "  ".join(r[:30].ljust(30) for r in doc["runs"])))
    for row in doc["rows"]:
        deltas = row.get("deltas") or [None] * len(row["values"])
        noise = row.get("noise") or [None] * len(row["values"])
        cells = [
            _cell(v, d, n).ljust(42 if n else 30)
            for v, d, n in zip(row["values"], deltas, noise, strict=True)
        ]
        out.print(safe(row["key"].ljust(width) + "  " + "  ".join(cells)))
    if not doc["rows"]:
        out.print("no differences" + ("" if args.all else " (--all shows every row)"))
    _say_reference(doc)
    return 0


def _say_reference(doc: dict[str, Any]) -> None:
    """What the metric changes were judged against, or how to get a reference."""
    if not any(r.get("noise") for r in doc["rows"]):
        return
    ref = doc["seedReference"]
    left_out = (
        f"; {ref['unverified']} not verified when indexed, left out" if ref["unverified"] else ""
    )
    if ref["seeds"] >= 2:
        console().print(
            safe(
                f"metric changes judged against {ref['seeds']} runs of the first run's spec "
                f"with other seeds (within 2 sd: noise){left_out}"
            )
        )
    else:
        # seeded runs that were indexed unverified count once verified; else there are none
        fix = (
            "`rexec catalog index RUNS_DIR --verify --key KEY` verifies them"
            if ref["unverified"]
            else "`rexec run SPEC --seeds 3` gives one"
        )
        console().print(
            safe(
                f"no seed reference for the metric changes ({ref['seeds']} verified run of the "
                f"first run's spec{left_out}): {fix}"
            )
        )
