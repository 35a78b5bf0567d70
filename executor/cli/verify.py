"""``rexec verify``: prove a run record (or any bundle) is intact and signed by whom you trust.

Meant as a deployment gate, the same on every path a model travels: a record directory,
an audit bundle (``run.tar``), a registry artifact (``REGISTRY/REPO@sha256:…``) or a
bundle with its artifact. Each entry point first proves what it can about the record,
then one gate applies the same checks to all of them: approvals (``--require-approval``),
the run's status (a run that did not succeed is refused unless ``--allow-failed``) and,
with ``--chain``, every upstream record back to raw data. The exit code alone says what
failed (2 bad input, 3 signature or policy, 4 content differs, 5 the run did not
succeed) and ``--json`` gives one document with every detail. Trust is always named on
the command line; a key shipped inside the record is never trusted.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from executor.approvals import approval_files, list_approvals
from executor.cli._catalog import add_catalog_option
from executor.cli._json import print_json
from executor.cli._options import add_trust_options, trust_policy
from executor.cli._render import safe
from executor.errors import InputError, RexecError
from executor.gate import ChainCheck, Gate, apply_gate
from executor.outputs import display_text
from executor.progress import Say
from executor.record import Verdict, verify_artifact, verify_record
from executor.signing import KeyPolicy, TrustPolicy

EPILOG = """\
examples:
  rexec verify runs/<run-id> --key signing.pub
  rexec verify runs/<run-id> --identity ci@example.com --issuer https://accounts.google.com
  rexec verify run.tar --key signing.pub --require-approval lead.pub
  rexec verify registry.example/models/mnist@sha256:… --key signing.pub --output m/
  rexec verify --bundle model.sigstore.json --artifact model.bin --key signing.pub
  rexec verify runs/<model-run> --key signing.pub --chain --runs-dir runs/

Every form takes the same gate: --require-approval (N of the named approvers, each
counted once), the run's status (a failed, timed-out, interrupted or pre-empted run is
refused, exit 5, unless --allow-failed) and --chain (every upstream record verified,
back to the raw inputs; --upstream-key or the trust file say whom to trust for them).
exit codes: 0 verified, 2 bad input, 3 signature or policy, 4 content differs,
5 the run did not succeed
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec verify`` to the parser."""
    p = sub.add_parser(
        "verify",
        help="verify a run record's signature, signer, artifacts, approvals and chain",
        description=(
            "Check, in order: the bundle parses; its signature holds and the signer "
            "satisfies the trust policy (--key, --identity/--identity-regexp with --issuer, "
            "or --trust-policy); the record's statement.json is the signed payload byte for "
            "byte; every artifact matches its signed sha256, with none missing or extra; "
            "then the gate: approvals, the run's status, and with --chain its upstream "
            "records. Works on a record directory, an audit bundle (run.tar), a registry "
            "artifact (REGISTRY/REPO@sha256:…) or --bundle with --artifact."
        ),
        epilog=EPILOG,
    )
    p.add_argument("target", nargs="?", metavar="RUN_DIR|RUN.tar|REF|BUNDLE", help="what to verify")
    p.add_argument("--artifacts", type=Path, metavar="DIR", help="verify these files, not outputs/")
    p.add_argument("--bundle", type=Path, metavar="B", help="any Sigstore bundle (with --artifact)")
    p.add_argument("--artifact", type=Path, metavar="FILE", help="the file --bundle signs")
    p.add_argument(
        "--output",
        type=Path,
        metavar="DIR",
        help="with REGISTRY/REPO@sha256:…: write the verified output files here (new or "
        "empty; all of them, or none)",
    )
    add_trust_options(p, "trust policy (exactly one)")
    gate = p.add_argument_group("the deployment gate (the same for every form)")
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
        help="how many of the named approvers must have approved (default: all of them); "
        "one signer counts once, however often it is named",
    )
    gate.add_argument("--approval-issuer", metavar="URL", help="OIDC issuer of identity approvers")
    gate.add_argument(
        "--allow-self-approval",
        action="store_true",
        help="count an approval signed by the run's own signer",
    )
    gate.add_argument(
        "--approvals-dir",
        type=Path,
        metavar="DIR",
        help="where the approval files are (default: the record's approvals/, those inside "
        "run.tar, or those attached to the registry artifact)",
    )
    gate.add_argument(
        "--allow-failed",
        action="store_true",
        help="accept an authentic record of a run that did not succeed (an audit of a failure)",
    )
    gate.add_argument(
        "--chain",
        action="store_true",
        help="also verify every upstream record the run read from, back to the raw inputs",
    )
    gate.add_argument(
        "--upstream-key",
        action="append",
        default=[],
        type=Path,
        metavar="PUB",
        help="with --chain: trust this key for upstream records (repeat for several; default: "
        "the signers in ~/.config/rexec/trust.toml, else the policy of the record itself)",
    )
    gate.add_argument(
        "--runs-dir",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="with --chain: where upstream records may be (besides where the record says "
        "it read them, and the catalog)",
    )
    add_catalog_option(p)
    p.add_argument("--json", action="store_true", help="print one JSON verdict on stdout")
    p.set_defaults(handler=handle)


@dataclasses.dataclass
class _Checked:
    """What an entry point proved, and where the approvals of its record are."""

    verdict: Verdict
    approvals: list[Path] | None  # approval files, or None where the form has none
    record: Path | None = None  # a record directory, for --chain


def _bundle_form(args: argparse.Namespace) -> _Checked:
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
    return _Checked(verify_artifact(args.bundle, args.artifact, trust_policy(args)), None)


def _record_form(args: argparse.Namespace) -> _Checked:
    target = Path(args.target)
    verdict = verify_record(target, trust_policy(args), artifacts=args.artifacts)
    record = target if target.is_dir() else target.parent
    has_record = (record / "statement.json").exists()
    return _Checked(verdict, list_approvals(record) if has_record else None, record)


def _registry_form(args: argparse.Namespace, scratch: Path) -> _Checked:
    """``verify REGISTRY/REPO@sha256:…``: the published artifact against its attached record."""
    from executor.record import StatementView
    from executor.registry import pull_verified

    pulled = pull_verified(
        args.target,
        trust_policy(args),
        output=args.output,
        approvals_dir=scratch / "approvals",
        say=_say(args),
    )
    payload = pulled.verified.payload or b""
    view = StatementView(json.loads(payload))
    status, code = view.status
    verdict = Verdict(
        signer=pulled.verified.signer,
        transparency_log=pulled.verified.tlog,
        statement_digest=hashlib.sha256(payload).hexdigest(),
        run_id=view.run_id,
        status=status,
        exit_code=code,
        payload=payload,
        extra={
            "registry": {
                "artifact": pulled.artifact,
                "layers": pulled.layers,
                "attachedBy": pulled.attached_by,
                "written": list(pulled.written),
                "output": str(pulled.output) if pulled.output else None,
            }
        },
    )
    return _Checked(verdict, list(pulled.approvals))


def _audit_bundle_form(args: argparse.Namespace, scratch: Path) -> _Checked:
    """``verify run.tar``: its record under the trust policy, then image, inputs and code."""
    from executor import export
    from executor.record import load_record

    unpacked = export.unpack_export(Path(args.target), scratch / "bundle")
    verdict = verify_record(unpacked.record_dir, trust_policy(args))
    if verdict.error is None:
        record = load_record(unpacked.record_dir, payload=verdict.payload)
        try:
            found = export.check_unpacked(unpacked, record, say=_say(args))
            verdict = dataclasses.replace(verdict, extra={"auditBundle": found})
        except RexecError as exc:
            verdict = dataclasses.replace(verdict, error=exc)
    return _Checked(verdict, list_approvals(unpacked.record_dir), unpacked.record_dir)


def _say(args: argparse.Namespace) -> Say:
    import sys

    def say(text: str) -> None:
        if not args.json:
            print(f"rexec: {display_text(text)}", file=sys.stderr)

    return say


def _entry(args: argparse.Namespace, scratch: Path) -> _Checked:
    """The entry point the arguments name: each proves the record its own way."""
    if args.bundle is not None or args.artifact is not None:
        return _bundle_form(args)
    if args.target is None:
        raise InputError(
            "nothing to verify",
            hint="rexec verify runs/<run-id> --key PUB, or --bundle B --artifact FILE",
        )
    target = str(args.target)
    if "@sha256:" in target and not Path(target).exists():
        return _registry_form(args, scratch)
    if args.output is not None:
        raise InputError("--output goes with a registry artifact (REGISTRY/REPO@sha256:…)")
    if Path(target).is_file() and target.endswith(".tar"):
        return _audit_bundle_form(args, scratch)
    return _record_form(args)


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


def _gate(args: argparse.Namespace) -> Gate:
    """What the arguments require of the record, the same for every form."""
    chain = None
    if args.chain:
        chain = ChainCheck(
            policy=_upstream_policy(args),
            runs_dirs=[Path(d) for d in args.runs_dir],
            locate=_catalog_places(args),
        )
    return Gate(
        approvers=_approver_policies(args),
        approvals_needed=args.approvals,
        allow_self_approval=args.allow_self_approval,
        allow_unsuccessful=args.allow_failed,
        chain=chain,
    )


def _upstream_policy(args: argparse.Namespace) -> TrustPolicy:
    """Whom upstream records must be signed by: --upstream-key, else the trust file, else
    the policy the record itself was verified under."""
    from executor.signing import AnyOf, default_trust_file, load_trust_file

    if args.upstream_key:
        keys = tuple(
            KeyPolicy.from_file(k, trusted_root=args.trusted_root) for k in args.upstream_key
        )
        return keys[0] if len(keys) == 1 else AnyOf(keys, source="--upstream-key")
    if default_trust_file().is_file():
        return load_trust_file(default_trust_file())
    return trust_policy(args)


def _catalog_places(args: argparse.Namespace) -> Callable[[str, str], list[Path]]:
    """Where the catalog says records of a run might be (a hint: each is verified)."""

    def locate(run_id: str, statement: str) -> list[Path]:
        from executor import catalog

        try:
            cat = catalog.open_catalog(args.catalog, create=False)
        except RexecError:
            return []
        try:
            return [Path(r["path"]) for r in cat.records_of(run_id)]
        finally:
            cat.close()

    return locate


def _status_text(verdict: Verdict) -> str:
    if verdict.status is None and verdict.exit_code is None:
        return "unknown (not recorded in the statement)"
    text = display_text(verdict.status or "finished")
    if verdict.exit_code is not None:
        text += f" (exit {verdict.exit_code})"
    return text


def _print_human(verdict: Verdict, what: str) -> None:
    if verdict.signer:
        print(f"signature: ok, signed by {display_text(verdict.signer)}")
    if verdict.transparency_log:
        print(f"tlog:      {verdict.transparency_log}")
    if verdict.run_id or verdict.statement_digest:
        print(f"run id:    {display_text(verdict.run_id or '(none)')}")
        print(f"status:    {_status_text(verdict)}")
        print(f"statement: sha256:{verdict.statement_digest}")
    _print_extra(verdict)
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
        if verdict.artifacts is not None:
            print(f"artifacts: {count} verified")
        if verdict.byproducts is not None:
            print(
                f"record:    {verdict.byproducts.verified} signed files verified "
                "(host capture, logs, params, listings, reports)"
            )
        print(f"VERIFIED {display_text(what)}")
        if verdict.status not in (None, "succeeded"):
            print(
                "note: the record is authentic, but the run it records did not succeed "
                f"(status {_status_text(verdict)}); accepted by --allow-failed"
            )


def _print_extra(verdict: Verdict) -> None:
    """What the registry, audit-bundle and chain checks proved, one line each."""
    registry = verdict.extra.get("registry")
    if registry:
        print(
            f"layers:    {registry['layers']} verified against the signed subjects "
            f"(record attached via {registry['attachedBy']})"
        )
        if registry["output"]:
            print(f"written:   {len(registry['written'])} file(s) under {safe(registry['output'])}")
    bundle = verdict.extra.get("auditBundle")
    if bundle:
        print(f"image:     {bundle['image']} (the archive's config matches the record)")
        left = (
            f"; not included: {', '.join(bundle['notIncluded'])}" if bundle["notIncluded"] else ""
        )
        print(f"inputs:    {len(bundle['inputs'])} verified{display_text(left)}")
        if bundle["code"]:
            print(f"code:      {bundle['code']}")
    for link in verdict.extra.get("chain") or []:
        print(f"chain:     {display_text(link['runId'])}  signed by {display_text(link['signer'])}")
        for item in link["inputs"]:
            came = item["from"]
            source = (
                f"run {display_text(came['runId'])} (statement {came['statementSha256'][:16]})"
                if came
                else "raw input"
            )
            print(f"             {display_text(item['name'])} {display_text(item['digest'])}"
                  f" <- {source}")  # fmt: skip


def handle(args: argparse.Namespace) -> int:
    """Verify through the entry point named, then the one gate; the exit code tells what failed."""
    what = str(args.target or args.artifact or "")
    with tempfile.TemporaryDirectory(prefix="rexec-verify-") as scratch:
        try:
            gate = _gate(args)
            checked = _entry(args, Path(scratch))
            if args.approvals_dir is not None:
                checked.approvals = approval_files(args.approvals_dir)
            verdict = apply_gate(
                checked.verdict, gate, approvals=checked.approvals, record=checked.record
            )
        except RexecError as exc:
            verdict = Verdict(error=exc)
    if args.json:
        print_json(verdict.to_json())
        return verdict.process_exit_code
    _print_human(verdict, what)
    if verdict.error is not None:
        raise verdict.error
    return verdict.process_exit_code
