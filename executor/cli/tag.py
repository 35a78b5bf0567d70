"""``rexec tag RUN TAG...``: a team's own labels on a run (unsigned, kept in the catalog)."""

from __future__ import annotations

import argparse

from executor.cli._annotate import apply
from executor.cli._catalog import add_catalog_option


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec tag`` to the parser."""
    p = sub.add_parser(
        "tag",
        help="label a run (baseline, candidate, …): an unsigned annotation in the catalog",
        description=(
            "Add tags to a run, or --remove them. Tags are the catalog's, not the record's: "
            "nobody signs them, every view marks them as unsigned and names who set them, "
            "and `catalog index --rebuild` keeps them. `rexec runs --tag TAG` and the web "
            "view's ?tag= list the runs that carry one."
        ),
        epilog="examples:\n  rexec tag 20261201T1200 baseline\n"
        "  rexec tag 20261201T1200 baseline --remove\n",
    )
    p.add_argument("run", metavar="RUN", help="a run id, unique prefix or record path")
    p.add_argument("tags", nargs="+", metavar="TAG")
    p.add_argument("--remove", action="store_true", help="take the tags off instead")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    add_catalog_option(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Tag the run and print its tags."""
    return apply(args, [args.run], "tag", args.tags)
