"""The run catalog: a ledger of signed records, linked by digest (the face of ``catalog/``).

``schema`` holds the tables (keyed by a record's Statement sha256), ``db`` the
database seam (:class:`Catalog` over the ``sqlite`` and ``postgres`` backends) and the
questions the rest of rexec asks it, ``queries`` the ledger, a record, a comparison, a
lineage graph, ``index`` turns one record into rows, ``inputs`` resolves ``from``
inputs to records that verify, ``where`` reads ``--where`` conditions, ``render``
draws lineage. The records stay the truth; the catalog is an index of them, rebuilt
from them at will, never an authority (docs/catalog.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from executor.approvals import list_approvals
from executor.canonical import sha256_hex
from executor.catalog.annotations import Annotations, annotate, annotations_of
from executor.catalog.db import SCHEMA_VERSION, Catalog
from executor.catalog.index import (
    Rows,
    absolute,
    dependency_digest,
    read_statement,
    rows_at,
    rows_held,
    verification_text,
    verified_rows_at,
)
from executor.catalog.inputs import Upstream, find_upstream, pin_from, resolve_inputs
from executor.catalog.ledger import log
from executor.catalog.noise import Reference, seed_reference
from executor.catalog.pipelines import find_ledgers, index_ledgers, pipeline_runs
from executor.catalog.queries import (
    CURRENT,
    MAX_COMPARED,
    STALE,
    claim,
    compare,
    lineage,
    resolve,
    resolve_record,
    show,
    show_record,
)
from executor.catalog.render import FORMATS, render_lineage
from executor.catalog.where import parse_where
from executor.errors import InputError, RexecError
from executor.paths import cache_dir
from executor.progress import Say
from executor.record import RunRecord
from executor.signing import TrustPolicy

__all__ = [
    "CURRENT",
    "FORMATS",
    "MAX_COMPARED",
    "SCHEMA_VERSION",
    "STALE",
    "Annotations",
    "Catalog",
    "IndexReport",
    "Reference",
    "Upstream",
    "annotate",
    "annotations_of",
    "claim",
    "compare",
    "default_location",
    "dependency_digest",
    "find_ledgers",
    "find_records",
    "find_upstream",
    "index_ledgers",
    "index_records",
    "lineage",
    "log",
    "open_catalog",
    "parse_where",
    "pin_from",
    "pipeline_runs",
    "remember",
    "remember_at",
    "remember_ledger",
    "render_lineage",
    "resolve",
    "resolve_inputs",
    "resolve_record",
    "seed_reference",
    "show",
    "show_record",
    "verification_text",
]

URL_SCHEMES = ("postgresql://", "postgres://")


def default_location() -> str:
    """``$REXEC_CATALOG`` (a file or a ``postgresql://`` URL), else a file in the user's
    cache dir (never beside a shared runs dir)."""
    return os.environ.get("REXEC_CATALOG") or str(Path(cache_dir()) / "catalog.sqlite")


def open_catalog(location: str | Path | None = None, *, create: bool = True) -> Catalog:
    """The catalog at ``location`` (default: :func:`default_location`): a SQLite file, or a
    PostgreSQL database named by a ``postgresql://`` URL. Created only when ``create``: a
    command that only reads (log, show, lineage, query, the web view) never creates one,
    nor the directory it would be in."""
    where = str(location) if location is not None else default_location()
    if where.startswith(URL_SCHEMES):
        from executor.catalog.postgres import PostgresBackend

        return Catalog(PostgresBackend(where), create=create)
    from executor.catalog.sqlite import SQLiteBackend

    return Catalog(SQLiteBackend(Path(where), create=create), create=create)


def find_records(roots: Iterable[Path]) -> list[Path]:
    """Every record directly under each runs dir (a ``statement.json`` in it), or a record."""
    found: list[Path] = []
    for root in map(absolute, roots):  # the catalog keeps absolute paths
        if (root / "statement.json").is_file():
            found.append(root)
            continue
        if not root.is_dir():
            raise InputError(f"{root}: not a runs directory", hint="name a --runs-dir or a record")
        found.extend(sorted(p for p in root.iterdir() if (p / "statement.json").is_file()))
    return found


@dataclass
class IndexReport:
    """What one ``catalog index`` pass did."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)  # unknown manifest schema: some rows
    # run ids claimed by more than one record (each kept as its own row: never replaced)
    conflicts: list[str] = field(default_factory=list)
    # the same record found at another path while the indexed one still holds it (kept there)
    copies: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The JSON form of ``catalog index --json``."""
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "failed": list(self.failed),
            "partial": list(self.partial),
            "conflicts": list(self.conflicts),
            "copies": list(self.copies),
        }


def index_records(
    catalog: Catalog,
    records: Sequence[Path],
    *,
    rebuild: bool = False,
    policy: TrustPolicy | None = None,
    say: Say = lambda text: None,
) -> IndexReport:
    """Index ``records``: new and changed ones (by statement digest), or all with ``rebuild``;
    with ``policy``, each record (and its approvals) is verified and the result kept."""
    if rebuild:
        catalog.clear()
    known = {} if rebuild else catalog.known()
    approvals = catalog.approval_files() if known else {}
    report = IndexReport()
    claimed: set[str] = set()
    for path in records:
        try:
            sha = sha256_hex(read_statement(path))
            files = {p.name for p in list_approvals(path)}
            same_place = known.get(sha) == str(path)
            if policy is None and same_place and files == approvals.get(sha, set()):
                report.unchanged += 1  # the common case of an incremental pass: one hash
                continue
            # a relative path (an older catalog's) holds nothing: the row moves here
            held = os.path.isabs(known.get(sha, "")) and _holds(Path(known[sha]), sha)
            if sha in known and not same_place and held:
                report.copies.append(f"{path}: the same record as {known[sha]}, kept there")
                continue
            rows = verified_rows_at(path, policy) if policy is not None else rows_at(path)
            catalog.put(rows)
        except RexecError as exc:
            report.failed.append(f"{path}: {exc.message}")
            say(f"warning: not indexed: {path}: {exc.message}")
            continue
        run = rows["runs"][0]
        claimed.add(run["run_id"])
        if run["partial"]:
            report.partial.append(f"{path}: {run['partial']}")
            say(f"warning: indexed partially: {path}: {run['partial']}")
        if sha in known:
            report.updated += 1
        else:
            report.added += 1
    for run_id in catalog.claimed_twice(sorted(claimed)):
        claims = catalog.records_of(run_id)
        where = ", ".join(f"{c['path']} (statement {c['statement_sha256'][:12]})" for c in claims)
        report.conflicts.append(f"run {run_id}: {len(claims)} records claim it: {where}")
        say(f"warning: {len(claims)} records claim run {run_id}: {where}")
    if report.added or report.updated:
        catalog.optimize()
    return report


def _holds(path: Path, sha: str) -> bool:
    """Whether ``path`` still holds the record whose Statement has ``sha`` (a copy found
    elsewhere then never moves the row: whoever can write a copy cannot redirect it)."""
    try:
        return sha256_hex(read_statement(path)) == sha
    except RexecError:
        return False


def remember(record: RunRecord, *, say: Say, verification: str | None = None) -> None:
    """After a run, replay, rerun or approval: index the record the caller holds (the
    runner, which just wrote it), from those values, nothing read back; best effort,
    never failing what was done. ``verification``: the caller verified it."""
    _index(lambda: rows_held(record, verification=verification), say)


def remember_at(run_dir: Path, *, say: Say, verification: str | None = None) -> None:
    """:func:`remember` for a record the caller knows only by its directory."""
    _index(lambda: rows_at(run_dir, verification=verification), say)


def remember_ledger(path: Path, *, say: Say) -> None:
    """After a pipeline run or a regeneration: index its signed ledger (best effort)."""
    try:
        catalog = open_catalog()
        try:
            for problem in index_ledgers(catalog, [path], None):
                say(f"warning: the catalog did not index the ledger: {problem}")
        finally:
            catalog.close()
    except Exception as exc:  # a catalog problem must never change what was done
        say(f"warning: the catalog was not updated ({exc}); `rexec catalog index` catches up")


def _index(rows: Callable[[], Rows], say: Say) -> None:
    try:
        catalog = open_catalog()
        try:
            catalog.put(rows())
        finally:
            catalog.close()
    except Exception as exc:  # a catalog problem must never change a run's outcome
        say(f"warning: the catalog was not updated ({exc}); `rexec catalog index` catches up")
