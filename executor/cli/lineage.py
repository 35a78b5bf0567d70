"""``rexec lineage RUN|DIGEST``: where a result came from, or where it went, drawn."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from executor import catalog, safeio
from executor.catalog import FORMATS
from executor.cli._catalog import add_catalog_option


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec lineage`` to the parser."""
    p = sub.add_parser(
        "lineage",
        help="the runs upstream (what made it) or downstream (what used it) of a run or digest",
        description=(
            "Follow digests through the catalog: a run's inputs back to the runs that produced "
            "them (--upstream), its outputs forward to the runs that consumed them "
            "(--downstream), or both. Links are digest equality: a run that took "
            "outputs/model of another as an input pinned that directory's signed tree digest."
        ),
        epilog=(
            "examples:\n  rexec lineage <eval-run> --upstream\n"
            "  rexec lineage sha256-tree-v1:5be7d7ad --downstream --format mermaid -o lineage.md\n"
            "  rexec lineage <model-run> --upstream --format html -o lineage.html\n\n"
            "svg and html need Graphviz's `dot` (apt-get install graphviz); the html page is\n"
            "one file, the graph inline, each node linking to its run's rows; it loads nothing.\n"
        ),
    )
    p.add_argument("ref", metavar="RUN|DIGEST")
    way = p.add_mutually_exclusive_group()
    way.add_argument("--upstream", dest="direction", action="store_const", const="upstream")
    way.add_argument("--downstream", dest="direction", action="store_const", const="downstream")
    way.add_argument("--both", dest="direction", action="store_const", const="both")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--format", choices=FORMATS, default="tree", help="default: tree")
    form.add_argument(
        "--json",
        dest="format",
        action="store_const",
        const="json",
        help="the same as --format json: one JSON document, as every command's --json",
    )
    p.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    add_catalog_option(p)
    p.set_defaults(handler=handle, direction="both")


def handle(args: argparse.Namespace) -> int:
    """Draw the lineage."""
    cat = catalog.open_catalog(args.catalog, create=False)
    try:
        graph = catalog.lineage(cat, args.ref, direction=args.direction)
    finally:
        cat.close()
    text = catalog.render_lineage(graph, args.format)
    if args.output is not None:
        safeio.write_atomic(args.output, text.encode())
    else:
        sys.stdout.write(text)
    return 0
