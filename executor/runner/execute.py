"""A run's second phase: the job's container run, and what it left collected.

Every ending is kept, so the record can say how the run ended: success, failure,
timeout, an interrupt (SIGINT, SIGTERM, a scheduler's pre-emption warning), the
engine lost, or an input that changed under the job.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from executor import determinism
from executor.errors import EngineLost
from executor.record import RunStatus
from executor.runner.collect import Collected, collect, status_of
from executor.runner.options import RunOptions
from executor.runner.preflight import inputs_changed
from executor.runner.request import Job
from executor.runtime import ContainerResult, ContainerRuntime, log_files


@dataclass(frozen=True)
class Execution:
    """The second phase's value: how the job ended and what it left."""

    outcome: ContainerResult
    status: RunStatus
    collected: Collected
    determinism: Mapping[str, Any]  # whether the job's determinism report came back
    peers: Mapping[str, Any] | None  # multi-node: the other nodes' endings (rank 0)
    # What stopped the run short (an interrupt, the engine lost, an input that changed
    # under the job): raised once the run is recorded.
    stopped: BaseException | None = None


def execute(job: Job, *, runtime: ContainerRuntime, options: RunOptions) -> Execution:
    """Run the job's container to its end, whatever the end, and collect what it left."""
    say = options.say
    say(f"running {job.run_id} as uid {job.container.user}")
    interrupted: KeyboardInterrupt | None = None
    lost: EngineLost | None = None
    echo = sys.stderr.buffer if options.echo_logs else None
    started = datetime.now(UTC)
    with log_files(job.staging.logs, echo) as sink:
        try:
            outcome = runtime.run(job.container, sink)
        except (KeyboardInterrupt, EngineLost) as exc:
            if isinstance(exc, EngineLost):
                lost = exc
            else:
                interrupted = exc
            outcome = ContainerResult(None, started, datetime.now(UTC), False, False, "")
    status = status_of(outcome, interrupted=interrupted, lost=lost)
    changed = (
        inputs_changed(job.spec, say, options.vouched_inputs)
        if interrupted is None and lost is None
        else None
    )
    if changed is not None:
        status = RunStatus("failed", outcome.exit_code, reason=changed.message)
        changed.message += f"; the run is recorded as failed in {options.runs_dir / job.run_id}"
    collected = collect(job.staging, say)
    for line in collected.ignored_reports:
        say(f"warning: ignored in the job's reports directory: {line}")
    peers = options.peers() if options.peers is not None else None
    if peers and peers.get("failed") and status.status == "succeeded":
        failed = ", ".join(str(r) for r in peers["failed"])
        status = RunStatus(
            "failed", outcome.exit_code, reason=f"node rank(s) {failed} did not succeed"
        )
    det_state = determinism.report_state(collected.job_meta, job.spec.determinism.frameworks)
    if det_state["report"] == "absent" and det_state["requested"] and outcome.exit_code is not None:
        say(
            "warning: the job never reported its determinism settings, so "
            f"[determinism] frameworks = {det_state['requested']} may not have been applied "
            "(no Python process of the job ran rexec's start-up hook: not Python, or "
            "python -I/-S); the record says so. Call rexec_runtime.seed_everything() in the "
            "job, or set frameworks = [] if it uses none"
        )
    return Execution(outcome, status, collected, det_state, peers, interrupted or lost or changed)
