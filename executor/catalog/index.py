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

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from executor import safeio
from executor.approvals import BUNDLE_SUFFIX, list_approvals, verify_approval
from executor.canonical import sha256_hex, strict_loads
from executor.compare import flatten, series_of
from executor.errors import InputError, RexecError
from executor.record import (
    MANIFEST_SCHEMA,
    STATEMENT_CAP,
    VERDICT_FILE,
    RunRecord,
    StatementView,
    Verdict,
    dig,
    load_record,
    load_statement,
    replay_verdict,
    verify_record,
    writer,
)
from executor.signing import TrustPolicy, parse_bundle
from executor.spec import seed_key_of, stage_key

__all__ = [
    "READERS",
    "Rows",
    "dependency_digest",
    "read_statement",
    "rows_at",
    "rows_of",
    "verification_text",
]

BUNDLE_CAP = 16 << 20
Rows = dict[str, list[dict[str, Any]]]
# An approval file and the Statement it must be about -> "verified by …" or "failed: …".
ApprovalVerifier = Callable[[Path, str], str]


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
        return safeio.read_capped(path / writer.STATEMENT, cap=STATEMENT_CAP)
    except FileNotFoundError:
        raise InputError(f"{path}: not a run record (no {writer.STATEMENT})") from None
    except (OSError, safeio.UnsafeFile) as exc:
        raise InputError(f"{path / writer.STATEMENT}: cannot read ({exc})") from exc


def verification_text(verdict: Verdict) -> str:
    """What the catalog keeps of a verification: who signed, or why it failed."""
    if verdict.error is not None:
        return f"failed: {verdict.error.message}"
    return f"verified by {verdict.signer}"


def absolute(path: Path) -> Path:
    """A record's path as the catalog keeps it: absolute, so that it means the same from
    any directory (lexically: a link in it is kept as named, never followed here)."""
    return path if path.is_absolute() else Path(os.path.abspath(path))


def rows_at(path: Path, *, verification: str | None = None) -> Rows:
    """The rows of the record at ``path``, by the reader for its manifest schema, as its
    files claim (``verification``: what the caller proved of it)."""
    return _rows(path, read_statement(path), verification, None)


def rows_held(record: RunRecord, *, verification: str | None = None) -> Rows:
    """The rows of a record its writer still holds (the runner, which just wrote it), by
    the reader for its manifest schema: from those values, nothing read back."""
    reader = READERS[StatementView(record.statement).manifest_schema or ""]
    return reader(
        dataclasses.replace(record, path=absolute(record.path)), verification=verification
    )


def verified_rows_at(path: Path, policy: TrustPolicy) -> Rows:
    """The rows of the record at ``path``, the record and its approvals verified under
    ``policy`` and the results kept (a record that fails is still indexed, as failed: the
    catalog lists what is there)."""
    payload = read_statement(path)
    verdict = verify_record(path, policy)

    def approvals(file: Path, statement: str) -> str:
        try:
            return f"verified by {verify_approval(file, policy, statement)}"
        except RexecError as exc:
            return f"failed: {exc.message}"

    payload = verdict.payload if verdict.payload is not None else payload
    return _rows(path, payload, verification_text(verdict), approvals)


def _rows(
    path: Path, payload: bytes, verification: str | None, approvals: ApprovalVerifier | None
) -> Rows:
    path = absolute(path)
    view = StatementView(load_statement(payload, source=str(path / writer.STATEMENT)))
    reader = READERS.get(view.manifest_schema or "")
    if reader is None:
        return _partial_rows(path, view, sha256_hex(payload), verification)
    return reader(
        load_record(path, payload=payload),
        verification=verification,
        approvals_verified=approvals,
    )


def _signer(path: Path) -> tuple[str | None, str | None]:
    """Who the record's bundle says signed (a claim: ``--verify`` proves it)."""
    return _signer_of(path / writer.BUNDLE)


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
        raise InputError(f"{path / writer.STATEMENT}: no run id (runDetails.metadata.invocationId)")
    status, exit_code = view.status
    meta = dig(view.doc, "predicate", "runDetails", "metadata") or {}
    kind, signer = _signer(path)
    run = {
        "statement_sha256": sha,
        "run_id": run_id,
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
            "statement_sha256": sha,
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


def rows_of(
    record: RunRecord,
    *,
    verification: str | None,
    approvals_verified: ApprovalVerifier | None = None,
) -> Rows:
    """The catalog rows of a ``rexec.manifest/v1`` record (read through the reader's
    signed-file checks)."""
    run_id, sha = record.run_id, record.statement_sha256
    view, internal = record.spec, record.internal
    meta = record.metadata
    lineage = dict(record.lineage) or None
    code = record.dependency("code") or {}
    image = dependency_digest(record.dependency("image"))
    run = {
        "statement_sha256": sha,
        "run_id": run_id,
        "name": view.get("name"),
        "kind": _kind(lineage),
        "status": record.status,
        "exit_code": record.exit_code,
        "started": meta.get("startedOn"),
        "finished": meta.get("finishedOn"),
        "seed": view.get("seed") if isinstance(view.get("seed"), int) else None,
        "image": image,
        "code_commit": (code.get("digest") or {}).get("gitCommit"),
        "code_tree": dependency_digest(code),
        "invoker": json.dumps(internal.get("invoker"), sort_keys=True),
        "engine": ((record.host or {}).get("engine") or {}).get("name"),
        "signed": int((record.path / "statement.sigstore.json").is_file()),
        "verification": verification,
        "replay_of": (lineage or {}).get("replayOf"),
        "derived_from": (lineage or {}).get("derivedFrom"),
        "original_statement": _text((lineage or {}).get("originalStatementSha256")),
        "path": str(record.path),
        "partial": None,
        "purpose": view.get("purpose") if isinstance(view.get("purpose"), str) else None,
        "verdict": _verdict(record, lineage or {}),
        **dict(zip(("signer_kind", "signer"), _signer(record.path), strict=True)),
        "stage_key": stage_key(view, image=image, code=dependency_digest(code)),
        "seed_key": seed_key_of(view, image=image, code=dependency_digest(code)),
    }
    key = {"statement_sha256": sha, "run_id": run_id}
    inputs = [
        {
            **key,
            "name": str(item.get("name")),
            "digest": str(item.get("digest")),
            "role": "input",
            **_upstream(record, item.get("name")),
        }
        for item in view.get("inputs", [])
        if isinstance(item, dict) and isinstance(item.get("digest"), str)
    ]
    for role, dep in (("image", record.dependency("image")), ("code", code)):
        digest = dependency_digest(dep)
        if digest is not None:
            inputs.append(
                {**key, "name": role, "digest": digest, "role": role, **_upstream(record, None)}
            )
    outputs = [
        {**key, "name": name, "digest": f"sha256:{digest}", "role": "file"}
        for name, digest in sorted(record.outputs.items())
    ]
    for name, digest in sorted(record.output_trees.items()):
        outputs.append({**key, "name": name, "digest": digest, "role": "tree"})
    overridden = {o.get("key") for o in view.get("paramOverrides", []) if isinstance(o, dict)}
    flat: dict[str, Any] = {}
    flatten(view.get("params", {}), "", flat)
    params = [
        {
            **key,
            "key": name,
            "value": json.dumps(value),
            "num": _number(value),
            "overridden": int(name.split(".", 1)[0] in overridden),
        }
        for name, value in sorted(flat.items())
    ]
    metrics = [
        {
            **key,
            "file": series.source,
            "key": series.name,
            "value": series.value,
            "file_digest": _source_digest(record, series.source),
        }
        for series in series_of(record)
    ]
    supersedes, corrections = _regeneration_rows(key, lineage or {})
    approvals = _approval_rows(record, approvals_verified)
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


def _upstream(record: RunRecord, name: Any) -> dict[str, str | None]:
    """The upstream run (and its Statement) an input was taken from (``from = "run:…"``),
    as the record signs it; none for the image and code."""
    notes = {} if name is None else (record.dependency(f"input:{name}") or {}).get("annotations")
    notes = notes if isinstance(notes, Mapping) else {}
    return {
        "from_run": _text(notes.get("fromRun")),
        "from_statement": _text(notes.get("fromStatementSha256")),
    }


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


def _approval_rows(record: RunRecord, verified: ApprovalVerifier | None) -> list[dict[str, Any]]:
    """Every approval file beside the record, with who its bundle says signed it and what
    it says (claims, unless ``verified`` checked the file: ``verify --require-approval``
    proves them). One that cannot be read, or is about another Statement, is listed as
    such, never believed and never fatal."""
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
                "statement_sha256": record.statement_sha256,
                "run_id": record.run_id,
                "file": path.name,
                "approver_kind": kind,
                "approver": who,
                "result": result,
                "verified_at": _text(predicate.get("timeVerified")),
                "policy": _text(dig(predicate, "policy", "uri")),
                "verification": verified(path, record.statement_sha256) if verified else None,
            }
        )
    return rows


def _regeneration_rows(
    key: Mapping[str, str], lineage: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A regenerated run supersedes the record it derives from (named by its Statement's
    sha256), and each input it replaced is a corrected digest (what ``log --stale`` looks
    for). Claims of the record: they count once the record verifies."""
    regeneration, old = lineage.get("regeneration"), lineage.get("derivedFrom")
    old_statement = lineage.get("originalStatementSha256")
    if not isinstance(regeneration, Mapping) or not isinstance(old, str):
        return [], []
    if not isinstance(old_statement, str):
        return [], []
    supersedes = [
        {
            **key,
            "old_statement": old_statement,
            "old_run": old,
            "regeneration": _text(regeneration.get("id")),
        }
    ]
    corrections = [
        {**key, "old_digest": c["from"], "new_digest": str(c.get("to"))}
        for c in lineage.get("changedInputs") or []
        if isinstance(c, Mapping) and isinstance(c.get("from"), str)
    ]
    return supersedes, corrections


def _source_digest(record: RunRecord, source: str) -> str | None:
    """The signed digest of what a metric was read from: an output, the log, a directory."""
    if source in record.outputs:
        return f"sha256:{record.outputs[source]}"
    if source == "stdout":
        digest = StatementView(record.statement).file_digests().get(writer.STDOUT_LOG)
        return f"sha256:{digest}" if digest else None
    return record.output_trees.get(f"{writer.OUTPUTS}/{source.rstrip('/')}/")


# The reader of each manifest schema this rexec knows; others are indexed partially.
READERS: dict[str, Callable[..., Rows]] = {MANIFEST_SCHEMA: rows_of}
