"""The catalog's questions: resolve a reference, the ledger, a record, a comparison, a
lineage graph. Each record is a row keyed by its Statement's sha256; a link to another
record (superseded, replayed, approved) counts only when that record verified, and is
shown as a claim by its signer otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from executor.canonical import sha256_hex
from executor.catalog.annotations import annotations_of
from executor.catalog.db import Catalog
from executor.catalog.index import read_statement
from executor.catalog.noise import MAX_SEEDS
from executor.errors import InputError
from executor.metrics import noise_of

__all__ = [
    "CURRENT",
    "MAX_COMPARED",
    "STALE",
    "claim",
    "compare",
    "lineage",
    "resolve",
    "resolve_record",
    "show",
    "show_record",
]

# Runs side by side: any the web ledger's page shows (50), ticked, or named
MAX_COMPARED = 50


def _describe(claims: Sequence[Mapping[str, Any]]) -> list[str]:
    return [
        f"statement {c['statement_sha256']} at {c['path']} (signer {c['signer_kind']} "
        f"{c['signer']}; {c['verification'] or 'not verified'})"
        for c in claims
    ]


def resolve(catalog: Catalog, ref: str) -> tuple[str, str]:
    """``("record", statement_sha256)``, ``("conflict", run_id)`` (several records claim
    the run) or ``("digest", digest)`` for a run id, its unique prefix, a record path, a
    record's Statement digest, or an artifact digest (``sha256:…``, ``sha256-tree-v1:…``,
    or ≥ 8 hex of one)."""
    path = Path(ref)
    if (path / "statement.json").is_file():
        sha = sha256_hex(read_statement(path))
        if catalog.record(sha) is None:
            raise InputError(
                f"{ref}: this record is not in the catalog",
                hint=f"`rexec catalog index {ref}` adds it",
            )
        return "record", sha
    runs = catalog.run_ids_starting(ref)
    if ref in runs:
        runs = [ref]
    hexpart = ref.split(":", 1)[-1]
    digests: list[str] = []
    statements: list[str] = []
    if len(hexpart) >= 8 and all(c in "0123456789abcdef" for c in hexpart.lower()):
        digests = catalog.digests_starting(ref)
        if ref.startswith("sha256:") or ":" not in ref:
            statements = catalog.statements_starting(hexpart)
    candidates = (
        [("run", r) for r in runs]
        + [("digest", d) for d in digests]
        + [("record", s) for s in statements]
    )
    if not candidates:
        raise InputError(
            f"{ref}: no run or digest in the catalog starts with it",
            hint="`rexec runs` lists the runs; `rexec catalog index RUNS_DIR` adds records",
        )
    if len(candidates) > 1:
        raise InputError(
            f"{ref}: ambiguous, {len(candidates)} candidates",
            details=[f"{kind} {value}" for kind, value in candidates[:20]],
            hint="give more of the run id or digest",
        )
    kind, value = candidates[0]
    if kind != "run":
        return kind, value
    claims = catalog.records_of(value)
    return ("record", claims[0]["statement_sha256"]) if len(claims) == 1 else ("conflict", value)


def resolve_record(catalog: Catalog, ref: str) -> str:
    """The one record ``ref`` names (a Statement's sha256); a conflict or a digest is an
    error that lists what it could mean."""
    kind, value = resolve(catalog, ref)
    if kind == "record":
        return value
    if kind == "conflict":
        raise InputError(
            f"{ref}: {len(catalog.records_of(value))} records claim run {value}",
            details=_describe(catalog.records_of(value)),
            hint="name one by its record directory or its statement digest (sha256:…); "
            "`rexec show` lists them",
        )
    raise InputError(f"{ref}: a digest, not a run", hint="name a run id or a record directory")


# Claims that count only once the record that makes them has verified (its `verification`
# column, written by `catalog index --verify` or by the command that verified it).
VERIFIED = "LIKE 'verified%'"
# Records a verified regeneration replaced.
_SUPERSEDED = (
    "SELECT s.old_statement FROM supersedes s JOIN runs n ON n.statement_sha256 ="
    f" s.statement_sha256 WHERE n.verification {VERIFIED}"
)
CURRENT = f"statement_sha256 NOT IN ({_SUPERSEDED})"
# Records that read what a verified regeneration replaced, followed along the lineage the
# records sign (each input names the record it came from), never by digest alone: the
# same bytes may be made by two stages, and a pruned run reads what its regenerated
# upstream made again. A record is stale when it read
#   - a raw input that a regeneration corrected,
#   - from a replaced record, bytes its successor does not make, or
#   - from a stale record;
# only current records (none a verified regeneration replaced) are followed, and a replay
# or a run that did not succeed is no part of the lineage.
STALE = f"""
    WITH RECURSIVE stale(statement_sha256) AS (
        SELECT seed.statement_sha256 FROM (
            SELECT i.statement_sha256 FROM inputs i WHERE i.from_statement IS NULL
                AND i.role = 'input' AND i.{CURRENT} AND i.digest IN (
                    SELECT c.old_digest FROM corrections c JOIN runs n
                    ON n.statement_sha256 = c.statement_sha256 WHERE n.verification {VERIFIED})
            UNION
            SELECT i.statement_sha256 FROM inputs i
                JOIN supersedes s ON s.old_statement = i.from_statement
                JOIN runs n ON n.statement_sha256 = s.statement_sha256
                WHERE n.verification {VERIFIED} AND i.{CURRENT} AND i.digest NOT IN (
                    SELECT x.digest FROM outputs x WHERE x.statement_sha256 = s.statement_sha256)
        ) AS seed
        UNION
        SELECT i.statement_sha256 FROM stale t
            JOIN inputs i ON i.from_statement = t.statement_sha256 WHERE i.{CURRENT}
    )
    SELECT s.statement_sha256 FROM stale s JOIN runs k ON k.statement_sha256 = s.statement_sha256
    WHERE k.kind != 'replay' AND k.status = 'succeeded' AND k.{CURRENT}"""


def _verified(row: Mapping[str, Any] | None) -> bool:
    return bool(row) and str((row or {}).get("verification") or "").startswith("verified")


def claim(row: Mapping[str, Any]) -> dict[str, Any]:
    """A link to another record as ``show`` and the web view state it: established when
    that record verified, else a claim by its (unverified) signer."""
    return {
        "run_id": row["run_id"],
        "statement_sha256": row["statement_sha256"],
        "verified": _verified(row),
        "signer": f"{row.get('signer_kind') or 'unsigned'} {row.get('signer') or ''}".strip(),
        "verification": row.get("verification"),
    }


def show(catalog: Catalog, ref: str) -> dict[str, Any]:
    """Everything known about a record (its rows, producers of its inputs, consumers of its
    outputs), a digest (which records produced and consumed it), or a run id that several
    records claim (each of them: a conflict)."""
    kind, value = resolve(catalog, ref)
    if kind == "conflict":
        claims = catalog.records_of(value)
        return {"conflict": value, "records": [{**c, **claim(c)} for c in claims]}
    if kind == "digest":
        return {
            "digest": value,
            "producedBy": catalog.rows(
                "SELECT run_id, statement_sha256, name FROM outputs WHERE digest = ?"
                " ORDER BY run_id, statement_sha256, name",
                [value],
            ),
            "consumedBy": catalog.rows(
                "SELECT run_id, statement_sha256, name FROM inputs WHERE digest = ?"
                " ORDER BY run_id, statement_sha256, name",
                [value],
            ),
        }
    return show_record(catalog, value)


def show_record(catalog: Catalog, value: str) -> dict[str, Any]:
    """Everything known about one record, named by its Statement's sha256."""
    run = catalog.record(value)
    if run is None:
        raise InputError(f"sha256:{value}: no such record in the catalog")
    others = [c for c in catalog.records_of(run["run_id"]) if c["statement_sha256"] != value]
    inputs = catalog.rows(
        "SELECT name, digest, role, from_run, from_statement FROM inputs"
        " WHERE statement_sha256 = ? ORDER BY name",
        [value],
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
        "SELECT name, digest, role FROM outputs WHERE statement_sha256 = ? ORDER BY name", [value]
    )
    for item in outputs:
        item["consumedBy"] = [
            r["run_id"]
            for r in catalog.rows(
                "SELECT DISTINCT run_id FROM inputs WHERE digest = ? ORDER BY run_id",
                [item["digest"]],
            )
        ]
    newer = catalog.rows(
        "SELECT r.* FROM supersedes s JOIN runs r ON r.statement_sha256 = s.statement_sha256"
        " WHERE s.old_statement = ? ORDER BY r.run_id, r.statement_sha256",
        [value],
    )
    older = catalog.rows(
        "SELECT old_run AS run_id, old_statement AS statement_sha256 FROM supersedes"
        " WHERE statement_sha256 = ? ORDER BY old_run",
        [value],
    )
    # Sorted here, not by SQL: with ORDER BY the planner walked the runs by start time
    # (most runs replay nothing, so its statistics rate the index on the original low):
    # 0.25 s for a run page at 100,000 runs, against a millisecond by the index.
    replays = sorted(
        catalog.rows(
            "SELECT * FROM runs WHERE original_statement = ? AND kind = 'replay'", [value]
        ),
        key=lambda r: (r["started"] or "", r["statement_sha256"]),
    )
    return {
        "run": run,
        # the catalog's own bookkeeping, unsigned, kept apart from the record's facts
        "annotations": annotations_of(catalog, [value])[value].to_json(),
        "otherClaims": [claim(c) for c in others],
        "supersededBy": [claim(r) for r in newer],
        "supersedes": older,
        "replays": [
            {**claim(r), "status": r["status"], "started": r["started"], "verdict": r["verdict"]}
            for r in replays
        ],
        "inputs": inputs,
        "outputs": outputs,
        "approvals": [
            {**a, "verified": str(a.get("verification") or "").startswith("verified")}
            for a in catalog.rows(
                "SELECT file, approver_kind, approver, result, verified_at, policy, verification"
                " FROM approvals WHERE statement_sha256 = ? ORDER BY verified_at, file",
                [value],
            )
        ],
        "params": catalog.rows(
            "SELECT key, value, overridden FROM params WHERE statement_sha256 = ? ORDER BY key",
            [value],
        ),
        "metrics": catalog.rows(
            "SELECT file, key, value FROM metrics WHERE statement_sha256 = ? ORDER BY file, key",
            [value],
        ),
    }


def compare(catalog: Catalog, refs: Sequence[str], *, changed_only: bool = True) -> dict[str, Any]:
    """Runs side by side, vertically: one row per key (status, seed, image, code, each
    param, metric, input and output), one column per run; the first run is the
    reference, and a numeric row carries each run's delta from it."""
    records = [resolve_record(catalog, ref) for ref in refs]
    if not 2 <= len(records) <= MAX_COMPARED:
        raise InputError(f"compare takes 2 to {MAX_COMPARED} runs, got {len(records)}")
    table: dict[str, dict[str, Any]] = {}

    def put(key: str, index: int, value: Any) -> None:
        table.setdefault(key, {})[str(index)] = value

    run_ids = []
    for index, sha in enumerate(records):
        run = catalog.record(sha) or {}
        run_ids.append(run.get("run_id"))
        for column in ("name", "status", "seed", "image", "code_commit", "code_tree", "engine"):
            put(column, index, run.get(column))
        by = [sha]
        for p in catalog.rows("SELECT key, value, num FROM params WHERE statement_sha256 = ?", by):
            put(f"params.{p['key']}", index, p["num"] if p["num"] is not None else p["value"])
        for m in catalog.rows(
            "SELECT file, key, value FROM metrics WHERE statement_sha256 = ?", by
        ):
            put(f"metrics.{m['file']}:{m['key']}", index, m["value"])
        for i in catalog.rows("SELECT name, digest FROM inputs WHERE statement_sha256 = ?", by):
            put(f"input.{i['name']}", index, i["digest"])
        for o in catalog.rows("SELECT name, digest FROM outputs WHERE statement_sha256 = ?", by):
            put(f"output.{o['name']}", index, o["digest"])
    rows = []
    for key in sorted(table):
        values = [table[key].get(str(i)) for i in range(len(records))]
        same = all(v == values[0] for v in values)
        if changed_only and same:
            continue
        row: dict[str, Any] = {"key": key, "values": values, "same": same}
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(numbers) == len(values):
            row["deltas"] = [v - numbers[0] for v in numbers]
        rows.append(row)
    reference = _judge(catalog, records[0], rows)
    return {
        "runs": run_ids,
        "records": records,
        "rows": rows,
        "changedOnly": changed_only,
        "seedReference": reference,
    }


def _judge(catalog: Catalog, first: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each metric's change from the first run, against the spread of the runs of the first
    run's spec with other seeds that verified when indexed (``noise`` beside ``deltas``)."""
    seed_key = (catalog.record(first) or {}).get("seed_key")
    found, unverified = catalog.seeded_metrics(seed_key, limit=MAX_SEEDS) if seed_key else ([], 0)
    values: dict[str, list[float]] = {}
    for m in found:
        if m["value"] is not None:
            values.setdefault(f"metrics.{m['file']}:{m['key']}", []).append(m["value"])
    seeds = len({m["statement_sha256"] for m in found})
    for row in rows:
        if row["key"].startswith("metrics.") and "deltas" in row:
            reference = values.get(row["key"], [])
            row["noise"] = [
                None if i == 0 or not d else noise_of(d, reference).to_json()
                for i, d in enumerate(row["deltas"])
            ]
    return {"seeds": seeds, "unverified": unverified}


def lineage(catalog: Catalog, ref: str, *, direction: str) -> dict[str, Any]:
    """The graph around a record or a digest: ``upstream`` (what produced its inputs, back
    to raw data), ``downstream`` (what consumed its outputs), or ``both``."""
    if direction not in ("upstream", "downstream", "both"):
        raise InputError(f"lineage direction {direction!r}", hint="upstream, downstream or both")
    kind, value = resolve(catalog, ref)
    if kind == "conflict":
        value, kind = resolve_record(catalog, ref), "record"  # raises: name one of them
    if kind == "record":
        by = [value]
        ins = [
            r["digest"]
            for r in catalog.rows("SELECT digest FROM inputs WHERE statement_sha256 = ?", by)
        ]
        outs = [
            r["digest"]
            for r in catalog.rows("SELECT digest FROM outputs WHERE statement_sha256 = ?", by)
        ]
    else:
        ins = outs = [value]
    records = {value} if kind == "record" else set()
    if direction in ("upstream", "both"):
        records |= set(catalog.walk(ins, direction="upstream"))
    if direction in ("downstream", "both"):
        records |= set(catalog.walk(outs, direction="downstream"))
    focus = {"kind": "run" if kind == "record" else kind, "value": value}
    if kind == "record":
        focus["value"] = (catalog.record(value) or {}).get("run_id", value)
        focus["statement_sha256"] = value
    return {"focus": focus, **catalog.graph(sorted(records))}
