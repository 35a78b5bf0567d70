"""Re-create a run from its manifest alone, run it again, and give a signed verdict.

replay: verify the record -> spec from the manifest -> check every pin here
        -> classify host differences -> run (the normal pipeline) -> compare
        outputs -> verdict Statement, signed, inside the new record
rerun:  the same, with one or more snapshots replaced by corrected copies;
        the new record names the run it derives from and what changed.

The spec file is never read: it may have changed since the run, and the
signed manifest is what an auditor was handed. Everything the pipeline needs
comes from ``externalParameters.spec`` and ``resolvedDependencies`` (host
paths are in their ``annotations.hostPath``). Pins are checked here, before
the pipeline, so a missing image, snapshot or code tree is reported with
what the record says it was and where it used to be.

The verdict is an in-toto Statement with the test-result predicate (see
docs/replay.md for why), written into the replay record through the
pipeline's ``before_commit`` hook so record and verdict appear together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from executor import runner
from executor.canonical import canonical_json, sha256_hex
from executor.compare import OutputComparison, compare_outputs
from executor.progress import Say
from executor.record import VERDICT_BUNDLE, Subject
from executor.replay.plan import (
    Original,
    Plan,
    check_record_pins,
    open_original,
    plan_replay,
    plan_rerun,
    spec_from_record,
    strict_env_check,
)
from executor.replay.verdict import (
    BITWISE,
    NOT_REPRODUCED,
    VERDICT,
    VERDICT_SCHEMA,
    WITHIN,
    decide,
    verdict_statement,
)
from executor.runtime import ContainerRuntime
from executor.signing import SignOptions, make_signer

__all__ = [
    "BITWISE",
    "NOT_REPRODUCED",
    "VERDICT",
    "VERDICT_BUNDLE",
    "VERDICT_SCHEMA",
    "WITHIN",
    "ExecOptions",
    "Original",
    "Outcome",
    "Plan",
    "check_record_pins",
    "decide",
    "execute",
    "open_original",
    "plan_replay",
    "plan_rerun",
    "spec_from_record",
    "strict_env_check",
    "verdict_statement",
]


@dataclass(frozen=True)
class Outcome:
    """What a replay or rerun produced: its plan, run, comparison and verdict."""

    plan: Plan
    result: runner.RunResult
    verdict: str
    comparison: OutputComparison
    verdict_sha256: str
    signed: bool

    def to_json(self) -> dict[str, Any]:
        """The JSON form printed by ``replay --json`` and ``rerun --json``."""
        return {
            "verdict": self.verdict,
            "original": self.plan.original.record.summary(),
            "verification": self.plan.original.verification,
            "replay": self.result.to_json(),
            "verdictStatementSha256": self.verdict_sha256,
            "verdictSigned": self.signed,
            "environment": self.plan.environment.to_json(),
            "outputs": self.comparison.to_json(),
        }


@dataclass(frozen=True)
class ExecOptions:
    """Where and how the replay run is recorded and signed."""

    runs_dir: Path
    sign: SignOptions
    echo_logs: bool = True
    say: Say = field(default=lambda text: None)


def execute(
    plan: Plan, *, options: ExecOptions, runtime: ContainerRuntime | None = None
) -> Outcome:
    """Run the plan through the normal pipeline; a replay also gets its verdict."""
    is_replay = not plan.changed_inputs
    holder: dict[str, Any] = {}
    signer = make_signer(options.sign)  # one signer for the run and its verdict

    def before_commit(
        outputs: Path, result: runner.RunResult, statement: Mapping[str, Any]
    ) -> dict[str, bytes]:
        comparison = compare_outputs(
            original=plan.original.record.outputs,
            original_dir=plan.original.record.outputs_dir,
            replay=_subjects(result.subjects),
            replay_dir=outputs,
            tolerances=plan.run_spec.tolerances,
            volatile=plan.run_spec.volatile,
        )
        holder["comparison"] = comparison
        if not is_replay:
            return {}
        verdict = decide(comparison, original_status=plan.original.record.status, result=result)
        doc = verdict_statement(plan, result=result, verdict=verdict, comparison=comparison)
        payload = canonical_json(doc)
        files = {VERDICT: payload}
        if signer is not None:
            files[VERDICT_BUNDLE] = signer.sign_dsse(payload)
        holder.update(verdict=verdict, sha256=sha256_hex(payload), signed=signer is not None)
        return files

    run_options = runner.RunOptions(
        runs_dir=options.runs_dir,
        sign=options.sign,
        signer=signer,
        allow_dirty=True,  # the code tree was matched against its recorded digest in planning
        echo_logs=options.echo_logs,
        say=options.say,
        lineage=plan.lineage,
        before_commit=before_commit,
        params_json=plan.original.record.params_json,
    )
    result = runner.run(plan.run_spec, options=run_options, runtime=runtime)
    return Outcome(
        plan=plan,
        result=result,
        verdict=holder.get("verdict", ""),
        comparison=holder["comparison"],
        verdict_sha256=holder.get("sha256", ""),
        signed=bool(holder.get("signed")),
    )


def _subjects(subjects: tuple[Subject, ...]) -> dict[str, str]:
    return {s.name: s.sha256 for s in subjects}
