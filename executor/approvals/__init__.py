"""Approvals: a signed SLSA Verification Summary that someone checked a run and approves it.

``rexec approve`` verifies the record (and, if named, a signed replay verdict that
says it reproduced) and signs a VSA (https://slsa.dev/verification_summary/v1)
whose subject is the run Statement's sha256. It is stored beside the record in
``approvals/`` and never touches the run's own signed files. ``rexec verify
--require-approval`` counts the approvals that verify under each named approver,
are about this very Statement and say PASSED; the run's own signer does not count
unless allowed. Nothing in an approval file is believed before its signature is.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from executor import safeio
from executor.canonical import canonical_json
from executor.errors import MismatchError, RexecError, VerificationError
from executor.record import RunRecord, load_statement, statement_about
from executor.signing import Signer, TrustPolicy

__all__ = [
    "APPROVALS_DIR",
    "APPROVAL_CAP",
    "BUNDLE_SUFFIX",
    "VSA_TYPE",
    "ApprovalCheck",
    "approval_files",
    "check_approvals",
    "list_approvals",
    "verify_approval",
    "vsa_statement",
    "write_approval",
]

APPROVALS_DIR = "approvals"
VSA_TYPE = "https://slsa.dev/verification_summary/v1"
VERIFIER_ID = "https://rexec.dev/approve/v1"
DEFAULT_POLICY = "https://rexec.dev/policy/verified-record/v1"
BUNDLE_SUFFIX = ".sigstore.json"
APPROVAL_CAP = 1 << 20
REPRODUCED = ("reproduced-bitwise", "reproduced-within-tolerance")


def vsa_statement(
    record: RunRecord,
    *,
    policy_uri: str,
    policy_digest: str | None,
    replay: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The VSA for ``record``: PASSED, under the named policy, with what was checked."""
    inputs = [
        {"uri": f"{record.run_id}/statement.json", "digest": {"sha256": record.statement_sha256}}
    ]
    if replay is not None:
        inputs.append({"uri": replay["uri"], "digest": {"sha256": replay["sha256"]}})
    policy: dict[str, Any] = {"uri": policy_uri}
    if policy_digest:
        policy["digest"] = {"sha256": policy_digest}
    return statement_about(
        record.run_id,
        record.statement_sha256,
        predicate_type=VSA_TYPE,
        predicate={
            # Only what both the SLSA VSA v1 text and the in-toto-attestation protobuf
            # bindings accept (a strict parse rejects unknown fields): the bindings have no
            # verifier.version and model verifiedLevels as one string where the spec says
            # an array, so neither is written. rexec claims no SLSA level here: an approval
            # says that a named policy held, not what level the build reached.
            "verifier": {"id": VERIFIER_ID},
            "timeVerified": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "resourceUri": f"rexec-run:{record.run_id}",
            "policy": policy,
            "inputAttestations": inputs,
            "verificationResult": "PASSED",
            "slsaVersion": "1.0",
        },
    )


def write_approval(record: RunRecord, statement: Mapping[str, Any], signer: Signer) -> Path:
    """Sign and store the approval under ``RUN/approvals/``; returns the payload's path."""
    payload = canonical_json(statement)
    folder = record.path / APPROVALS_DIR
    folder.mkdir(exist_ok=True)
    stem = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"
    bundle = signer.sign_dsse(payload)  # first: a failed signature leaves nothing behind
    safeio.write_atomic(folder / f"{stem}{BUNDLE_SUFFIX}", bundle)
    safeio.write_atomic(folder / f"{stem}.json", payload)
    return folder / f"{stem}.json"


def list_approvals(record_dir: Path) -> list[Path]:
    """The approval payload files beside a record (regular files only, no links)."""
    return approval_files(record_dir / APPROVALS_DIR)


def approval_files(folder: Path) -> list[Path]:
    """The approval payload files in ``folder`` (regular files only, no links)."""
    if not folder.is_dir() or folder.is_symlink():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.name.endswith(".json") and not p.name.endswith(BUNDLE_SUFFIX) and not p.is_symlink()
    )


@dataclass
class ApprovalCheck:
    """What ``--require-approval`` found: who approved, and why each other file did not count."""

    approvers: list[str] = field(default_factory=list)  # the named approvers satisfied
    rejected: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The JSON form in ``rexec verify --json``."""
        return {"approvedBy": self.approvers, "notCounted": self.rejected}


def verify_approval(path: Path, policy: TrustPolicy, statement_sha256: str) -> str:
    """The verified approver of one approval file under ``policy``, or raise why not."""
    bundle = path.with_name(path.name.removesuffix(".json") + BUNDLE_SUFFIX)
    try:
        data = safeio.read_capped(path, cap=APPROVAL_CAP)
        signed = policy.verify_bundle(safeio.read_capped(bundle, cap=APPROVAL_CAP))
    except (OSError, safeio.UnsafeFile) as exc:
        raise VerificationError(f"{path.name}: cannot read it or its bundle ({exc})") from exc
    if signed.payload is None or signed.payload != data:
        raise VerificationError(f"{path.name}: differs from the payload its bundle signs")
    doc = load_statement(data, source=path.name, error=VerificationError)
    if doc.get("predicateType") != VSA_TYPE:
        raise VerificationError(f"{path.name}: not a verification summary (VSA)")
    digests = [
        (s.get("digest") or {}).get("sha256")
        for s in doc.get("subject") or []
        if isinstance(s, dict)
    ]
    if digests != [statement_sha256]:
        raise MismatchError(
            f"{path.name}: approves statement {', '.join(map(str, digests))}, "
            f"not this record's {statement_sha256}"
        )
    if (doc.get("predicate") or {}).get("verificationResult") != "PASSED":
        raise VerificationError(f"{path.name}: its result is not PASSED")
    return signed.signer


def check_approvals(
    files: Sequence[Path],
    statement_sha256: str,
    approvers: Sequence[tuple[str, TrustPolicy]],
    *,
    run_signer: str | None,
    allow_self: bool,
) -> ApprovalCheck:
    """Which of the named ``approvers`` (label, policy) signed a valid approval of this run.

    Approvers count by who verifiably signed (a key by its fingerprint, an identity with
    its issuer), never by how often they are named: one signer is one approval, matched
    to at most one named approver (the most approvers that distinct signers can satisfy).
    """
    signers: dict[str, list[str]] = {}  # label -> verified signers of approvals it accepts
    reasons: dict[str, list[str]] = {}
    for label, policy in approvers:
        accepted, why = signers.setdefault(label, []), reasons.setdefault(label, [])
        for path in files:
            try:
                signer = verify_approval(path, policy, statement_sha256)
            except RexecError as exc:
                why.append(exc.message)
                continue
            if signer == run_signer and not allow_self:
                why.append(f"{path.name}: signed by the run's own signer ({signer})")
            elif signer not in accepted:
                accepted.append(signer)
    matched = _match(signers)
    found = ApprovalCheck()
    for label, _ in approvers:
        if label in found.approvers or any(r.startswith(f"{label}: ") for r in found.rejected):
            found.rejected.append(f"{label}: named more than once (one approver counts once)")
            continue
        if label in matched:
            found.approvers.append(label)
            continue
        why = reasons[label] + [
            f"signed by {s}, which already counts for {other} (one signer is one approval)"
            for s in signers[label]
            for other in [k for k, v in matched.items() if v == s and k != label]
        ]
        found.rejected.append(f"{label}: {'; '.join(why) if why else 'no approval files'}")
    return found


def _match(signers: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """A maximum matching of approver labels to distinct signers (augmenting paths)."""
    owner: dict[str, str] = {}  # signer -> label

    def place(label: str, seen: set[str]) -> bool:
        for signer in signers[label]:
            if signer in seen:
                continue
            seen.add(signer)
            if signer not in owner or place(owner[signer], seen):
                owner[signer] = label
                return True
        return False

    for label in signers:
        place(label, set())
    return {label: signer for signer, label in owner.items()}
