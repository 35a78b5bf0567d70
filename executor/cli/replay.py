"""``rexec replay``: does this record come out the same again? A signed answer.

Order of output is deliberate: the verification, then how this host differs
from the recorded one (so an auditor reads the likely explanation before the
result), then the run, then the output-by-output comparison and the verdict.
Exit 0 only for a reproduction; 7 for not-reproduced.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from rich.markup import escape

from executor import export, replay, spec
from executor.cli._json import print_json
from executor.cli._metrics import judged_changes, print_metric_changes, reference_json
from executor.cli._render import console, print_env, print_outputs
from executor.cli._replay_options import add_run_options, exec_options, parse_inputs, trust_policy
from executor.compare import MetricChange
from executor.errors import InputError, NotReproduced
from executor.progress import Say
from executor.record import load_record
from executor.runtime import default_runtime

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
    """Add ``rexec replay`` to the parser."""
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
    p.add_argument(
        "target", type=Path, metavar="RUN_DIR|RUN.tar", help="the record, or an audit bundle"
    )
    add_run_options(p)
    p.add_argument(
        "--unpack-to",
        type=Path,
        metavar="DIR",
        help="where an audit bundle is unpacked (default: ./RUN.tar.unpacked; must be new)",
    )
    p.add_argument(
        "--strict-env",
        action="store_true",
        help="refuse to run when the host differs in a way that may change results",
    )
    p.set_defaults(handler=handle)


def _from_bundle(
    args: argparse.Namespace, say: Say
) -> tuple[export.Unpacked, replay.Original, str]:
    """Unpack the audit bundle, verify its record, check its image, inputs and code against
    it; returns the image id the signed record names (never the tar's own index)."""
    dest = (args.unpack_to or Path.cwd() / f"{args.target.name}.unpacked").resolve()
    say(f"unpacking {args.target} into {dest}")
    unpacked = export.unpack_export(args.target, dest)
    original = replay.open_original(unpacked.record_dir, trust_policy(args))
    found = export.check_unpacked(unpacked, original.record, say=say)
    if found["notIncluded"]:
        missing = [n for n in found["notIncluded"] if n not in parse_inputs(args.input)]
        if missing:
            raise InputError(
                f"{args.target}: exported without input(s) {', '.join(missing)}",
                hint=" ".join(f"--input {n}=PATH" for n in missing)
                + " (a copy with the recorded digest)",
            )
    return unpacked, original, str(found["image"])


def handle(args: argparse.Namespace) -> int:
    """Replay a verified record and print the verdict (exit 7 when not reproduced)."""
    options = exec_options(args)
    inputs: Mapping[str, Path] = parse_inputs(args.input)
    image, code = None, None
    if export.is_bundle(args.target):
        unpacked, original, image_id = _from_bundle(args, options.say)
        inputs = {**unpacked.inputs(), **inputs}
        runtime = default_runtime(args.runtime or original.record.engine)
        options.say("loading the bundle's image into the engine")
        runtime.load(unpacked.image_archive)
        image = spec.ImageSpec(image_id=image_id)  # what the signed record names
        if unpacked.code_dir is not None:
            export.make_code_repo(unpacked.code_dir)
            code = unpacked.code_dir
    else:
        original = replay.open_original(args.target, trust_policy(args))
        runtime = default_runtime(args.runtime or original.record.engine)
    plan = replay.plan_replay(
        original, inputs=inputs, runtime=runtime, say=options.say, image=image, code_path=code
    )
    out = console()
    if not args.json:
        out.print(f"replaying {escape(original.record.run_id)} ({escape(original.verification)})")
        out.print("[bold]environment[/] (recorded → this host)")
        print_env(out, plan.environment, indent="  ")
    if args.strict_env:
        replay.strict_env_check(plan)
    outcome = replay.execute(plan, options=options, runtime=runtime)
    # a replay that is not bitwise: how far each metric moved, against the seeds' spread
    metrics: list[MetricChange] = []
    reference = None
    if outcome.verdict != replay.BITWISE:
        new = load_record(outcome.result.run_dir)
        metrics, reference = judged_changes(original.record, new, trust_policy(args))
    if args.json:
        doc = outcome.to_json()
        if reference is not None:
            doc["metrics"] = [m.to_json() for m in metrics if m.before != m.after]
            doc["seedReference"] = reference_json(reference)
        print_json(doc)
    else:
        out.print("[bold]outputs[/] (original → replay)")
        print_outputs(out, outcome.comparison, indent="  ")
        changed = [m for m in metrics if m.before != m.after]
        print_metric_changes(out, changed, "original → replay, those that moved")
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
