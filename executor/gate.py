"""The deployment gate: what must hold, beyond a verified record, before a model ships.

One gate for every path a model travels (a record directory, an audit bundle, a
registry artifact, a bundle with its artifact): each entry point first proves the
record its own way (:mod:`executor.record.verification`, :mod:`executor.export`,
:mod:`executor.registry`), then the same checks run, in this order, on what it proved:

1. approvals: enough of the named approvers signed an approval of this very
   Statement, each signer counted once (:mod:`executor.approvals`);
2. status: a run that did not succeed is refused unless accepted explicitly;
3. chain: every upstream record the run read from, back to raw data, verifies and
   links by digest (:mod:`executor.chain`).

The result stays a :class:`~executor.record.verification.Verdict`: the first failure is its
error, and everything proved before it is kept for ``--json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from executor.approvals import check_approvals
from executor.chain import Locate, walk_chain
from executor.errors import InputError, RexecError, VerificationError
from executor.record import Verdict, load_record, status_gate
from executor.signing import TrustPolicy

__all__ = ["ChainCheck", "Gate", "apply_gate"]


@dataclass(frozen=True)
class ChainCheck:
    """``--chain``: whom upstream records must be signed by, and where they may be."""

    policy: TrustPolicy
    runs_dirs: Sequence[Path] = ()
    locate: Locate = field(default=lambda run_id, statement: ())


@dataclass(frozen=True)
class Gate:
    """What the caller requires of a verified record."""

    approvers: Sequence[tuple[str, TrustPolicy]] = ()  # (label, policy) of each named approver
    approvals_needed: int | None = None  # default: every approver named
    allow_self_approval: bool = False
    allow_unsuccessful: bool = False
    chain: ChainCheck | None = None


def apply_gate(
    verdict: Verdict, gate: Gate, *, approvals: Sequence[Path] | None, record: Path | None
) -> Verdict:
    """``verdict`` with the gate applied; ``approvals`` are the approval files that came
    with the record (None where the form carries none), ``record`` its directory."""
    verdict = _approvals(verdict, gate, approvals)
    verdict = status_gate(verdict, allow_unsuccessful=gate.allow_unsuccessful)
    return _chain(verdict, gate.chain, record)


def _approvals(verdict: Verdict, gate: Gate, files: Sequence[Path] | None) -> Verdict:
    if not gate.approvers or verdict.error is not None:
        return verdict
    if files is None:
        raise InputError(
            "--require-approval: this form carries no approvals",
            hint="name the folder that holds them with --approvals-dir DIR",
        )
    need = gate.approvals_needed if gate.approvals_needed is not None else len(gate.approvers)
    if not 1 <= need <= len(gate.approvers):
        raise InputError(
            f"--approvals {need}: between 1 and the {len(gate.approvers)} approver(s) named"
        )
    found = check_approvals(
        files,
        verdict.statement_digest or "",
        gate.approvers,
        run_signer=verdict.signer,
        allow_self=gate.allow_self_approval,
    )
    doc = {**found.to_json(), "required": need}
    if len(found.approvers) >= need:
        return replace(verdict, approvals=doc)
    error = VerificationError(
        f"{len(found.approvers)} of the {need} required approval(s)",
        details=found.rejected,
        hint="`rexec approve RUN --signing-key KEY` records an approval; "
        "`rexec show RUN` lists the approvals the record has",
    )
    return replace(verdict, approvals=doc, error=error)


def _chain(verdict: Verdict, check: ChainCheck | None, record: Path | None) -> Verdict:
    if check is None or verdict.error is not None:
        return verdict
    if record is None:
        raise InputError(
            "--chain walks a record's upstream records: give a record directory or run.tar",
            hint="rexec verify runs/<run-id> --key PUB --chain",
        )
    start = load_record(record, payload=verdict.payload)
    try:
        links = walk_chain(
            start,
            verdict.signer or "",
            check.policy,
            runs_dirs=check.runs_dirs,
            locate=check.locate,
        )
    except RexecError as exc:
        return replace(verdict, error=exc)
    return replace(verdict, extra={**verdict.extra, "chain": [link.to_json() for link in links]})
