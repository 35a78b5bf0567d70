"""Pipeline runs in the catalog: each signed ledger (``RUNS_DIR/pipelines/<id>/``) one row,
with what was decided for each stage and the run that stage is.

The ledger is read as its signer wrote it, a claim; with a trust policy its signature is
checked and the result kept (``verification``), as for run records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from executor import safeio
from executor.canonical import sha256_hex, strict_loads
from executor.catalog.db import Catalog
from executor.catalog.index import BUNDLE_CAP, absolute, read_statement
from executor.errors import InputError, RexecError
from executor.record import writer
from executor.signing import TrustPolicy

Rows = dict[str, list[dict[str, Any]]]


def find_ledgers(roots: Iterable[Path]) -> list[Path]:
    """Every pipeline or regeneration ledger under each runs directory."""
    found: list[Path] = []
    for root in map(absolute, roots):
        parent = root / writer.PIPELINES
        if parent.is_dir() and not parent.is_symlink():
            found += sorted(p for p in parent.iterdir() if (p / writer.STATEMENT).is_file())
    return found


def ledger_rows(path: Path, policy: TrustPolicy | None = None) -> Rows:
    """A ledger's row and its stages'; ``policy``: its signature checked first."""
    payload = read_statement(path)
    try:
        statement = strict_loads(payload)
    except ValueError as exc:
        raise InputError(f"{path}: not a pipeline ledger ({exc})") from exc
    predicate = statement.get("predicate") if isinstance(statement, Mapping) else None
    if statement.get("predicateType") != writer.PIPELINE_PREDICATE or not isinstance(
        predicate, Mapping
    ):
        raise InputError(f"{path}: not a pipeline ledger (predicate {writer.PIPELINE_PREDICATE})")
    sha = sha256_hex(payload)
    found = predicate.get("pipeline")
    about: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    row = {
        "statement_sha256": sha,
        "id": _text(predicate.get("id")) or path.name,
        "kind": _text(predicate.get("kind")),
        "name": _text(about.get("name")) or _text(predicate.get("id")),
        "started": _text(predicate.get("startedOn")),
        "finished": _text(predicate.get("finishedOn")),
        "path": str(path),
        "signed": int((path / writer.BUNDLE).is_file()),
        "verification": _verify(path, payload, policy) if policy is not None else None,
    }
    stages = [
        {
            "statement_sha256": sha,
            "position": position,
            "stage": _text(s.get("stage")),
            "decision": _text(s.get("decision")),
            "run_id": _text(s.get("runId")),
            "run_statement": _text(s.get("statementSha256")),
        }
        for position, s in enumerate(predicate.get("stages") or [])
        if isinstance(s, Mapping) and _text(s.get("stage"))
    ]
    return {"pipelines": [row], "stages": stages}


def index_ledgers(cat: Catalog, ledgers: Iterable[Path], policy: TrustPolicy | None) -> list[str]:
    """Index each ledger (replacing its rows); the ones that could not be read, and why."""
    failed = []
    for path in ledgers:
        try:
            rows = ledger_rows(path, policy)
        except RexecError as exc:
            failed.append(f"{path}: {exc.message}")
            continue
        sha = rows["pipelines"][0]["statement_sha256"]
        with cat.backend.transaction():
            for table in ("pipelines", "stages"):
                cat.rows(f"DELETE FROM {table} WHERE statement_sha256 = ?", [sha])
                for row in rows[table]:
                    names = ", ".join(row)
                    marks = ", ".join("?" for _ in row)
                    cat.rows(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(row.values()))
    return failed


def pipeline_runs(cat: Catalog, *, limit: int) -> list[dict[str, Any]]:
    """The newest pipeline runs, each with its stages (and each stage's run's status)."""
    found = cat.rows(
        "SELECT * FROM pipelines ORDER BY started DESC, statement_sha256 LIMIT ?", [limit]
    )
    for row in found:
        row["stages"] = cat.rows(
            "SELECT s.stage, s.decision, s.run_id, s.run_statement, r.status"
            " FROM stages s LEFT JOIN runs r ON r.statement_sha256 = s.run_statement"
            " WHERE s.statement_sha256 = ? ORDER BY s.position",
            [row["statement_sha256"]],
        )
    return found


def _verify(path: Path, payload: bytes, policy: TrustPolicy) -> str:
    try:
        bundle = safeio.read_capped(path / writer.BUNDLE, cap=BUNDLE_CAP)
        signed = policy.verify_bundle(bundle)
    except (OSError, safeio.UnsafeFile):
        return "failed: no signature beside it"
    except RexecError as exc:
        return f"failed: {exc.message}"
    if signed.payload != payload:
        return "failed: the statement differs from what its signature covers"
    return f"verified by {signed.signer}"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
