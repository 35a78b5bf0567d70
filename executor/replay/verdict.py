"""The replay verdict: reproduced bitwise, within tolerance, or not, as an in-toto
test-result Statement about the original run's Statement (docs/replay.md).
"""

from __future__ import annotations

from typing import Any

from executor import runner
from executor.compare import IDENTICAL, VOLATILE, WITHIN_TOLERANCE, OutputComparison
from executor.record import TEST_RESULT_TYPE, VERDICT_FILE, statement_about, writer
from executor.replay.plan import Plan

VERDICT_SCHEMA = "rexec.replay-verdict/v1"


VERDICT = VERDICT_FILE


BITWISE = "reproduced-bitwise"


WITHIN = "reproduced-within-tolerance"


NOT_REPRODUCED = "not-reproduced"


_RESULTS = {BITWISE: "PASSED", WITHIN: "WARNED", NOT_REPRODUCED: "FAILED"}


def decide(
    comparison: OutputComparison, *, original_status: str | None, result: runner.RunResult
) -> str:
    """The verdict: the status must match, then bitwise, then within tolerance."""
    if result.status.status != original_status:
        return NOT_REPRODUCED
    if comparison.bitwise:
        return BITWISE
    if comparison.within_tolerance:
        return WITHIN
    return NOT_REPRODUCED


def verdict_statement(
    plan: Plan, *, result: runner.RunResult, verdict: str, comparison: OutputComparison
) -> dict[str, Any]:
    """The verdict as an in-toto test-result Statement about the original run's Statement."""
    record = plan.original.record
    status_ok = result.status.status == record.status
    passed = [f"output:{f.name}" for f in comparison.files if f.status == IDENTICAL]
    # within tolerance, or declared volatile: not a failure, and not bitwise either
    warned = [
        f"output:{f.name}" for f in comparison.files if f.status in (WITHIN_TOLERANCE, VOLATILE)
    ]
    failed = [
        f"output:{f.name}"
        for f in comparison.files
        if f.status not in (IDENTICAL, WITHIN_TOLERANCE, VOLATILE)
    ]
    (passed if status_ok else failed).append("exit-status")
    return statement_about(
        record.run_id,
        record.statement_sha256,
        predicate_type=TEST_RESULT_TYPE,
        predicate={
            "result": _RESULTS[verdict],
            # rexec's detail rides in the replay's resource descriptor's annotations, the
            # place the test-result predicate leaves for it: a strict reader of the
            # standard (unknown fields rejected) still parses the whole verdict.
            "configuration": [
                {
                    "name": f"{result.run_id}/{writer.STATEMENT}",
                    "uri": f"rexec-run:{result.run_id}",
                    "digest": {"sha256": result.statement_sha256},
                    "annotations": _detail(plan, result, verdict, comparison),
                }
            ],
            "passedTests": sorted(passed),
            "warnedTests": sorted(warned),
            "failedTests": sorted(failed),
        },
    )


def _detail(
    plan: Plan, result: runner.RunResult, verdict: str, comparison: OutputComparison
) -> dict[str, Any]:
    record = plan.original.record
    return {
        "schema": VERDICT_SCHEMA,
        "verdict": verdict,
        "original": {
            "runId": record.run_id,
            "statementSha256": record.statement_sha256,
            "status": record.status,
            "verification": plan.original.verification,
        },
        "replay": {
            "runId": result.run_id,
            "statementSha256": result.statement_sha256,
            "status": result.status.status,
        },
        "outputs": comparison.to_json(),
        "environment": plan.environment.to_json(),
    }
