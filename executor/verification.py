"""Verify a run record: signature and trust policy, then the artifacts it names.

Order matters and is fixed: nothing inside the Statement is believed until
the bundle's signature holds under the caller's policy; then the record's
``statement.json`` must be the signed bytes exactly; only then are the
artifacts re-hashed and compared with the signed subjects. Every problem with
the artifacts is collected and reported at once, one line per file, so a
deployment gate shows the whole damage rather than the first file.

The result is a :class:`Verdict` (never an exception), because ``--json``
must report what was proved before a check failed (the signer, the run id).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from executor import manifest
from executor.canonical import sha256_file
from executor.errors import ExitCode, InputError, MismatchError, RexecError, VerificationError
from executor.manifest import STATEMENT_TYPE
from executor.signing.types import IN_TOTO_PAYLOAD_TYPE, TrustPolicy
from executor.store import BUNDLE as RECORD_BUNDLE
from executor.store import OUTPUTS as RECORD_OUTPUTS
from executor.store import STATEMENT as RECORD_STATEMENT


@dataclass(frozen=True)
class ArtifactReport:
    """Result of comparing a directory with the signed subjects."""

    checked: int
    verified: int
    mismatched: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    details: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not (self.mismatched or self.missing or self.extra)


@dataclass(frozen=True)
class Verdict:
    """Everything ``rexec verify`` proved, and the first check that failed, if any."""

    signer: str | None = None
    statement_digest: str | None = None
    run_id: str | None = None
    status: str | None = None
    exit_code: int | None = None  # the job's exit status, from the signed Statement
    artifacts: ArtifactReport | None = None
    error: RexecError | None = field(default=None, compare=False)

    @property
    def verified(self) -> bool:
        return self.error is None

    @property
    def process_exit_code(self) -> int:
        return int(self.error.exit_code) if self.error else int(ExitCode.OK)

    def to_json(self) -> dict[str, Any]:
        arts = self.artifacts
        return {
            "verified": self.verified,
            "signer": self.signer,
            "statement_digest": self.statement_digest,
            "run_id": self.run_id,
            "status": self.status,
            "exit_code": self.exit_code,
            "artifacts": {
                "checked": arts.checked if arts else 0,
                "mismatched": list(arts.mismatched) if arts else [],
                "missing": list(arts.missing) if arts else [],
                "extra": list(arts.extra) if arts else [],
            },
            "error": None
            if self.error is None
            else {
                "code": int(self.error.exit_code),
                "type": type(self.error).__name__,
                "message": self.error.message,
                "details": list(self.error.details),
                "hint": self.error.hint,
            },
        }


@dataclass(frozen=True)
class _Target:
    bundle: Path
    statement: Path | None  # the record's statement.json, when there is a record
    artifacts: Path


def _resolve_target(target: Path, artifacts: Path | None) -> _Target:
    if target.is_dir():
        bundle = target / RECORD_BUNDLE
        if not bundle.is_file():
            raise InputError(
                f"{target}: no {RECORD_BUNDLE} in this directory",
                hint="a record written with signing method 'none' cannot be verified; "
                "pass a run record directory (runs/<run-id>) or a bundle file",
            )
        statement = target / RECORD_STATEMENT
        return _Target(
            bundle=bundle,
            statement=statement if statement.exists() else None,
            artifacts=artifacts or target / RECORD_OUTPUTS,
        )
    if target.is_file():
        parent = target.parent
        in_record = (parent / RECORD_STATEMENT).exists() or (parent / RECORD_OUTPUTS).is_dir()
        if artifacts is None and not in_record:
            raise InputError(
                f"{target}: a bundle outside a run record needs the artifacts it signs",
                hint="pass --artifacts DIR (the directory the subjects' names are relative to)",
            )
        sibling = parent / RECORD_STATEMENT
        return _Target(
            bundle=target,
            statement=sibling if in_record and sibling.exists() else None,
            artifacts=artifacts or parent / RECORD_OUTPUTS,
        )
    raise InputError(
        f"{target}: no such run record or bundle",
        hint="pass runs/<run-id> or a .sigstore.json bundle",
    )


def _statement(payload: bytes, *, source: str) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{source}: the signed payload is not JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("_type") != STATEMENT_TYPE:
        raise InputError(
            f"{source}: the signed payload is not an in-toto Statement v1",
            hint=f"expected _type {STATEMENT_TYPE!r}",
        )
    if not isinstance(doc.get("subject"), list):
        raise InputError(f"{source}: the signed Statement has no subject list")
    return doc


def _dig(doc: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def run_status(statement: dict[str, Any]) -> tuple[str | None, int | None]:
    """The job's status and exit code as the signed Statement records them."""
    notes = manifest.run_status(statement) or {}
    status, code = notes.get("status"), notes.get("exitCode")
    return (
        status if isinstance(status, str) else None,
        code if isinstance(code, int) and not isinstance(code, bool) else None,
    )


def _list_files(root: Path) -> dict[str, Path]:
    """Every non-directory entry under ``root``, by POSIX path relative to it."""
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        # a symlink to a directory is an entry, not something to descend into
        for name in [d for d in dirnames if (base / d).is_symlink()]:
            dirnames.remove(name)
            filenames.append(name)
        for name in filenames:
            path = base / name
            found[path.relative_to(root).as_posix()] = path
    return found


def _safe_name(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return bool(parts) and not name.startswith("/") and ".." not in parts and "\\" not in name


def compare_artifacts(
    subjects: list[Any], root: Path, *, hash_file: Callable[[Path], str] = sha256_file
) -> ArtifactReport:
    """Re-hash ``root`` and compare it with the Statement's subjects, collecting every
    mismatched, missing and extra file."""
    if not root.is_dir():
        raise InputError(
            f"{root}: the artifacts directory does not exist",
            hint="pass --artifacts DIR, or a complete run record with outputs/",
        )
    files = _list_files(root)
    mismatched: list[str] = []
    missing: list[str] = []
    details: list[str] = []
    verified = 0
    named: set[str] = set()
    for item in subjects:
        name = item.get("name") if isinstance(item, dict) else None
        expected = _dig(item, "digest", "sha256")
        if not isinstance(name, str) or not _safe_name(name):
            mismatched.append(str(name))
            details.append(f"mismatched: {name!r}: not a safe relative path")
            continue
        named.add(name)
        path = files.get(name)
        if path is None:
            missing.append(name)
            details.append(f"missing: {name} (signed, not in {root})")
        elif not isinstance(expected, str):
            mismatched.append(name)
            details.append(f"mismatched: {name}: the subject has no sha256 digest")
        elif path.is_symlink() or not path.is_file():
            mismatched.append(name)
            details.append(f"mismatched: {name}: not a regular file")
        else:
            found = hash_file(path)
            if found == expected.lower():
                verified += 1
            else:
                mismatched.append(name)
                details.append(f"mismatched: {name}: sha256 {found}, signed {expected}")
    extra = sorted(set(files) - named)
    details += [f"extra: {name} (in {root}, not a signed subject)" for name in extra]
    return ArtifactReport(
        checked=len(subjects),
        verified=verified,
        mismatched=tuple(mismatched),
        missing=tuple(missing),
        extra=tuple(extra),
        details=tuple(details),
    )


def verify_record(target: Path, policy: TrustPolicy, *, artifacts: Path | None = None) -> Verdict:
    """Verify a run record directory (or a Statement bundle plus ``artifacts``)."""
    verdict = Verdict()
    try:
        where = _resolve_target(target, artifacts)
        try:
            bundle = where.bundle.read_bytes()
        except OSError as exc:
            raise InputError(f"{where.bundle}: cannot read ({exc.strerror})") from exc
        verified = policy.verify_bundle(bundle)
        verdict = Verdict(signer=verified.signer)
        if verified.payload is None or verified.payload_type != IN_TOTO_PAYLOAD_TYPE:
            raise InputError(
                f"{where.bundle}: not a DSSE bundle over an in-toto Statement "
                f"(payloadType {verified.payload_type!r})",
                hint="to verify a signature over a single file use --bundle B --artifact FILE",
            )
        payload = verified.payload
        statement = _statement(payload, source=str(where.bundle))
        status, code = run_status(statement)
        verdict = Verdict(
            signer=verified.signer,
            statement_digest=hashlib.sha256(payload).hexdigest(),
            run_id=_run_id(statement),
            status=status,
            exit_code=code,
        )
        if where.statement is not None and where.statement.read_bytes() != payload:
            raise VerificationError(
                f"{where.statement}: statement.json was altered after signing",
                hint="it differs from the payload signed in "
                f"{where.bundle.name}; the signed copy is the one to trust",
            )
        report = compare_artifacts(statement["subject"], where.artifacts)
        verdict = replace(verdict, artifacts=report)
        if not report.ok:
            problems = len(report.mismatched) + len(report.missing) + len(report.extra)
            raise MismatchError(
                f"{problems} artifact(s) in {where.artifacts} differ from the signed statement",
                details=report.details,
                hint="the outputs changed after the run was signed; do not deploy them",
            )
    except RexecError as exc:
        return replace(verdict, error=exc)
    return verdict


def verify_artifact(bundle: Path, artifact: Path, policy: TrustPolicy) -> Verdict:
    """The general form: one bundle (DSSE or message signature) over one file."""
    try:
        if not artifact.is_file():
            raise InputError(f"{artifact}: no such file", hint="--artifact names the signed file")
        try:
            data = bundle.read_bytes()
        except OSError as exc:
            raise InputError(
                f"{bundle}: cannot read the bundle ({exc.strerror})",
                hint="--bundle names a .sigstore.json file",
            ) from exc
        verified = policy.verify_bundle(data, artifact=artifact)
    except RexecError as exc:
        return Verdict(error=exc)
    verdict = Verdict(
        signer=verified.signer,
        artifacts=ArtifactReport(checked=1, verified=1),
    )
    if verified.payload is not None:
        try:
            statement = json.loads(verified.payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            statement = None
        if isinstance(statement, dict):
            status, code = run_status(statement)
            verdict = replace(
                verdict,
                statement_digest=hashlib.sha256(verified.payload).hexdigest(),
                run_id=_run_id(statement),
                status=status,
                exit_code=code,
            )
    return verdict


def _run_id(statement: dict[str, Any]) -> str | None:
    value = _dig(statement, "predicate", "runDetails", "metadata", "invocationId")
    return value if isinstance(value, str) else None
