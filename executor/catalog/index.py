"""One signed record to the catalog's rows: runs, inputs, outputs, params, metrics.

A reader per manifest schema (:data:`READERS`): a record of a schema this rexec
does not know is still listed, from the parts every in-toto Statement has (run
id, status, subjects), and its ``partial`` column says what was left out.

Every value comes from the Statement (and, for metrics, from output files
whose digests the Statement signs, read capped and without following links).
Identity is the content digest: inputs and code by tree digest and commit,
the image by digest, outputs by file digest and, for ``outputs/`` and its
top-level directories, by the signed tree digests a later run pins.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from executor import safeio
from executor.approvals import BUNDLE_SUFFIX, list_approvals
from executor.canonical import sha256_hex, strict_loads
from executor.compare.numeric import flatten
from executor.errors import InputError
from executor.record import store
from executor.record.manifest import MANIFEST_SCHEMA
from executor.record.manifest import loads as load_statement
from executor.record.reader import STATEMENT_CAP, RunRecord, StatementView, dig, load_record
from executor.signing.bundle import parse_bundle
from executor.spec.view import stage_key
from executor.verification import VERDICT_FILE, replay_verdict

__all__ = ["READERS", "Rows", "dependency_digest", "read_statement", "rows_at", "rows_of"]

METRICS_CAP = 1 << 20
BUNDLE_CAP = 16 << 20
Rows = dict[str, list[dict[str, Any]]]


def dependency_digest(dep: Mapping[str, Any] | None) -> str | None:
    """A resolved dependency's digest as the catalog writes it: ``algo:hex``."""
    digest = (dep or {}).get("digest") or {}
    for algo in ("sha256-tree-v1", "blake3-tree-v1", "sha256"):
        if isinstance(digest.get(algo), str):
            return f"{algo}:{digest[algo]}"
    return None


def _kind(lineage: Mapping[str, Any] | None) -> str:
    if not lineage:
        return "run"
    return "replay" if lineage.get("replayOf") else "rerun" if lineage.get("derivedFrom") else "run"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def read_statement(path: Path) -> bytes:
    """A record's ``statement.json`` bytes, read capped and without following a link."""
    try:
        return safeio.read_capped(path / store.STATEMENT, cap=STATEMENT_CAP)
    except FileNotFoundError:
        raise InputError(f"{path}: not a run record (no {store.STATEMENT})") from None
    except (OSError, safeio.UnsafeFile) as exc:
        raise InputError(f"{path / store.STATEMENT}: cannot read ({exc})") from exc


def rows_at(path: Path, *, verification: str | None) -> Rows:
    """The rows of the record at ``path``, by the reader for its manifest schema."""
    payload = read_statement(path)
    view = StatementView(load_statement(payload, source=str(path / store.STATEMENT)))
    reader = READERS.get(view.manifest_schema or "")
    if reader is None:
        return _partial_rows(path, view, sha256_hex(payload), verification)
    return reader(load_record(path, payload=payload), verification=verification)


def _signer(path: Path) -> tuple[str | None, str | None]:
    """Who the record's bundle says signed (a claim: ``--verify`` proves it)."""
    return _signer_of(path / store.BUNDLE)


def _signer_of(bundle_file: Path) -> tuple[str | None, str | None]:
    try:
        bundle = parse_bundle(safeio.read_capped(bundle_file, cap=BUNDLE_CAP))
    except (OSError, safeio.UnsafeFile, InputError):
        return None, None
    return bundle.claimed_signer()


def _partial_rows(path: Path, view: StatementView, sha: str, verification: str | None) -> Rows:
    """What any Statement gives: run id, status, times and subjects; the rest is left out."""
    run_id = view.run_id
    if not run_id:
        raise InputError(f"{path / store.STATEMENT}: no run id (runDetails.metadata.invocationId)")
    status, exit_code = view.status
    meta = dig(view.doc, "predicate", "runDetails", "metadata") or {}
    kind, signer = _signer(path)
    run = {
        "run_id": run_id,
        "statement_sha256": sha,
        "name": _text(
            dig(view.doc, "predicate", "buildDefinition", "externalParameters", "spec", "name")
        ),
        "kind": "run",
        "status": status,
        "exit_code": exit_code,
        "started": _text(meta.get("startedOn")),
        "finished": _text(meta.get("finishedOn")),
        "signed": int(kind is not None),
        "verification": verification,
        "path": str(path),
        "partial": (
            f"manifest schema {view.manifest_schema!r} is not one this rexec reads"
            f" ({', '.join(READERS)}): only the run id, status, times and subjects are indexed"
        ),
        "signer_kind": kind,
        "signer": signer,
    }
    outputs = [
        {
            "run_id": run_id,
            "name": s["name"],
            "digest": f"sha256:{s['digest']['sha256']}",
            "role": "file",
        }
        for s in view.subjects
        if isinstance(s, dict)
        and isinstance(s.get("name"), str)
        and isinstance(s.get("digest"), dict)
        and isinstance(s["digest"].get("sha256"), str)
    ]
    return {"runs": [run], "outputs": outputs}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def rows_of(record: RunRecord, *, verification: str | None) -> Rows:
    """The catalog rows of a ``rexec.manifest/v1`` record (read through the reader's
    signed-file checks)."""
    run_id = record.run_id
    view, internal = record.spec, record.internal
    meta = record.statement["predicate"]["runDetails"].get("metadata", {})
    lineage = internal.get("lineage") if isinstance(internal.get("lineage"), dict) else None
    code = record.dependency("code") or {}
    exit_code = None
    for product in record.statement["predicate"]["runDetails"].get("byproducts", []):
        if isinstance(product, dict) and product.get("name") == "exit-status":
            exit_code = (product.get("annotations") or {}).get("exitCode")
    run = {
        "run_id": run_id,
        "statement_sha256": record.statement_sha256,
        "name": view.get("name"),
        "kind": _kind(lineage),
        "status": record.status,
        "exit_code": exit_code if isinstance(exit_code, int) else None,
        "started": meta.get("startedOn"),
        "finished": meta.get("finishedOn"),
        "seed": view.get("seed") if isinstance(view.get("seed"), int) else None,
        "image": dependency_digest(record.dependency("image")),
        "code_commit": (code.get("digest") or {}).get("gitCommit"),
        "code_tree": dependency_digest(code),
        "invoker": json.dumps(internal.get("invoker"), sort_keys=True),
        "engine": ((record.host or {}).get("engine") or {}).get("name"),
        "signed": int((record.path / "statement.sigstore.json").is_file()),
        "verification": verification,
        "replay_of": (lineage or {}).get("replayOf"),
        "derived_from": (lineage or {}).get("derivedFrom"),
        "path": str(record.path),
        "partial": None,
        "purpose": view.get("purpose") if isinstance(view.get("purpose"), str) else None,
        "verdict": _verdict(record, lineage or {}),
        **dict(zip(("signer_kind", "signer"), _signer(record.path), strict=True)),
        "stage_key": stage_key(
            view, image=dependency_digest(record.dependency("image")), code=dependency_digest(code)
        ),
    }
    inputs = [
        {
            "run_id": run_id,
            "name": str(item.get("name")),
            "digest": str(item.get("digest")),
            "role": "input",
            "from_run": _from_run(record, item.get("name")),
        }
        for item in view.get("inputs", [])
        if isinstance(item, dict) and isinstance(item.get("digest"), str)
    ]
    for role, dep in (("image", record.dependency("image")), ("code", code)):
        digest = dependency_digest(dep)
        if digest is not None:
            inputs.append({"run_id": run_id, "name": role, "digest": digest, "role": role})
    outputs = [
        {"run_id": run_id, "name": name, "digest": f"sha256:{digest}", "role": "file"}
        for name, digest in sorted(record.outputs.items())
    ]
    for name, digest in sorted((internal.get("outputTrees") or {}).items()):
        if isinstance(name, str) and isinstance(digest, str):
            outputs.append({"run_id": run_id, "name": name, "digest": digest, "role": "tree"})
    overridden = {o.get("key") for o in view.get("paramOverrides", []) if isinstance(o, dict)}
    flat: dict[str, Any] = {}
    flatten(view.get("params", {}), "", flat)
    params = [
        {
            "run_id": run_id,
            "key": key,
            "value": json.dumps(value),
            "num": _number(value),
            "overridden": int(key.split(".", 1)[0] in overridden),
        }
        for key, value in sorted(flat.items())
    ]
    metrics = [
        {
            "run_id": run_id,
            "file": name,
            "key": key,
            "value": value,
            "file_digest": f"sha256:{digest}",
        }
        for name, digest in sorted(record.outputs.items())
        if name.endswith(".json")
        for key, value in sorted(_metrics(record.outputs_dir / name, digest).items())
    ]
    supersedes, corrections = _regeneration_rows(run_id, lineage or {})
    approvals = _approval_rows(record)
    return {
        "runs": [run],
        "inputs": inputs,
        "outputs": outputs,
        "params": params,
        "metrics": metrics,
        "supersedes": supersedes,
        "corrections": corrections,
        "approvals": approvals,
    }


def _from_run(record: RunRecord, name: Any) -> str | None:
    """The upstream run an input was taken from (``from = "run:…"``), as the record signs it."""
    notes = (record.dependency(f"input:{name}") or {}).get("annotations") or {}
    value = notes.get("fromRun")
    return value if isinstance(value, str) else None


def _verdict(record: RunRecord, lineage: Mapping[str, Any]) -> str | None:
    """A replay's verdict as its verdict file claims it, if about the run it replays
    (its signature is `rexec verify`'s to prove)."""
    if not lineage.get("replayOf"):
        return None
    try:
        doc = strict_loads(safeio.read_capped(record.path / VERDICT_FILE, cap=BUNDLE_CAP))
    except (OSError, ValueError, RecursionError, safeio.UnsafeFile):
        return None
    found = replay_verdict(doc) if isinstance(doc, dict) else None
    if not found or found.get("about") != lineage.get("originalStatementSha256"):
        return None
    return _text(found.get("verdict"))


def _approval_rows(record: RunRecord) -> list[dict[str, Any]]:
    """Every approval file beside the record, with who its bundle says signed it and what
    it says (claims: ``verify --require-approval`` proves them). One that cannot be read,
    or is about another Statement, is listed as such, never believed and never fatal."""
    rows = []
    for path in list_approvals(record.path):
        try:
            doc = strict_loads(safeio.read_capped(path, cap=BUNDLE_CAP))
        except (OSError, ValueError, RecursionError, safeio.UnsafeFile):
            doc = None
        subjects = doc.get("subject") if isinstance(doc, dict) else None
        first = subjects[0] if isinstance(subjects, list) and subjects else None
        predicate = doc.get("predicate") if isinstance(doc, dict) else None
        predicate = predicate if isinstance(predicate, dict) else {}
        if doc is None:
            result: str | None = "unreadable"
        elif dig(first, "digest", "sha256") != record.statement_sha256:
            result = "about another statement"
        else:
            result = _text(predicate.get("verificationResult"))
        kind, who = _signer_of(path.with_name(path.stem + BUNDLE_SUFFIX))
        rows.append(
            {
                "run_id": record.run_id,
                "file": path.name,
                "approver_kind": kind,
                "approver": who,
                "result": result,
                "verified_at": _text(predicate.get("timeVerified")),
                "policy": _text(dig(predicate, "policy", "uri")),
            }
        )
    return rows


def _regeneration_rows(
    run_id: str, lineage: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A regenerated run supersedes the run it derives from, and each input it replaced
    is a corrected digest (what ``log --stale`` looks for)."""
    regeneration, old = lineage.get("regeneration"), lineage.get("derivedFrom")
    if not isinstance(regeneration, Mapping) or not isinstance(old, str):
        return [], []
    supersedes = [{"run_id": run_id, "old_run": old, "regeneration": regeneration.get("id")}]
    corrections = [
        {"run_id": run_id, "old_digest": c["from"], "new_digest": str(c.get("to"))}
        for c in lineage.get("changedInputs") or []
        if isinstance(c, Mapping) and isinstance(c.get("from"), str)
    ]
    return supersedes, corrections


def _metrics(path: Path, signed: str) -> dict[str, float]:
    """Numeric leaves of a JSON output, as `rerun` shows them, only from the signed bytes:
    a file edited after signing (or unreadable) gives none."""
    try:
        data = safeio.read_capped(path, cap=METRICS_CAP)
        if hashlib.sha256(data).hexdigest() != signed:
            return {}
        doc = strict_loads(data)
    except (OSError, ValueError, RecursionError, safeio.UnsafeFile):
        return {}
    leaves: dict[str, Any] = {}
    flatten(doc, "", leaves)
    return {k: v for k, v in ((k, _number(v)) for k, v in leaves.items()) if v is not None}


# The reader of each manifest schema this rexec knows; others are indexed partially.
READERS: dict[str, Callable[..., Rows]] = {MANIFEST_SCHEMA: rows_of}
