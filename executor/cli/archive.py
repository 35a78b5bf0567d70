"""``rexec archive RUN...``: runs out of the default views; no record is touched."""

from __future__ import annotations

import argparse

from executor.cli._annotate import apply
from executor.cli._catalog import add_catalog_option


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec archive`` to the parser."""
    p = sub.add_parser(
        "archive",
        help="hide runs from `rexec runs` and the web ledger (records are kept)",
        description=(
            "Mark runs as archived in the catalog: `rexec runs` and the web ledger leave "
            "them out unless asked (--archived, ?archived=1); `show`, lineage, compare and "
            "everything that reads records still find them. Nothing is deleted; --remove "
            "brings them back."
        ),
        epilog="examples:\n  rexec archive 20261201T1200 20261201T1300\n"
        "  rexec archive 20261201T1200 --remove\n",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run ids, unique prefixes or paths")
    p.add_argument("--remove", action="store_true", help="bring them back into the views")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    add_catalog_option(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Archive the runs and print each one's state."""
    return apply(args, args.runs, "archived", [""])
