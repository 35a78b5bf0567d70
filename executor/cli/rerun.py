"""``rexec rerun``: the same run with a corrected snapshot, and what the fix changed.

Answers "what did the data fix change?" with evidence: a new signed run whose
manifest names the run it derives from and each input that changed (digest
before and after), then a side-by-side of the changed input files and of the
outputs and metrics, from the two records.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape

from executor import replay, runner
from executor.cli._json import print_json
from executor.cli._metrics import judged_changes, print_metric_changes, reference_json
from executor.cli._render import console, input_lines, print_env, print_outputs
from executor.cli._replay_options import add_run_options, exec_options, parse_inputs, trust_policy
from executor.compare import diff_records
from executor.errors import JobFailed
from executor.record import load_record
from executor.runtime import default_runtime

EPILOG = """\
example:
  rexec rerun runs/<run-id> --input data=/data/v2-fixed --key signing.pub

The new record's manifest carries internalParameters.lineage =
{derivedFrom, originalStatementSha256, verification, changedInputs[{name, from, to}]}.
exit codes: 0 the rerun succeeded, 2 bad input, 3 the record does not verify,
4 another pin does not match, 5 the job failed
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec rerun`` to the parser."""
    p = sub.add_parser(
        "rerun",
        help="re-run a record with a corrected input and compare with the original",
        description=(
            "Verify a run record, rebuild it from its manifest with each --input NAME=PATH "
            "replacing that snapshot (it must differ from the recorded one), run it as a "
            "new signed run derived from the original, and print which input files and "
            "which outputs changed."
        ),
        epilog=EPILOG,
    )
    p.add_argument("target", metavar="RUN_DIR", type=Path, help="the original run record")
    add_run_options(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Rerun a record on corrected inputs and show what changed, metric by metric."""
    options = exec_options(args)
    changes = parse_inputs(args.input)
    original = replay.open_original(args.target, trust_policy(args))
    runtime = default_runtime(args.runtime or original.record.engine)
    plan = replay.plan_rerun(original, changes=changes, runtime=runtime, say=options.say)
    outcome = replay.execute(plan, options=options, runtime=runtime)
    new = load_record(outcome.result.run_dir)
    diff = diff_records(original.record, new)
    metrics, reference = judged_changes(original.record, new, trust_policy(args))
    if args.json:
        doc = {
            "run": outcome.result.to_json(),
            "lineage": dict(plan.lineage),
            "diff": diff.to_json(),
            "metrics": [m.to_json() for m in metrics],
            "seedReference": reference_json(reference),
        }
        print_json(doc)
    else:
        out = console()
        out.print(
            f"rerun of {escape(original.record.run_id)} → {escape(outcome.result.run_id)} "
            f"({escape(original.verification)})"
        )
        out.print(f"record: {escape(str(outcome.result.run_dir))}")
        out.print("[bold]changed inputs[/] (original → rerun)")
        for line, same in input_lines(diff.to_json()["inputs"]):
            if not same:
                out.print(f"  [red]{escape(line)}[/]")
        out.print("[bold]environment[/]")
        print_env(out, plan.environment, indent="  ")
        out.print("[bold]outputs and metrics[/] (original → rerun)")
        print_outputs(out, diff.outputs, indent="  ")
        print_metric_changes(out, metrics, "original → rerun")
    if outcome.result.status.status != "succeeded":
        raise JobFailed(
            f"the rerun {outcome.result.status.status} (exit {outcome.result.status.exit_code})",
            hint=runner.failure_hint(
                outcome.result.run_dir, outputs_mount=plan.run_spec.outputs_mount
            ),
        )
    return 0
