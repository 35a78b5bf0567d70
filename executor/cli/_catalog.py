"""What the catalog commands share: the --catalog option and a plain table printer."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from executor.cli._render import console, safe


def add_catalog_option(p: argparse.ArgumentParser) -> None:
    """``--catalog PATH|URL``: another catalog than $REXEC_CATALOG or the default."""
    p.add_argument(
        "--catalog",
        metavar="PATH|URL",
        default=None,
        help="a SQLite file or a postgresql://user@host/db URL (default: $REXEC_CATALOG,"
        " else ~/.cache/rexec/catalog.sqlite)",
    )


def print_rows(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> None:
    """Rows as aligned text columns; every value is a record's string, shown escaped."""
    out = console()
    if not rows:
        out.print("(no rows)")
        return
    names = list(columns or rows[0].keys())
    cells = [[("" if r.get(n) is None else str(r.get(n))) for n in names] for r in rows]
    widths = [min(60, max(len(n), *(len(c[i]) for c in cells))) for i, n in enumerate(names)]
    out.print(safe("  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True))))
    for row in cells:
        shown = [c if len(c) <= w else c[: w - 3] + "..." for c, w in zip(row, widths, strict=True)]
        out.print(safe("  ".join(c.ljust(w) for c, w in zip(shown, widths, strict=True))))
