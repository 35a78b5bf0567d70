"""``rexec report``: a run or digest, its lineage and every run in it, as one HTML file."""

from __future__ import annotations

import argparse
from pathlib import Path

from executor import catalog, safeio
from executor.cli._catalog import add_catalog_option
from executor.errors import InputError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec report`` to the parser."""
    r = sub.add_parser(
        "report",
        help="one self-contained HTML file about a run or digest, for an audit trail",
        description=(
            "Write a run (or a digest) with its lineage, both ways, and every run in it as one "
            "HTML file that opens offline: no script, no request of any kind."
        ),
        epilog="example:\n  rexec report <run-id> -o report.html\n",
    )
    r.add_argument("ref", metavar="RUN|DIGEST")
    r.add_argument("-o", "--output", type=Path, required=True, help="the HTML file to write")
    add_catalog_option(r)
    r.set_defaults(handler=handle_report)


def handle_report(args: argparse.Namespace) -> int:
    """Write the report file atomically."""
    from executor import web

    location = str(args.catalog) if args.catalog else catalog.default_location()
    text = web.report(location, args.ref)
    try:
        safeio.write_atomic(args.output, text.encode())
    except OSError as exc:
        raise InputError(f"-o {args.output}: cannot write ({exc.strerror})") from exc
    print(f"report: {args.output} ({len(text) // 1024} KiB, opens offline)")
    return 0
