"""``rexec verify``: prove a run record (or any bundle) is intact and signed by whom you trust.

Meant as a deployment gate: the exit code alone says what failed (2 bad input,
3 signature or policy, 4 artifacts differ), and ``--json`` gives a pipeline one
document with every detail. Trust is always named on the command line; a key
shipped inside the record is never trusted, since a record cannot vouch for itself.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from executor.cli._options import add_trust_options, trust_policy
from executor.errors import InputError, RexecError
from executor.outputs import display_text
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
            "exit codes: 0 verified, 2 bad input, 3 signature or policy, 4 artifacts differ"
        ),
    )
    p.add_argument("target", nargs="?", metavar="RUN_DIR|BUNDLE", help="run record or bundle")
    p.add_argument("--artifacts", type=Path, metavar="DIR", help="verify these files, not outputs/")
    p.add_argument("--bundle", type=Path, metavar="B", help="any Sigstore bundle (with --artifact)")
    p.add_argument("--artifact", type=Path, metavar="FILE", help="the file --bundle signs")
    add_trust_options(p, "trust policy (exactly one)")
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


def handle(args: argparse.Namespace) -> int:
    """Verify a record or bundle; the exit code alone tells a gate what failed."""
    what = str(args.target or args.artifact or "")
    try:
        verdict = _check(args)
    except RexecError as exc:
        verdict = Verdict(error=exc)
    if args.json:
        print(json.dumps(verdict.to_json(), indent=2, sort_keys=True))
        return verdict.process_exit_code
    _print_human(verdict, what)
    if verdict.error is not None:
        raise verdict.error
    return verdict.process_exit_code
