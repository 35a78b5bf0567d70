"""``rexec catalog index|status|query``: build, inspect and query the run catalog."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from executor import catalog
from executor.cli._catalog import add_catalog_option, print_rows
from executor.cli._json import print_json
from executor.cli._options import add_trust_options, trust_policy

EPILOG = """\
examples:
  rexec catalog index runs/                  add new and changed records (incremental)
  rexec catalog index runs/ /shared/runs --rebuild --key signing.pub --verify
  rexec catalog status
  rexec catalog query "SELECT name, status, count(*) FROM runs GROUP BY 1, 2"

The records stay the truth: the catalog is derived from each statement.json
and rebuilt identically by --rebuild. rexec run, replay, rerun and the Slurm
node add their record as they finish (best effort: a catalog problem warns
and never changes a run's outcome). Default location: $REXEC_CATALOG, else
the cache dir (not beside a shared runs dir: SQLite locking needs one host).
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec catalog`` to the parser."""
    p = sub.add_parser(
        "catalog",
        help="build, inspect and query the catalog of run records",
        description="Index run records into the catalog, show its state, or query it in SQL.",
        epilog=EPILOG,
    )
    verbs = p.add_subparsers(title="actions", metavar="ACTION")
    index = verbs.add_parser("index", help="index the records of runs dirs (or records)")
    index.add_argument("roots", nargs="*", type=Path, default=[Path("runs")], metavar="RUNS_DIR")
    index.add_argument("--rebuild", action="store_true", help="drop every row and index again")
    index.add_argument(
        "--verify",
        action="store_true",
        help="verify each record (and its approvals) under the trust policy below and record "
        "the result; show, log and the web view count a record's claims (superseded, "
        "replayed, approved) only once it verified",
    )
    add_trust_options(index, "trust policy for --verify (as for `rexec verify`)")
    index.add_argument("--json", action="store_true", help="print what was done as JSON")
    add_catalog_option(index)
    index.set_defaults(handler=handle_index)
    status = verbs.add_parser("status", help="where the catalog is and what it holds")
    status.add_argument("--json", action="store_true", help="print it as JSON")
    add_catalog_option(status)
    status.set_defaults(handler=handle_status)
    query = verbs.add_parser("query", help="a read-only SQL query (tables: docs/catalog.md)")
    query.add_argument("sql", help="one SELECT statement")
    query.add_argument("--json", action="store_true", help="print the rows as JSON")
    add_catalog_option(query)
    query.set_defaults(handler=handle_query)

    def usage(args: argparse.Namespace) -> int:
        p.print_help(sys.stderr)
        return 2

    p.set_defaults(handler=usage)


def handle_index(args: argparse.Namespace) -> int:
    """Index records; exit 0 even when some records could not be read (they are listed)."""
    policy = trust_policy(args) if args.verify else None
    cat = catalog.open_catalog(args.catalog)
    try:
        records = catalog.find_records(args.roots)
        report = catalog.index_records(
            cat,
            records,
            rebuild=args.rebuild,
            policy=policy,
            say=lambda text: print(f"rexec: {text}", file=sys.stderr),
        )
        # pipeline and regeneration ledgers: one row each, with their stages
        for problem in catalog.index_ledgers(cat, catalog.find_ledgers(args.roots), policy):
            print(f"rexec: warning: not indexed: {problem}", file=sys.stderr)
    finally:
        cat.close()
    if args.json:
        print_json(report.to_json())
    else:
        print(
            f"indexed {report.added} new, {report.updated} updated, {report.unchanged} unchanged"
            f" ({len(report.failed)} not readable, {len(report.partial)} partially,"
            f" {len(report.conflicts)} run id(s) claimed by several records) into {cat.label}"
        )
    return 0


def handle_status(args: argparse.Namespace) -> int:
    """Print where the catalog is and how many rows each table holds."""
    cat = catalog.open_catalog(args.catalog, create=False)
    try:
        counts = cat.counts()
    finally:
        cat.close()
    tables = {t: counts[t] for t in ("runs", "inputs", "outputs", "params", "metrics")}
    doc = {
        "schema": "rexec.catalog-status/v1",
        "location": cat.label,
        "schemaVersion": catalog.SCHEMA_VERSION,
        "counts": tables,
        "unverified": counts["unverified"],
        "conflicts": counts["conflicts"],
    }
    if args.json:
        print_json(doc)
    else:
        print(f"catalog {cat.label} (schema {catalog.SCHEMA_VERSION})")
        for table, n in tables.items():
            print(f"  {table:8} {n}")
        print(f"  {doc['unverified']} record(s) indexed without --verify")
        if doc["conflicts"]:
            print(f"  {doc['conflicts']} run id(s) claimed by more than one record (rexec show ID)")
    return 0


def handle_query(args: argparse.Namespace) -> int:
    """Run one read-only SELECT and print its rows."""
    cat = catalog.open_catalog(args.catalog, create=False)
    try:
        rows = cat.read_only_query(args.sql)
    finally:
        cat.close()
    if args.json:
        print_json(rows, default=str)
    else:
        print_rows(rows)
    return 0
