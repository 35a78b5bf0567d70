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

from executor.catalog.index import rows_of
from executor.catalog.inputs import resolve_inputs
from executor.catalog.render import render_lineage
from executor.catalog.store import SCHEMA_VERSION, Catalog
from executor.catalog.where import parse_where
from executor.errors import InputError, RexecError
from executor.paths import cache_dir
from executor.record.reader import load_record

__all__ = [
    "SCHEMA_VERSION",
    "Catalog",
    "IndexReport",
    "compare",
    "default_path",
    "find_records",
    "index_records",
    "lineage",
    "log",
    "open_catalog",
    "parse_where",
    "remember",
    "render_lineage",
    "resolve",
    "resolve_inputs",
    "show",
]

Say = Callable[[str], None]
# The Statement's own verification, when `catalog index --verify` ran it, or None.
Verifier = Callable[[Path], str]


def default_path() -> Path:
    """``$REXEC_CATALOG``, else the user's cache dir (never beside a shared runs dir)."""
    return Path(os.environ.get("REXEC_CATALOG") or Path(cache_dir()) / "catalog.sqlite")


def open_catalog(path: Path | None = None) -> Catalog:
    """The catalog at ``path`` (default: :func:`default_path`), created if need be."""
    return Catalog(path or default_path())


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

    def to_json(self) -> dict[str, Any]:
        """The JSON form of ``catalog index --json``."""
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "failed": list(self.failed),
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
    report = IndexReport()
    for path in records:
        try:
            record = load_record(path)
            if known.get(record.run_id) == record.statement_sha256 and verify is None:
                report.unchanged += 1
                continue
            verification = verify(path) if verify is not None else None
            catalog.put(rows_of(record, verification=verification))
        except RexecError as exc:
            report.failed.append(f"{path}: {exc.message}")
            say(f"warning: not indexed: {path}: {exc.message}")
            continue
        if record.run_id in known:
            report.updated += 1
        else:
            report.added += 1
    return report


def remember(run_dir: Path, *, say: Say) -> None:
    """After a run, replay or rerun: index its record, best effort (never fails the run)."""
    try:
        catalog = open_catalog()
        try:
            catalog.put(rows_of(load_record(run_dir), verification=None))
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
    runs = [
        r["run_id"]
        # A range on the primary key: a prefix lookup without scanning every run.
        for r in catalog.rows(
            "SELECT run_id FROM runs WHERE run_id >= ?1 AND run_id < ?1 || char(1114111)", [ref]
        )
    ]
    if ref in runs:
        return "run", ref
    hexpart = ref.split(":", 1)[-1]
    digests: list[str] = []
    if len(hexpart) >= 8 and all(c in "0123456789abcdef" for c in hexpart.lower()):
        query = (
            "SELECT DISTINCT digest FROM"
            " (SELECT digest FROM outputs UNION SELECT digest FROM inputs)"
            " WHERE substr(digest, 1, length(?1)) = ?1"
            " OR substr(digest, instr(digest, ':') + 1, length(?2)) = ?2"
        )
        full = ref if ":" in ref else "\x00"  # "algo:hex…" prefix, or hex alone
        digests = [r["digest"] for r in catalog.rows(query, [full, hexpart.lower()])]
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


def log(catalog: Catalog, *, where: Sequence[str] = (), **filters: Any) -> list[dict[str, Any]]:
    """The ledger, newest first, filtered (``name``, ``status``, ``kind``, ``since``,
    ``input`` and ``produced`` digests, ``image``, ``commit``) and by ``--where``."""
    sql = ["SELECT * FROM runs r WHERE 1=1"]
    args: list[Any] = []
    for column in ("name", "status", "kind", "image", "code_commit"):
        if filters.get(column):
            sql.append(f"AND r.{column} = ?")
            args.append(filters[column])
    if filters.get("since"):
        sql.append("AND r.started >= ?")
        args.append(filters["since"])
    if filters.get("input"):
        sql.append("AND EXISTS (SELECT 1 FROM inputs i WHERE i.run_id = r.run_id AND i.digest = ?)")
        args.append(filters["input"])
    if filters.get("produced"):
        sql.append(
            "AND EXISTS (SELECT 1 FROM outputs o WHERE o.run_id = r.run_id AND o.digest = ?)"
        )
        args.append(filters["produced"])
    for text in where:
        clause, values = parse_where(text)
        sql.append(f"AND {clause}")
        args.extend(values)
    sql.append("ORDER BY r.started DESC, r.run_id DESC")
    if filters.get("limit"):
        sql.append("LIMIT ?")
        args.append(int(filters["limit"]))
    return catalog.rows(" ".join(sql), args)


def show(catalog: Catalog, ref: str) -> dict[str, Any]:
    """Everything known about a run (its rows, producers of its inputs, consumers of its
    outputs) or a digest (which runs produced and consumed it)."""
    kind, value = resolve(catalog, ref)
    if kind == "digest":
        return {
            "digest": value,
            "producedBy": catalog.rows(
                "SELECT run_id, name FROM outputs WHERE digest = ?", [value]
            ),
            "consumedBy": catalog.rows("SELECT run_id, name FROM inputs WHERE digest = ?", [value]),
        }
    (run,) = catalog.rows("SELECT * FROM runs WHERE run_id = ?", [value])
    inputs = catalog.rows(
        "SELECT name, digest, role FROM inputs WHERE run_id = ? ORDER BY name", [value]
    )
    for item in inputs:
        item["producedBy"] = [
            r["run_id"]
            for r in catalog.rows("SELECT run_id FROM outputs WHERE digest = ?", [item["digest"]])
        ]
    outputs = catalog.rows(
        "SELECT name, digest, role FROM outputs WHERE run_id = ? ORDER BY name", [value]
    )
    for item in outputs:
        item["consumedBy"] = [
            r["run_id"]
            for r in catalog.rows("SELECT run_id FROM inputs WHERE digest = ?", [item["digest"]])
        ]
    return {
        "run": run,
        "inputs": inputs,
        "outputs": outputs,
        "params": catalog.rows(
            "SELECT key, value, overridden FROM params WHERE run_id = ?", [value]
        ),
        "metrics": catalog.rows("SELECT file, key, value FROM metrics WHERE run_id = ?", [value]),
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
