"""The run catalog: a ledger of signed records, linked by digest (the face of ``catalog/``).

``store`` is the SQLite database and its queries, ``index`` turns one record
into rows, ``where`` reads ``--where`` conditions, ``render`` draws lineage.
The records stay the truth; the catalog is derived and rebuilt from them
(docs/catalog.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from executor.approvals import list_approvals
from executor.canonical import sha256_hex
from executor.catalog.index import read_statement, rows_at
from executor.catalog.inputs import pin_from, resolve_inputs
from executor.catalog.render import render_lineage
from executor.catalog.store import SCHEMA_VERSION, Catalog, like_pattern
from executor.catalog.where import parse_where
from executor.errors import InputError, RexecError
from executor.paths import cache_dir
from executor.record.reader import load_record

__all__ = [
    "SCHEMA_VERSION",
    "Catalog",
    "IndexReport",
    "compare",
    "default_location",
    "find_records",
    "index_records",
    "lineage",
    "log",
    "open_catalog",
    "parse_where",
    "pin_from",
    "remember",
    "render_lineage",
    "resolve",
    "resolve_inputs",
    "show",
]

Say = Callable[[str], None]
# The Statement's own verification, when `catalog index --verify` ran it, or None.
Verifier = Callable[[Path], str]


URL_SCHEMES = ("postgresql://", "postgres://")


def default_location() -> str:
    """``$REXEC_CATALOG`` (a file or a ``postgresql://`` URL), else a file in the user's
    cache dir (never beside a shared runs dir)."""
    return os.environ.get("REXEC_CATALOG") or str(Path(cache_dir()) / "catalog.sqlite")


def open_catalog(location: str | Path | None = None) -> Catalog:
    """The catalog at ``location`` (default: :func:`default_location`), created if need be:
    a SQLite file, or a PostgreSQL database named by a ``postgresql://`` URL."""
    where = str(location) if location is not None else default_location()
    if where.startswith(URL_SCHEMES):
        from executor.catalog.postgres import PostgresBackend

        return Catalog(PostgresBackend(where))
    from executor.catalog.sqlite import SQLiteBackend

    return Catalog(SQLiteBackend(Path(where)))


def find_records(roots: Iterable[Path]) -> list[Path]:
    """Every record directly under each runs dir (a ``statement.json`` in it), or a record."""
    found: list[Path] = []
    for root in roots:
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

    def to_json(self) -> dict[str, Any]:
        """The JSON form of ``catalog index --json``."""
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "failed": list(self.failed),
            "partial": list(self.partial),
        }


def index_records(
    catalog: Catalog,
    records: Sequence[Path],
    *,
    rebuild: bool = False,
    verify: Verifier | None = None,
    say: Say = lambda text: None,
) -> IndexReport:
    """Index ``records``: new and changed ones (by statement digest), or all with ``rebuild``."""
    if rebuild:
        catalog.clear()
    known = {} if rebuild else catalog.known()
    by_statement = {sha: run_id for run_id, sha in known.items()}
    approvals = catalog.approval_files() if known else {}
    report = IndexReport()
    for path in records:
        try:
            run_id = by_statement.get(sha256_hex(read_statement(path)))
            files = {p.name for p in list_approvals(path)}
            if verify is None and run_id is not None and files == approvals.get(run_id, set()):
                report.unchanged += 1  # the common case of an incremental pass: one hash
                continue
            verification = verify(path) if verify is not None else None
            rows = rows_at(path, verification=verification)
            catalog.put(rows)
        except RexecError as exc:
            report.failed.append(f"{path}: {exc.message}")
            say(f"warning: not indexed: {path}: {exc.message}")
            continue
        run = rows["runs"][0]
        if run["partial"]:
            report.partial.append(f"{path}: {run['partial']}")
            say(f"warning: indexed partially: {path}: {run['partial']}")
        if run["run_id"] in known:
            report.updated += 1
        else:
            report.added += 1
    if report.added or report.updated:
        catalog.optimize()
    return report


def remember(run_dir: Path, *, say: Say) -> None:
    """After a run, replay or rerun: index its record, best effort (never fails the run)."""
    try:
        catalog = open_catalog()
        try:
            catalog.put(rows_at(run_dir, verification=None))
        finally:
            catalog.close()
    except Exception as exc:  # a catalog problem must never change a run's outcome
        say(f"warning: the catalog was not updated ({exc}); `rexec catalog index` catches up")


def resolve(catalog: Catalog, ref: str) -> tuple[str, str]:
    """``("run", run_id)`` or ``("digest", digest)`` for a run id, its unique prefix, a
    record path, or a digest (``sha256:…``, ``sha256-tree-v1:…``, or ≥ 8 hex of one)."""
    path = Path(ref)
    if (path / "statement.json").is_file():
        return "run", load_record(path).run_id
    runs = catalog.run_ids_starting(ref)
    if ref in runs:
        return "run", ref
    hexpart = ref.split(":", 1)[-1]
    digests: list[str] = []
    if len(hexpart) >= 8 and all(c in "0123456789abcdef" for c in hexpart.lower()):
        digests = catalog.digests_starting(ref)
    candidates = [("run", r) for r in runs] + [("digest", d) for d in digests]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise InputError(
            f"{ref}: no run or digest in the catalog starts with it",
            hint="`rexec log` lists the runs; `rexec catalog index RUNS_DIR` adds records",
        )
    raise InputError(
        f"{ref}: ambiguous, {len(candidates)} candidates",
        details=[f"{kind} {value}" for kind, value in candidates[:20]],
        hint="give more of the run id or digest",
    )


# Digests a regeneration replaced: the corrected inputs, and each output of a superseded
# run that its successor made differently (an identical output is not replaced).
_CORRECTED = """
    SELECT old_digest AS digest FROM corrections
    UNION
    SELECT o.digest FROM supersedes s JOIN outputs o ON o.run_id = s.old_run
    LEFT JOIN outputs n ON n.run_id = s.run_id AND n.name = o.name
    WHERE n.digest IS NULL OR n.digest != o.digest"""
_CURRENT = "i.run_id NOT IN (SELECT old_run FROM supersedes)"
# Current runs that read a replaced digest, and, transitively, what read their outputs.
STALE = f"""
    WITH RECURSIVE stale(run_id) AS (
        SELECT i.run_id FROM inputs i WHERE i.digest IN ({_CORRECTED}) AND {_CURRENT}
        UNION
        SELECT i.run_id FROM stale s JOIN outputs o ON o.run_id = s.run_id
            JOIN inputs i ON i.digest = o.digest WHERE {_CURRENT}
    )
    SELECT s.run_id FROM stale s JOIN runs k ON k.run_id = s.run_id WHERE k.kind != 'replay'"""


def log(catalog: Catalog, *, where: Sequence[str] = (), **filters: Any) -> list[dict[str, Any]]:
    """The ledger, newest first, filtered (``name``, ``status``, ``kind``, ``since``,
    ``input`` and ``produced`` digests, ``image``, ``code_commit``, ``signer``, ``stale``)
    and by ``--where``."""
    sql = ["SELECT * FROM runs r WHERE 1=1"]
    args: list[Any] = []
    for column in ("name", "status", "kind", "image", "code_commit"):
        if filters.get(column):
            sql.append(f"AND r.{column} = ?")
            args.append(filters[column])
    if filters.get("signer"):  # a key hint, or a Sigstore identity with or without its issuer
        sql.append("AND (r.signer = ? OR r.signer LIKE ? ESCAPE '\\')")
        args += [filters["signer"], like_pattern(filters["signer"]) + " (issuer %"]
    if filters.get("since"):
        sql.append("AND r.started >= ?")
        args.append(filters["since"])
    if filters.get("input"):
        sql.append("AND r.run_id IN (SELECT i.run_id FROM inputs i WHERE i.digest = ?)")
        args.append(filters["input"])
    if filters.get("produced"):
        sql.append("AND r.run_id IN (SELECT o.run_id FROM outputs o WHERE o.digest = ?)")
        args.append(filters["produced"])
    if filters.get("stale"):
        sql.append(f"AND r.run_id IN ({STALE})")
    for text in where:
        clause, values = parse_where(text)
        sql.append(f"AND {clause}")
        args.extend(values)
    sql.append("ORDER BY r.started DESC NULLS LAST, r.run_id DESC")
    if filters.get("limit"):
        sql.append("LIMIT ? OFFSET ?")
        args += [int(filters["limit"]), int(filters.get("offset") or 0)]
    return catalog.rows(" ".join(sql), args)


def show(catalog: Catalog, ref: str) -> dict[str, Any]:
    """Everything known about a run (its rows, producers of its inputs, consumers of its
    outputs) or a digest (which runs produced and consumed it)."""
    kind, value = resolve(catalog, ref)
    if kind == "digest":
        return {
            "digest": value,
            "producedBy": catalog.rows(
                "SELECT run_id, name FROM outputs WHERE digest = ? ORDER BY run_id, name", [value]
            ),
            "consumedBy": catalog.rows(
                "SELECT run_id, name FROM inputs WHERE digest = ? ORDER BY run_id, name", [value]
            ),
        }
    (run,) = catalog.rows("SELECT * FROM runs WHERE run_id = ?", [value])
    inputs = catalog.rows(
        "SELECT name, digest, role FROM inputs WHERE run_id = ? ORDER BY name", [value]
    )
    for item in inputs:
        item["producedBy"] = [
            r["run_id"]
            for r in catalog.rows(
                "SELECT DISTINCT run_id FROM outputs WHERE digest = ? ORDER BY run_id",
                [item["digest"]],
            )
        ]
    outputs = catalog.rows(
        "SELECT name, digest, role FROM outputs WHERE run_id = ? ORDER BY name", [value]
    )
    for item in outputs:
        item["consumedBy"] = [
            r["run_id"]
            for r in catalog.rows(
                "SELECT DISTINCT run_id FROM inputs WHERE digest = ? ORDER BY run_id",
                [item["digest"]],
            )
        ]
    return {
        "run": run,
        "supersededBy": [
            r["run_id"]
            for r in catalog.rows(
                "SELECT run_id FROM supersedes WHERE old_run = ? ORDER BY run_id", [value]
            )
        ],
        "supersedes": [
            r["old_run"]
            for r in catalog.rows(
                "SELECT old_run FROM supersedes WHERE run_id = ? ORDER BY old_run", [value]
            )
        ],
        "inputs": inputs,
        "outputs": outputs,
        "approvals": catalog.rows(
            "SELECT file, approver_kind, approver, result, verified_at, policy FROM approvals"
            " WHERE run_id = ? ORDER BY verified_at, file",
            [value],
        ),
        "params": catalog.rows(
            "SELECT key, value, overridden FROM params WHERE run_id = ? ORDER BY key", [value]
        ),
        "metrics": catalog.rows(
            "SELECT file, key, value FROM metrics WHERE run_id = ? ORDER BY file, key", [value]
        ),
    }


def compare(catalog: Catalog, refs: Sequence[str], *, changed_only: bool = True) -> dict[str, Any]:
    """Runs side by side, vertically: one row per key (status, seed, image, code, each
    param, metric, input and output), one column per run; the first run is the
    reference, and a numeric row carries each run's delta from it."""
    run_ids = []
    for ref in refs:
        kind, value = resolve(catalog, ref)
        if kind != "run":
            raise InputError(f"{ref}: a digest, not a run", hint="compare takes runs")
        run_ids.append(value)
    if not 2 <= len(run_ids) <= 20:
        raise InputError(f"compare takes 2 to 20 runs, got {len(run_ids)}")
    table: dict[str, dict[str, Any]] = {}

    def put(key: str, run_id: str, value: Any) -> None:
        table.setdefault(key, {})[run_id] = value

    for run_id in run_ids:
        (run,) = catalog.rows("SELECT * FROM runs WHERE run_id = ?", [run_id])
        for column in ("name", "status", "seed", "image", "code_commit", "code_tree", "engine"):
            put(column, run_id, run[column])
        for p in catalog.rows("SELECT key, value, num FROM params WHERE run_id = ?", [run_id]):
            put(f"params.{p['key']}", run_id, p["num"] if p["num"] is not None else p["value"])
        for m in catalog.rows("SELECT file, key, value FROM metrics WHERE run_id = ?", [run_id]):
            put(f"metrics.{m['file']}:{m['key']}", run_id, m["value"])
        for i in catalog.rows("SELECT name, digest FROM inputs WHERE run_id = ?", [run_id]):
            put(f"input.{i['name']}", run_id, i["digest"])
        for o in catalog.rows("SELECT name, digest FROM outputs WHERE run_id = ?", [run_id]):
            put(f"output.{o['name']}", run_id, o["digest"])
    rows = []
    for key in sorted(table):
        values = [table[key].get(r) for r in run_ids]
        same = all(v == values[0] for v in values)
        if changed_only and same:
            continue
        row: dict[str, Any] = {"key": key, "values": values, "same": same}
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(numbers) == len(values):
            row["deltas"] = [v - numbers[0] for v in numbers]
        rows.append(row)
    return {"runs": run_ids, "rows": rows, "changedOnly": changed_only}


def lineage(catalog: Catalog, ref: str, *, direction: str) -> dict[str, Any]:
    """The graph around a run or a digest: ``upstream`` (what produced its inputs, back
    to raw data), ``downstream`` (what consumed its outputs), or ``both``."""
    if direction not in ("upstream", "downstream", "both"):
        raise InputError(f"lineage direction {direction!r}", hint="upstream, downstream or both")
    kind, value = resolve(catalog, ref)
    if kind == "run":
        ins = [
            r["digest"] for r in catalog.rows("SELECT digest FROM inputs WHERE run_id = ?", [value])
        ]
        outs = [
            r["digest"]
            for r in catalog.rows("SELECT digest FROM outputs WHERE run_id = ?", [value])
        ]
    else:
        ins = outs = [value]
    run_ids = {value} if kind == "run" else set()
    if direction in ("upstream", "both"):
        run_ids |= set(catalog.walk(ins, direction="upstream"))
    if direction in ("downstream", "both"):
        run_ids |= set(catalog.walk(outs, direction="downstream"))
    return {"focus": {"kind": kind, "value": value}, **catalog.graph(sorted(run_ids))}
