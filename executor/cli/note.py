"""``rexec note RUN TEXT``: a sentence about a run (unsigned, kept in the catalog)."""

from __future__ import annotations

import argparse

from executor.cli._annotate import apply
from executor.cli._catalog import add_catalog_option


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec note`` to the parser."""
    p = sub.add_parser(
        "note",
        help="write a note on a run: an unsigned annotation in the catalog",
        description=(
            "Add a note to a run (or --remove one, given its exact text). Notes are the "
            "catalog's, shown apart from the signed facts, with who wrote them and when."
        ),
        epilog='example:\n  rexec note 20261201T1200 "diverged after epoch 3; lr too high"\n',
    )
    p.add_argument("run", metavar="RUN", help="a run id, unique prefix or record path")
    p.add_argument("text", metavar="TEXT")
    p.add_argument("--remove", action="store_true", help="remove the note with this text")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    add_catalog_option(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Note the run and print what it holds."""
    return apply(args, [args.run], "note", [args.text])
