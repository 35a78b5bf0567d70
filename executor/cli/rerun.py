"""``rexec rerun``: the same run with a corrected snapshot, and what the fix changed.

Answers "what did the data fix change?" with evidence: a new signed run whose
manifest names the run it derives from and each input that changed (digest
before and after), then a side-by-side of the changed input files and of the
outputs and metrics, from the two records.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape

from executor import replay, runner
from executor.cli._json import print_json
from executor.cli._render import console, input_lines, print_env, print_outputs
from executor.cli._replay_options import add_run_options, exec_options, parse_inputs, trust_policy
from executor.compare import MetricChange, diff_records, metric_changes, series_of
from executor.errors import JobFailed, RexecError
from executor.record import RunRecord, load_record
from executor.signing import TrustPolicy

if TYPE_CHECKING:
    from executor import catalog
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


def _side_by_side(m: MetricChange) -> str:
    if m.before is None or m.after is None:
        return f"{m.before} → {m.after}"
    if m.before == m.after:
        return f"{m.before:.6g} (same)"
    return f"{m.before:.6g} → {m.after:.6g} ({m.after - m.before:+.3g})"


def seed_reference(record: RunRecord, policy: TrustPolicy | None) -> catalog.Reference:
    """The runs of the record's spec with other seeds, from the catalog (best effort: no
    catalog, no reference, and the verdicts say so)."""
    from executor import catalog  # only once the rerun is done

    try:
        cat = catalog.open_catalog(create=False)
    except RexecError:
        return catalog.Reference()
    try:
        return catalog.seed_reference(cat, record, policy)
    finally:
        cat.close()


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
    reference = seed_reference(original.record, trust_policy(args))
    metrics = metric_changes(series_of(original.record), series_of(new), reference.values)
    if args.json:
        doc = {
            "run": outcome.result.to_json(),
            "lineage": dict(plan.lineage),
            "diff": diff.to_json(),
            "metrics": [m.to_json() for m in metrics],
            "seedReference": {"seeds": list(reference.seeds), "refused": reference.refused},
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
        if metrics:
            out.print("[bold]metrics[/] (original → rerun)")
            for m in metrics:
                out.print(f"  {escape(m.file)} {escape(m.key)}: {_side_by_side(m)}")
                if m.noise is not None:
                    out.print(f"    {escape(m.noise.describe())}")
    if outcome.result.status.status != "succeeded":
        raise JobFailed(
            f"the rerun {outcome.result.status.status} (exit {outcome.result.status.exit_code})",
            hint=runner.failure_hint(
                outcome.result.run_dir, outputs_mount=plan.run_spec.outputs_mount
            ),
        )
    return 0
