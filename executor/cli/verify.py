"""``rexec verify``: prove a run record (or any bundle) is intact and signed by whom you trust.

Meant as a deployment gate: the exit code alone says what failed (2 bad input,
3 signature or policy, 4 artifacts differ), and ``--json`` gives a pipeline one
document with every detail. Trust is always named on the command line; a key
shipped inside the record is never trusted, since a record cannot vouch for itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from executor.cli._options import add_trust_options, trust_policy
from executor.errors import InputError, RexecError, VerificationError
from executor.outputs import display_text
from executor.signing import TrustPolicy
from executor.signing.key_policy import KeyPolicy
from executor.verification import Verdict, verify_artifact, verify_record


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec verify`` to the parser."""
    p = sub.add_parser(
        "verify",
        help="verify a run record's signature, signer and artifacts",
        description=(
            "Check, in order: the bundle parses; its signature holds and the signer "
            "satisfies exactly one trust policy (--key, or --identity/--identity-regexp "
            "with --issuer); the record's statement.json is the signed payload byte for "
            "byte; every artifact matches its signed sha256, with none missing or extra. "
            "A record of a failed run verifies (its signature is fine) and shows its status."
        ),
        epilog=(
            "examples:\n"
            "  rexec verify runs/<run-id> --key signing.pub\n"
            "  rexec verify runs/<run-id> --identity ci@example.com "
            "--issuer https://accounts.google.com\n"
            "  rexec verify --bundle model.sigstore.json --artifact model.bin --key signing.pub\n"
            "  rexec verify registry.example/models/mnist@sha256:… --key signing.pub --output m/\n"
            "exit codes: 0 verified, 2 bad input, 3 signature or policy, 4 artifacts differ"
        ),
    )
    p.add_argument("target", nargs="?", metavar="RUN_DIR|BUNDLE", help="run record or bundle")
    p.add_argument("--artifacts", type=Path, metavar="DIR", help="verify these files, not outputs/")
    p.add_argument("--bundle", type=Path, metavar="B", help="any Sigstore bundle (with --artifact)")
    p.add_argument(
        "--output",
        type=Path,
        metavar="DIR",
        help="with REGISTRY/REPO@sha256:…: write the verified output files here (new or empty)",
    )
    p.add_argument("--artifact", type=Path, metavar="FILE", help="the file --bundle signs")
    add_trust_options(p, "trust policy (exactly one)")
    gate = p.add_argument_group("approvals (a deployment gate: see `rexec approve`)")
    gate.add_argument(
        "--require-approval",
        action="append",
        default=[],
        metavar="KEY_OR_IDENTITY",
        help="an approver: a PEM public key file, or a Sigstore identity (with --approval-issuer)",
    )
    gate.add_argument(
        "--approvals",
        type=int,
        metavar="N",
        help="how many of the named approvers must have approved (default: all of them)",
    )
    gate.add_argument("--approval-issuer", metavar="URL", help="OIDC issuer of identity approvers")
    gate.add_argument(
        "--allow-self-approval",
        action="store_true",
        help="count an approval signed by the run's own signer",
    )
    p.add_argument("--json", action="store_true", help="print one JSON verdict on stdout")
    p.set_defaults(handler=handle)


def _check(args: argparse.Namespace) -> Verdict:
    if args.bundle is not None or args.artifact is not None:
        if args.target is not None or args.artifacts is not None:
            raise InputError(
                "give either RUN_DIR|BUNDLE [--artifacts DIR] or --bundle B --artifact FILE",
                hint="the two forms cannot be mixed",
            )
        if args.bundle is None or args.artifact is None:
            raise InputError(
                "--bundle and --artifact go together",
                hint="rexec verify --bundle B --artifact FILE --key PUB",
            )
        return verify_artifact(args.bundle, args.artifact, trust_policy(args))
    if args.target is None:
        raise InputError(
            "nothing to verify",
            hint="rexec verify runs/<run-id> --key PUB, or --bundle B --artifact FILE",
        )
    return verify_record(Path(args.target), trust_policy(args), artifacts=args.artifacts)


def _status_text(verdict: Verdict) -> str:
    if verdict.status is None and verdict.exit_code is None:
        return "unknown (not recorded in the statement)"
    text = display_text(verdict.status or "finished")
    if verdict.exit_code is not None:
        text += f" (exit {verdict.exit_code})"
    return text


def _print_human(verdict: Verdict, what: str) -> None:
    if verdict.signer:
        print(f"signature: ok, signed by {verdict.signer}")
    if verdict.transparency_log:
        print(f"tlog:      {verdict.transparency_log}")
    if verdict.run_id or verdict.statement_digest:
        print(f"run id:    {display_text(verdict.run_id or '(none)')}")
        print(f"status:    {_status_text(verdict)}")
        print(f"statement: sha256:{verdict.statement_digest}")
    if verdict.replay_verdict is not None:
        rv = verdict.replay_verdict
        print(
            f"replay:    {display_text(rv.get('verdict') or '?')} "
            f"({display_text(rv.get('result'))}) "
            f"about statement sha256:{display_text(rv.get('about'))}"
        )
    if verdict.approvals is not None:
        by = verdict.approvals["approvedBy"]
        who = display_text(", ".join(by) or "nobody")
        print(f"approvals: {len(by)} of {verdict.approvals['required']} required ({who})")
        for why in verdict.approvals["notCounted"]:
            print(f"           not counted: {display_text(why)}")
    for warning in verdict.warnings:
        print(f"warning:   {display_text(warning)}")
    if verdict.error is None:
        count = verdict.artifacts.verified if verdict.artifacts else 0
        print(f"artifacts: {count} verified")
        if verdict.byproducts is not None:
            print(
                f"record:    {verdict.byproducts.verified} signed files verified "
                "(host capture, logs, params, listings, reports)"
            )
        print(f"VERIFIED {what}")
        if verdict.status not in (None, "succeeded", "success"):
            print(
                "note: the record is authentic, but the run it records did not succeed "
                f"(status {_status_text(verdict)}); do not deploy its outputs as a success"
            )


def _approver_policies(args: argparse.Namespace) -> list[tuple[str, TrustPolicy]]:
    found: list[tuple[str, TrustPolicy]] = []
    for value in args.require_approval:
        if Path(value).is_file():
            found.append(
                (value, KeyPolicy.from_file(Path(value), trusted_root=None, require_tlog=False))
            )
            continue
        if not args.approval_issuer:
            raise InputError(
                f"--require-approval {value}: not a key file, and no --approval-issuer",
                hint="name a PEM public key file, or an identity with --approval-issuer URL",
            )
        from executor.signing import sigstore as keyless

        found.append(
            (
                value,
                keyless.KeylessPolicy(
                    identity=value,
                    identity_regexp=None,
                    issuer=args.approval_issuer,
                    trusted_root=args.trusted_root,
                ),
            )
        )
    return found


def _gate(args: argparse.Namespace, verdict: Verdict) -> Verdict:
    """``--require-approval``: enough named approvers signed an approval of this Statement."""
    if not args.require_approval or verdict.error is not None or args.target is None:
        return verdict
    from executor.approvals import check_approvals

    approvers = _approver_policies(args)
    need = args.approvals if args.approvals is not None else len(approvers)
    if not 1 <= need <= len(approvers):
        raise InputError(
            f"--approvals {need}: between 1 and the {len(approvers)} approver(s) named"
        )
    found = check_approvals(
        Path(args.target),
        verdict.statement_digest or "",
        approvers,
        run_signer=verdict.signer,
        allow_self=args.allow_self_approval,
    )
    doc = {**found.to_json(), "required": need}
    if len(found.approvers) >= need:
        return dataclasses.replace(verdict, approvals=doc)
    error = VerificationError(
        f"{len(found.approvers)} of the {need} required approval(s)",
        details=found.rejected,
        hint="`rexec approve RUN --signing-key KEY` records an approval; "
        "`rexec show RUN` lists the approvals the record has",
    )
    return dataclasses.replace(verdict, approvals=doc, error=error)


def _is_registry(target: str | None) -> bool:
    return bool(target) and "@sha256:" in str(target) and not Path(str(target)).exists()


def _registry(args: argparse.Namespace) -> int:
    """``verify REGISTRY/REPO@sha256:…``: the published artifact against its attached record."""
    from executor.registry import pull_verified

    def say(text: str) -> None:
        if not args.json:
            print(f"rexec: {text}", file=sys.stderr)

    doc = pull_verified(args.target, trust_policy(args), output=args.output, say=say)
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        signer = display_text(doc["signer"])
        print(f"signature: ok, signed by {signer} (attached via {doc['attachedBy']})")
        print(f"run id:    {display_text(str(doc['runId']))}")
        print(f"layers:    {doc['layers']} verified against the signed subjects")
        if doc["output"]:
            print(f"written:   {len(doc['written'])} file(s) under {display_text(doc['output'])}")
        print(f"VERIFIED {display_text(args.target)}")
    return 0


def _audit_bundle(args: argparse.Namespace) -> int:
    """``verify run.tar``: its record under the trust policy, then image, inputs and code."""
    import tempfile

    from executor import export
    from executor.record.reader import load_record

    def say(text: str) -> None:
        if not args.json:
            print(f"rexec: {text}", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="rexec-verify-") as tmp:
        unpacked = export.unpack_export(Path(args.target), Path(tmp) / "bundle")
        verdict = verify_record(unpacked.record_dir, trust_policy(args))
        if verdict.error is not None:
            raise verdict.error
        record = load_record(unpacked.record_dir, payload=verdict.payload)
        found = export.check_unpacked(unpacked, record, say=say)
    doc = {"verified": True, "runId": record.run_id, "signer": verdict.signer, **found}
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        print(f"signature: ok, signed by {display_text(verdict.signer or '')}")
        print(f"run id:    {display_text(record.run_id)}")
        print(f"image:     {found['image']} (the archive's config matches the record)")
        print(
            f"inputs:    {len(found['inputs'])} verified"
            + (f"; not included: {', '.join(found['notIncluded'])}" if found["notIncluded"] else "")
        )
        if found["code"]:
            print(f"code:      {found['code']}")
        print(f"VERIFIED {display_text(str(args.target))}")
    return 0


def handle(args: argparse.Namespace) -> int:
    """Verify a record or bundle; the exit code alone tells a gate what failed."""
    if _is_registry(args.target):
        return _registry(args)
    if args.target and Path(args.target).is_file() and str(args.target).endswith(".tar"):
        return _audit_bundle(args)
    what = str(args.target or args.artifact or "")
    try:
        verdict = _gate(args, _check(args))
    except RexecError as exc:
        verdict = Verdict(error=exc)
    if args.json:
        print(json.dumps(verdict.to_json(), indent=2, sort_keys=True))
        return verdict.process_exit_code
    _print_human(verdict, what)
    if verdict.error is not None:
        raise verdict.error
    return verdict.process_exit_code
