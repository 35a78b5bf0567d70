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
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from executor import safeio
from executor.canonical import StrictJSONError, strict_loads
from executor.errors import (
    ExitCode,
    InputError,
    JobFailed,
    MismatchError,
    RexecError,
    VerificationError,
)
from executor.outputs import display_text
from executor.record.integrity import (
    ArtifactReport,
    compare_artifacts,
    compare_byproducts,
    compare_trees,
)
from executor.record.manifest import MANIFEST_SCHEMA, PROVENANCE_TYPE
from executor.record.manifest import loads as load_statement
from executor.record.reader import STATEMENT_CAP, StatementView, dig
from executor.record.writer import BUNDLE as RECORD_BUNDLE
from executor.record.writer import OUTPUTS as RECORD_OUTPUTS
from executor.record.writer import STATEMENT as RECORD_STATEMENT
from executor.signing import IN_TOTO_PAYLOAD_TYPE, TrustPolicy

# What a replay adds to its record beside the run's own signed files.
VERDICT_FILE = "verdict.json"
VERDICT_BUNDLE = "verdict.sigstore.json"
TEST_RESULT_TYPE = "https://in-toto.io/attestation/test-result/v0.1"


@dataclass(frozen=True)
class Verdict:
    """Everything ``rexec verify`` proved, and the first check that failed, if any."""

    signer: str | None = None
    transparency_log: str | None = None  # what was proved about the bundle's log entries
    statement_digest: str | None = None
    run_id: str | None = None
    status: str | None = None
    exit_code: int | None = None  # the job's exit status, from the signed Statement
    artifacts: ArtifactReport | None = None
    # The record's own files the Statement names by digest (host capture, logs, ...).
    byproducts: ArtifactReport | None = None
    # A replay's signed verdict, when the record or the bundle holds one.
    replay_verdict: Mapping[str, Any] | None = None
    # `verify --require-approval`: who approved, and why each other approver did not count.
    approvals: Mapping[str, Any] | None = None
    # What the entry point checked besides the record (a registry's layers, an audit
    # bundle's image and inputs, the chain of upstream records).
    extra: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    error: RexecError | None = field(default=None, compare=False)
    # The signed payload exactly: what replay, diff and rerun act on (never re-read).
    payload: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def verified(self) -> bool:
        """True when every check held."""
        return self.error is None

    @property
    def process_exit_code(self) -> int:
        """The process exit code this verdict means."""
        return int(self.error.exit_code) if self.error else int(ExitCode.OK)

    def to_json(self) -> dict[str, Any]:
        """The JSON verdict printed by ``verify --json``."""
        arts = self.artifacts
        return {
            "verified": self.verified,
            "signer": self.signer,
            "transparency_log": self.transparency_log,
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
            "byproducts": {
                "checked": self.byproducts.checked if self.byproducts else 0,
                "mismatched": list(self.byproducts.mismatched) if self.byproducts else [],
                "missing": list(self.byproducts.missing) if self.byproducts else [],
            },
            "replay_verdict": dict(self.replay_verdict) if self.replay_verdict else None,
            "approvals": dict(self.approvals) if self.approvals is not None else None,
            **self.extra,
            "warnings": list(self.warnings),
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
        if not os.path.lexists(bundle):  # a link or FIFO in its place is read (and refused)
            raise InputError(
                f"{target}: no {RECORD_BUNDLE} in this directory",
                hint="a record written with signing method 'none' cannot be verified; "
                "pass a run record directory (runs/<run-id>) or a bundle file",
            )
        statement = target / RECORD_STATEMENT
        return _Target(
            bundle=bundle,
            statement=statement if os.path.lexists(statement) else None,
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


def _read(path: Path, *, what: str, cap: int = STATEMENT_CAP) -> bytes:
    try:
        return safeio.read_capped(path, cap=cap)
    except safeio.UnsafeFile:
        raise
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what} ({exc.strerror})") from exc


def _schema_warnings(statement: Mapping[str, Any]) -> tuple[str, ...]:
    if statement.get("predicateType") != PROVENANCE_TYPE:
        return ()
    schema = StatementView(statement).manifest_schema
    if schema == MANIFEST_SCHEMA:
        return ()
    return (
        f"the record's manifest schema is {schema!r}; this rexec reads {MANIFEST_SCHEMA}: "
        "the signature and digests were checked, but fields it does not know were not read",
    )


def replay_verdict(statement: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a signed replay verdict says, from its test-result Statement."""
    if statement.get("predicateType") != TEST_RESULT_TYPE:
        return None
    predicate = statement.get("predicate")
    if not isinstance(predicate, dict):
        return None
    # rexec's detail: in the replay run's descriptor's annotations (strict test-result);
    # verdicts written before that kept it in a field of their own, `rexecReplay`.
    configuration = predicate.get("configuration")
    first = configuration[0] if isinstance(configuration, list) and configuration else {}
    detail = dig(first, "annotations") or predicate.get("rexecReplay")
    detail = detail if isinstance(detail, dict) else {}
    subject = statement.get("subject")
    about = subject[0] if isinstance(subject, list) and subject else {}
    return {
        "result": predicate.get("result"),
        "verdict": detail.get("verdict"),
        "about": dig(about, "digest", "sha256"),
        "failedTests": predicate.get("failedTests"),
    }


def _check_verdict(record: Path, policy: TrustPolicy, payload: bytes) -> dict[str, Any] | None:
    """A replay record's verdict must be signed under the same policy as the record, and
    be about the run it replays; a verdict file without its bundle is refused."""
    verdict_file, bundle_file = record / VERDICT_FILE, record / VERDICT_BUNDLE
    if not verdict_file.exists() and not bundle_file.exists():
        return None
    if not bundle_file.exists():
        raise VerificationError(
            f"{verdict_file}: a replay verdict without its signature ({VERDICT_BUNDLE})",
            hint="a verdict is only believed when signed; this one may have been added later",
        )
    checked = policy.verify_bundle(_read(bundle_file, what="verdict bundle"))
    if checked.payload is None or _read(verdict_file, what="verdict") != checked.payload:
        raise VerificationError(
            f"{verdict_file}: differs from the payload signed in {VERDICT_BUNDLE}",
            hint="the signed copy is the one to trust; the file was edited after signing",
        )
    doc = load_statement(checked.payload, source=str(bundle_file))
    verdict = replay_verdict(doc)
    if verdict is None:
        raise VerificationError(f"{bundle_file}: not a replay verdict (test-result) Statement")
    lineage = dig(strict_loads(payload), "predicate", "buildDefinition", "internalParameters")
    replay_of = dig(lineage, "lineage", "originalStatementSha256")
    if replay_of is not None and verdict["about"] != replay_of:
        raise VerificationError(
            f"{bundle_file}: the verdict is about statement {verdict['about']}, "
            f"but this record replays {replay_of}",
            hint="a verdict copied from another replay does not vouch for this one",
        )
    return verdict


def verify_record(target: Path, policy: TrustPolicy, *, artifacts: Path | None = None) -> Verdict:
    """Verify a run record directory (or a Statement bundle plus ``artifacts``)."""
    verdict = Verdict()
    try:
        where = _resolve_target(target, artifacts)
        bundle = _read(where.bundle, what="bundle")
        verified = policy.verify_bundle(bundle)
        verdict = Verdict(signer=verified.signer, transparency_log=verified.tlog)
        if verified.payload is None or verified.payload_type != IN_TOTO_PAYLOAD_TYPE:
            raise InputError(
                f"{where.bundle}: not a DSSE bundle over an in-toto Statement "
                f"(payloadType {verified.payload_type!r})",
                hint="to verify a signature over a single file use --bundle B --artifact FILE",
            )
        payload = verified.payload
        statement = load_statement(payload, source=str(where.bundle))
        status, code = StatementView(statement).status
        verdict = Verdict(
            signer=verified.signer,
            transparency_log=verified.tlog,
            statement_digest=hashlib.sha256(payload).hexdigest(),
            run_id=StatementView(statement).run_id,
            status=status,
            exit_code=code,
            warnings=_schema_warnings(statement),
            payload=payload,
        )
        if where.statement is not None and _read(where.statement, what="statement") != payload:
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
        trees = compare_trees(statement, where.artifacts)
        if trees:
            raise MismatchError(
                f"the directory structure of {where.artifacts} differs from the signed trees",
                details=trees,
                hint="a directory was added, removed or renamed after the run was signed; "
                "a later run that pins these trees would not find them",
            )
        if where.statement is not None:
            record = where.statement.parent
            products = compare_byproducts(statement, record)
            verdict = replace(verdict, byproducts=products)
            if not products.ok:
                problems = len(products.mismatched) + len(products.missing)
                raise MismatchError(
                    f"{problems} file(s) of the record {record} differ from the signed statement",
                    details=products.details,
                    hint="the host capture, logs, params, listings or reports were edited "
                    "after signing; replay and diff would act on forged copies",
                )
            verdict = replace(verdict, replay_verdict=_check_verdict(record, policy, payload))
    except RexecError as exc:
        return replace(verdict, error=exc)
    return verdict


def status_gate(verdict: Verdict, *, allow_unsuccessful: bool) -> Verdict:
    """The deployment default: an authentic record of a run that did not succeed (failed,
    timed out, interrupted, pre-empted) is refused, exit 5, unless asked to accept it."""
    if verdict.error is not None or verdict.status in (None, "succeeded") or allow_unsuccessful:
        return verdict
    code = f" (exit {verdict.exit_code})" if verdict.exit_code is not None else ""
    return replace(
        verdict,
        error=JobFailed(
            f"the record is authentic, but the run it records did not succeed: "
            f"{display_text(verdict.status)}{code}",
            hint="do not deploy its outputs as a success; --allow-failed accepts such a record "
            "(an audit of a failed run, say)",
        ),
    )


def verify_artifact(bundle: Path, artifact: Path, policy: TrustPolicy) -> Verdict:
    """The general form: one bundle (DSSE or message signature) over one file."""
    try:
        if not artifact.is_file():
            raise InputError(f"{artifact}: no such file", hint="--artifact names the signed file")
        verified = policy.verify_bundle(_read(bundle, what="bundle"), artifact=artifact)
    except RexecError as exc:
        return Verdict(error=exc)
    verdict = Verdict(
        signer=verified.signer,
        transparency_log=verified.tlog,
        artifacts=ArtifactReport(checked=1, verified=1),
    )
    if verified.payload is not None:
        try:
            statement = strict_loads(verified.payload)
        except StrictJSONError as exc:
            return replace(
                verdict,
                error=InputError(f"{bundle}: the signed payload is not strict JSON ({exc})"),
            )
        if isinstance(statement, dict):
            status, code = StatementView(statement).status
            verdict = replace(
                verdict,
                statement_digest=hashlib.sha256(verified.payload).hexdigest(),
                run_id=StatementView(statement).run_id,
                status=status,
                exit_code=code,
                replay_verdict=replay_verdict(statement),
                warnings=_schema_warnings(statement),
            )
    return verdict
