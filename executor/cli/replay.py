"""``rexec replay``: does this record come out the same again? A signed answer.

Order of output is deliberate: the verification, then how this host differs
from the recorded one (so an auditor reads the likely explanation before the
result), then the run, then the output-by-output comparison and the verdict.
Exit 0 only for a reproduction; 7 for not-reproduced.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path

from rich.markup import escape

from executor import replay
from executor.cli._options import add_signing_options, add_trust_options, sign_options
from executor.cli._options import trust_policy as policy_from_args
from executor.cli.diff import console, print_env, print_outputs
from executor.errors import InputError, NotReproduced
from executor.signing import TrustPolicy

EPILOG = """\
examples:
  rexec replay runs/<run-id> --key signing.pub --signing-key replay.key
  rexec replay runs/<run-id> --key signing.pub --input data=/mnt/copy/data --json
  rexec replay runs/<run-id> --no-verify --strict-env

The verdict (reproduced-bitwise, reproduced-within-tolerance, not-reproduced)
is an in-toto test-result Statement, signed like a run, stored as
verdict.json and verdict.sigstore.json in the new replay record.
exit codes: 0 reproduced, 2 something missing, 3 the record does not verify,
4 a pin or the host (--strict-env) does not match, 7 not reproduced
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay",
        help="re-run a recorded run from its manifest and give a signed verdict",
        description=(
            "Verify a run record, rebuild the run from its signed manifest alone (image "
            "digest, snapshot digests, code tree, command, params, seed, determinism, "
            "resources), compare this host with the recorded one, run it, and compare the "
            "outputs file by file. Numeric outputs that differ are measured against the "
            "original spec's [replay] tolerance."
        ),
        epilog=EPILOG,
    )
    p.add_argument("target", type=Path, metavar="RUN_DIR|BUNDLE", help="the record to replay")
    add_run_options(p)
    p.add_argument(
        "--strict-env",
        action="store_true",
        help="refuse to run when the host differs in a way that may change results",
    )
    p.set_defaults(handler=handle)


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
    if args.no_verify:
        if any((args.key, args.identity, args.identity_regexp, args.issuer)):
            raise InputError(
                "--no-verify and a trust policy exclude each other",
                hint="name the signer to verify, or --no-verify to skip verification",
            )
        return None
    return policy_from_args(args)


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


def handle(args: argparse.Namespace) -> int:
    options = exec_options(args)
    inputs: Mapping[str, Path] = parse_inputs(args.input)
    original = replay.open_original(args.target, trust_policy(args))
    runtime = replay.default_runtime()
    plan = replay.plan_replay(original, inputs=inputs, runtime=runtime, say=options.say)
    out = console()
    if not args.json:
        out.print(f"replaying {escape(original.record.run_id)} ({escape(original.verification)})")
        out.print("[bold]environment[/] (recorded → this host)")
        print_env(out, plan.environment, indent="  ")
    if args.strict_env:
        replay.strict_env_check(plan)
    outcome = replay.execute(plan, options=options, runtime=runtime)
    if args.json:
        print(json.dumps(outcome.to_json(), indent=2, sort_keys=True))
    else:
        out.print("[bold]outputs[/] (original → replay)")
        print_outputs(out, outcome.comparison, indent="  ")
        style = "green" if outcome.verdict != replay.NOT_REPRODUCED else "red"
        out.print(f"record: {escape(str(outcome.result.run_dir))}")
        out.print(
            f"verdict: [bold {style}]{outcome.verdict}[/] "
            f"({'signed' if outcome.signed else 'unsigned'} {replay.VERDICT})"
        )
    if outcome.verdict == replay.NOT_REPRODUCED:
        bad = [f.name for f in outcome.comparison.files if f.status not in ("identical",)]
        raise NotReproduced(
            f"replay of {original.record.run_id} did not reproduce it",
            details=[
                f"{f.status}: {f.name}"
                for f in outcome.comparison.files
                if f.name in bad and f.status != "within-tolerance"
            ]
            + (
                [f"status: {original.record.status} → {outcome.result.status.status}"]
                if original.record.status != outcome.result.status.status
                else []
            ),
            hint=f"see {outcome.result.run_dir / replay.VERDICT}; "
            f"`rexec diff {original.record.path} {outcome.result.run_dir}` shows every difference",
        )
    return 0
