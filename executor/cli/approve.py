"""``rexec approve``: sign a verification summary that a checked run is approved."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from executor import approvals, catalog, safeio
from executor.cli._json import print_json
from executor.cli._options import add_signing_options, add_trust_options, sign_options, trust_policy
from executor.errors import InputError, MismatchError
from executor.outputs import display_text
from executor.record import load_record, verify_record
from executor.signing import make_signer, parse_bundle

EPILOG = """\
examples:
  rexec approve runs/<run-id> --key trainer.pub --signing-key reviewer.key
  rexec approve runs/<run-id> --key trainer.pub --signing-key reviewer.key \\
      --policy release-policy.md --with-replay runs/<replay-id>
  rexec verify runs/<run-id> --key trainer.pub --require-approval reviewer.pub \\
      --require-approval lead.pub --approvals 2

The record is verified first (--key/--identity name its signer); with
--with-replay, a replay record of it must verify too and its signed verdict must
say it reproduced. The approval is an SLSA Verification Summary (VSA v1) about
the run Statement's sha256, naming the policy, the result and the time, signed
by you, stored in RUN/approvals/; the run's own files are not touched.
exit codes: 0 approved, 2 bad input, 3 the record or replay does not verify,
4 the replay did not reproduce
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec approve`` to the parser."""
    p = sub.add_parser(
        "approve",
        help="verify a run and sign an approval of it (an SLSA verification summary)",
        description="Verify a run record and sign an approval (VSA) of its Statement.",
        epilog=EPILOG,
    )
    p.add_argument("target", type=Path, metavar="RUN_DIR", help="the run record to approve")
    p.add_argument(
        "--policy",
        type=Path,
        metavar="FILE",
        help="the policy you approved it under (recorded by name and sha256)",
    )
    p.add_argument(
        "--with-replay",
        type=Path,
        metavar="REPLAY_DIR",
        help="a replay record whose signed verdict must say the run reproduced",
    )
    add_trust_options(p, "trust policy for the run (and replay) records")
    add_signing_options(p, default="key")
    p.add_argument("--json", action="store_true", help="print the approval as JSON")
    p.set_defaults(handler=handle)


def _replay(args: argparse.Namespace, statement_sha256: str) -> dict[str, str] | None:
    if args.with_replay is None:
        return None
    checked = verify_record(args.with_replay, trust_policy(args))
    if checked.error is not None:
        raise checked.error
    found = checked.replay_verdict
    if found is None:
        raise InputError(
            f"--with-replay {args.with_replay}: not a replay record (no signed verdict)"
        )
    if found.get("about") != statement_sha256:
        raise MismatchError(
            f"--with-replay {args.with_replay}: its verdict is about statement "
            f"{found.get('about')}, not this run's {statement_sha256}"
        )
    if found.get("verdict") not in approvals.REPRODUCED:
        raise MismatchError(
            f"--with-replay {args.with_replay}: the replay says {found.get('verdict')}",
            hint="only a run that reproduced (bitwise or within tolerance) is approved with it",
        )
    verdict_file = args.with_replay / "verdict.json"
    from executor.canonical import sha256_hex

    return {
        "uri": f"{checked.run_id}/verdict.json",
        "sha256": sha256_hex(safeio.read_capped(verdict_file, cap=approvals.APPROVAL_CAP)),
    }


def handle(args: argparse.Namespace) -> int:
    """Verify, check the replay, sign and store the approval, index it."""
    checked = verify_record(args.target, trust_policy(args))
    if checked.error is not None:
        raise checked.error
    record = load_record(args.target, payload=checked.payload)
    replay = _replay(args, record.statement_sha256)
    policy_uri, policy_digest = approvals.DEFAULT_POLICY, None
    if args.policy is not None:
        from executor.canonical import sha256_hex

        try:
            policy_digest = sha256_hex(safeio.read_capped(args.policy, cap=approvals.APPROVAL_CAP))
        except (OSError, safeio.UnsafeFile) as exc:
            raise InputError(f"--policy {args.policy}: cannot read it ({exc})") from exc
        policy_uri = f"file:{args.policy.name}"
    signer = make_signer(sign_options(args))
    if signer is None:
        raise InputError("an approval must be signed", hint="--signing-key KEY or --sign sigstore")
    statement = approvals.vsa_statement(
        record, policy_uri=policy_uri, policy_digest=policy_digest, replay=replay
    )
    written = approvals.write_approval(record, statement, signer)
    catalog.remember(record, say=lambda text: print(f"rexec: {text}", file=sys.stderr))
    if args.json:
        print_json({"approval": str(written), "statement": statement})
    else:
        bundle = written.with_name(written.stem + approvals.BUNDLE_SUFFIX)
        kind, who = parse_bundle(safeio.read_capped(bundle)).claimed_signer()
        run_id = display_text(record.run_id)
        print(f"approved {run_id}, signed by {kind} {display_text(who or '')}: {written}")
    return 0
