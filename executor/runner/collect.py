"""What the job left: its outputs hashed, its reports read, its ending named.

The job controls every byte here, so its reports are read as it might have
planted them: small regular files only, never a link followed or a file read
without a cap.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from executor import outputs as outputs_policy
from executor import safeio, snapshot
from executor.errors import RexecError
from executor.progress import Say
from executor.record import RunStatus, Subject, writer
from executor.runner.staging import Staging
from executor.runtime import ContainerResult

REPORT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\.json$")
REPORT_CAP = 1 << 20  # bytes per report
MAX_REPORTS = 16

# The signal a scheduler sends before it pre-empts a job (`sbatch --signal=B:USR2@60`):
# the run stops and is recorded as `preempted` rather than `interrupted`.
PREEMPT_SIGNAL = "SIGUSR2"


@dataclass(frozen=True)
class Collected:
    """What the job left: the subjects, its reports, and what the outputs policy excluded."""

    subjects: tuple[Subject, ...]
    job_meta: Mapping[str, bytes]  # report name → bytes, from the reports directory
    ignored_reports: tuple[str, ...] = ()  # what the job left there that is not a report
    excluded: tuple[outputs_policy.Excluded, ...] = ()  # left in outputs/, not a subject
    # sha256-tree-v1 of outputs/ and of each top-level directory ("outputs/model/"), from
    # the subjects' digests: what a later run pins when it takes them as an input.
    trees: Mapping[str, str] = field(default_factory=dict)
    # logs/stdout.log and logs/stderr.log → sha256: any size, hashed as a stream
    logs: Mapping[str, str] = field(default_factory=dict)
    scratch: Mapping[str, object] | None = None  # the scratch workdir's account
    checkpoint: Mapping[str, object] | None = None  # [checkpoint]: started from, left


def status_of(
    outcome: ContainerResult,
    *,
    interrupted: KeyboardInterrupt | None = None,
    lost: RexecError | None = None,
) -> RunStatus:
    """``succeeded`` only for exit code 0 without an OOM kill; nothing else passes for it."""
    if lost is not None:
        return RunStatus("infrastructure-failed", None, reason=lost.message)
    if interrupted is not None:
        signal_name = getattr(interrupted, "signal_name", "SIGINT")
        if signal_name == PREEMPT_SIGNAL:
            return RunStatus(
                "preempted", None, reason=f"rexec received {signal_name}, the scheduler's warning"
            )
        preempted_by = getattr(interrupted, "preempted_by", None)
        if preempted_by:
            return RunStatus(
                "preempted", None, reason=f"rexec received {signal_name}: {preempted_by}"
            )
        return RunStatus("interrupted", None, reason=f"rexec received {signal_name}")
    if outcome.timed_out:
        return RunStatus("timed-out", None, outcome.oom_killed)
    if outcome.exit_code == 0 and not outcome.oom_killed:
        return RunStatus("succeeded", 0)
    return RunStatus("failed", outcome.exit_code, outcome.oom_killed)


def collect(staging: Staging, say: Say) -> Collected:
    """Hash every output file and the logs, take the job's reports (they go to
    ``job-meta/``); then the staging back from the job: its files to the invoking user (so
    the record is theirs), the cover and the scratch workdir gone."""
    outputs, reports = staging.outputs, staging.reports
    files, excluded = outputs_policy.settle(outputs)
    subjects = [Subject(name, safeio.sha256_file(path)) for name, path in files]
    trees = snapshot.trees_of(outputs, {s.name: s.sha256 for s in subjects})
    logs = {
        f"{writer.LOGS}/{name}": safeio.sha256_file(staging.logs / name)
        for name in ("stdout.log", "stderr.log")
    }
    job_meta, ignored = safeio.read_small_files(
        reports,
        names=REPORT_NAME_RE,
        cap=REPORT_CAP,
        most=MAX_REPORTS,
        expected=f"a report name (at most {MAX_REPORTS} *.json)",
    )
    safeio.rmtree(reports)
    scratch = staging.scratch.finish(say) if staging.scratch is not None else None
    checkpoint = staging.checkpoint.finish() if staging.checkpoint is not None else None
    if os.geteuid() == 0:
        safeio.chown_tree(outputs, 0, 0)
    if staging.git_cover is not None:
        safeio.rmtree(staging.git_cover)
    return Collected(
        tuple(subjects),
        job_meta,
        tuple(ignored),
        tuple(excluded),
        # keyed as the Statement names them (``outputs/``, ``outputs/model/``)
        {f"{writer.OUTPUTS}/{name}": digest for name, digest in trees.items()},
        logs,
        scratch,
        checkpoint,
    )
