"""``rexec runs`` (once ``rexec log``): the ledger of runs in the catalog, newest first,
filtered."""

from __future__ import annotations

import argparse
import sys

from executor import catalog
from executor.cli._catalog import add_catalog_option, print_rows
from executor.cli._json import print_json

EPILOG = """\
examples:
  rexec runs
  rexec runs --name train --status succeeded --where "metrics.acc > 0.9" --where "params.lr = 0.01"
  rexec runs --input sha256-tree-v1:5be7d7… --json     which runs read this snapshot?
  rexec runs --produced sha256:8adcb63d…               which run produced this file?
  rexec runs --signer 'alice@example.com'             which runs did Alice sign?

--where takes FIELD OP VALUE: metrics.KEY (or metrics.FILE:KEY) with a number,
params.KEY with a number or a string, seed with an integer; give it once per
condition (all must hold). Runs are read from the catalog (`rexec catalog index`).
"""

COLUMNS = ("run_id", "kind", "status", "name", "seed", "started", "verification")
# The newest runs a plain `rexec runs` shows: a catalog of 100,000 runs printed whole took
# 12 s and a screen's worth is what is read; --limit N or --all ask for more.
DEFAULT_LIMIT = 50


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec runs`` (and its old name ``rexec log``) to the parser."""
    p = sub.add_parser(
        "runs",
        aliases=["log"],
        help="the ledger of runs in the catalog, newest first, with filters (was: log)",
        description="List the catalog's runs, newest first, filtered by what they read and made.",
        epilog=EPILOG,
    )
    p.add_argument("--name", help="the spec's name")
    p.add_argument("--status", help="succeeded, failed, timed-out, interrupted, preempted, …")
    p.add_argument("--kind", choices=("run", "replay", "rerun"), help="how the run came about")
    p.add_argument("--since", metavar="ISO_TIME", help="started at or after (2026-12-01T10:00)")
    p.add_argument("--input", metavar="DIGEST", help="read this snapshot, file, image or code")
    p.add_argument("--produced", metavar="DIGEST", help="produced this file or tree")
    p.add_argument("--image", metavar="DIGEST", help="ran this image (sha256:…)")
    p.add_argument("--commit", metavar="SHA", help="ran this code commit")
    p.add_argument(
        "--signer",
        metavar="WHO",
        help="signed by this key hint or Sigstore identity, as `rexec show` prints it",
    )
    p.add_argument(
        "--stale",
        action="store_true",
        help="current runs built (at any distance) on a digest a regeneration corrected",
    )
    p.add_argument("--where", action="append", default=[], metavar="COND", help="see below")
    p.add_argument("--tag", metavar="TAG", help="carries this tag (`rexec tag`)")
    p.add_argument(
        "--pipeline",
        metavar="ID|NAME",
        help="the stage runs of a pipeline run (its ledger id), or of every run of a pipeline",
    )
    p.add_argument("--archived", action="store_true", help="archived runs too (`rexec archive`)")
    shown = p.add_mutually_exclusive_group()
    shown.add_argument(
        "--limit",
        type=_positive,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"at most the newest N runs (default {DEFAULT_LIMIT})",
    )
    shown.add_argument("--all", action="store_true", help="every run that matches, however many")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    add_catalog_option(p)
    p.set_defaults(handler=handle)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a number of runs from 1 up, got {text!r}")
    return int(text)


def handle(args: argparse.Namespace) -> int:
    """Print the filtered ledger."""
    cat = catalog.open_catalog(args.catalog, create=False)
    try:
        rows = catalog.log(
            cat,
            where=args.where,
            name=args.name,
            status=args.status,
            kind=args.kind,
            since=args.since,
            input=args.input,
            produced=args.produced,
            image=args.image,
            code_commit=args.commit,
            signer=args.signer,
            stale=args.stale,
            tag=args.tag,
            pipeline=args.pipeline,
            archived=args.archived,
            limit=None if args.all else args.limit + 1,  # one more: are there more?
        )
    finally:
        cat.close()
    more = not args.all and len(rows) > args.limit
    rows = rows if args.all else rows[: args.limit]
    if args.json:
        print_json({"schema": "rexec.log/v1", "runs": rows, "more": more})
    else:
        print_rows(rows, COLUMNS)
    if more:
        print(
            f"rexec: the newest {args.limit} runs shown; there are more (--limit N, or --all)",
            file=sys.stderr,
        )
    return 0
