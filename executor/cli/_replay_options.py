"""The options replay and rerun share, and how they become a trust policy and exec options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from executor import replay
from executor.cli._options import (
    add_runtime_option,
    add_signing_options,
    add_trust_options,
    sign_options,
    upstream_policy,
)
from executor.cli._options import trust_policy as policy_from_args
from executor.errors import InputError
from executor.signing import TrustPolicy


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Options replay and rerun share: trust policy, inputs, signing, output."""
    trust = add_trust_options(p, "trust policy for the original record (as for `rexec verify`)")
    trust.add_argument(
        "--no-verify",
        action="store_true",
        help="replay an unverified record (recorded as such in the new, signed record)",
    )
    p.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="where input NAME is now (replay: its digest must still match)",
    )
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="default: ./runs")
    add_signing_options(p, default="key")
    add_runtime_option(p)
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no job output or progress")


def parse_inputs(items: list[str]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for text in items:
        name, sep, path = text.partition("=")
        if not sep or not name or not path:
            raise InputError(
                f"--input {text!r}: expected NAME=PATH", hint="e.g. --input data=/mnt/d"
            )
        if name in found:
            raise InputError(f"--input {name} is given twice", hint="name each input once")
        found[name] = Path(path).resolve()
    return found


def trust_policy(args: argparse.Namespace) -> TrustPolicy | None:
    """The trust options, else the user's trust file; None only with ``--no-verify``."""
    if args.no_verify:
        if any((args.key, args.identity, args.identity_regexp, args.issuer, args.trust_policy)):
            raise InputError(
                "--no-verify and a trust policy exclude each other",
                hint="name the signer to verify, or --no-verify to skip verification",
            )
        return None
    return upstream_policy(args) or policy_from_args(args)


def exec_options(args: argparse.Namespace) -> replay.ExecOptions:
    def say(text: str) -> None:
        if not args.quiet:
            print(f"rexec: {text}", file=sys.stderr, flush=True)

    return replay.ExecOptions(
        runs_dir=args.runs_dir.resolve(),
        sign=sign_options(args),
        echo_logs=not args.quiet,
        say=say,
    )
