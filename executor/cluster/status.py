"""``rexec status``: where each task of a submission stands, from as few Slurm calls as possible.

The truth about a finished task is its signed record on shared storage, as
with Nextflow's exit files: Slurm's state says what the scheduler did
(COMPLETED, TIMEOUT, PREEMPTED…), the record says what the job did. So:
one ``squeue`` for every task still known to the controller, one ``sacct``
for those that left it, and, on a cluster without accounting, the records
alone. ``sbatch --wait`` is never used: it returns 0 for a cancelled job.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executor import safeio
from executor.cluster.slurm import JobState, Slurm
from executor.cluster.submission import JOBS_DIR, REFUSED, Submission, load_submission
from executor.errors import ExitCode, InputError

__all__ = ["TaskStatus", "find_submission", "poll", "wait"]

LIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING"}
FAILED = {
    "FAILED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "CANCELLED",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "REVOKED",
}


@dataclass(frozen=True)
class TaskStatus:
    """One task (or the whole job, without a sweep): Slurm's view and the record's."""

    task: int | None
    job_id: str  # "123", or "123_4" for an array task
    state: str  # Slurm's state, or UNKNOWN when neither queue nor accounting knows it
    reason: str
    record: Path | None  # the newest record of this task (a requeue adds attempts)
    record_status: str | None

    @property
    def finished(self) -> bool:
        """Out of the queue: a final state, or a record with no live state."""
        return self.state not in LIVE

    @property
    def exit_code(self) -> int:
        """0 only for a succeeded record; 5 for any failed state or record."""
        if not self.finished:
            return int(ExitCode.OK)
        if self.record_status == "succeeded" and self.state not in FAILED:
            return int(ExitCode.OK)
        return int(ExitCode.JOB_FAILED)

    def to_json(self) -> dict[str, Any]:
        """The JSON form of ``rexec status --json``."""
        return {
            "task": self.task,
            "jobId": self.job_id,
            "state": self.state,
            "reason": self.reason,
            "record": str(self.record) if self.record else None,
            "recordStatus": self.record_status,
            "finished": self.finished,
        }


def find_submission(ref: str, runs_dir: Path) -> Submission:
    """A submission by run id, job id, or array task id (``123_4``) under ``runs_dir``."""
    jobs = runs_dir / JOBS_DIR
    if (jobs / ref).is_dir():
        return load_submission(jobs / ref)
    job = ref.split("_", 1)[0]
    index = jobs / "by-job" / job
    if job.isdigit() and index.is_file():
        run_id = safeio.read_capped(index, cap=4096).decode().strip()
        return load_submission(jobs / run_id)
    raise InputError(
        f"{ref}: no submission with that run id or job id under {runs_dir}",
        hint="pass the --runs-dir the job was submitted with; `ls RUNS_DIR/.rexec-jobs` lists them",
    )


def _task_ids(sub: Submission) -> list[tuple[int | None, str]]:
    assert sub.job_id is not None
    if not sub.is_array:
        return [(None, sub.job_id)]
    return [(i, f"{sub.job_id}_{i}") for i in range(len(sub.tasks))]


def refusal(sub: Submission) -> str | None:
    """Why a node refused the submission (it was changed while queued), if one did."""
    try:
        doc = json.loads(safeio.read_capped(sub.directory / REFUSED, cap=1 << 16))
    except (OSError, ValueError, safeio.UnsafeFile):
        return None
    return str(doc.get("reason")) if isinstance(doc, dict) else None


def _newest_record(sub: Submission, task: int | None) -> tuple[Path | None, str | None]:
    """This task's record of the latest attempt, and the status it signed."""
    base = sub.task_run_id(task, 0)
    runs = Path(sub.runs_dir)
    found = [p for p in runs.glob(f"{base}*") if p.name == base or p.name.startswith(base + "-r")]
    if not found:
        return None, "refused" if refusal(sub) is not None else None

    def attempt(p: Path) -> int:
        tail = p.name.removeprefix(base).removeprefix("-r")
        return int(tail) if tail.isdigit() else 0

    newest = max(found, key=attempt)
    try:
        doc = json.loads(safeio.read_capped(newest / "record.json", cap=1 << 20))
        return newest, str(doc.get("status"))
    except (OSError, ValueError, safeio.UnsafeFile):
        return newest, None


def poll(subs: Sequence[Submission], slurm: Slurm) -> dict[str, list[TaskStatus]]:
    """Every task of every submission: one squeue, at most one sacct, then the records."""
    queue = slurm.queue()
    wanted = [(sub, task, job) for sub in subs for task, job in _task_ids(sub)]
    gone = [job for _, _, job in wanted if job not in queue]
    accounting = slurm.accounting(gone) if gone else {}
    found: dict[str, list[TaskStatus]] = {sub.run_id: [] for sub in subs}
    for sub, task, job in wanted:
        state: JobState | None = queue.get(job) or (accounting or {}).get(job)
        record, record_status = _newest_record(sub, task)
        if record_status == "refused" and state is None:
            state = JobState(job, "FAILED", f"refused: {refusal(sub)}")
        if state is None:
            # No accounting (or not yet): the record on shared storage is the truth.
            name = "COMPLETED" if record_status == "succeeded" else "UNKNOWN"
            if record_status not in (None, "succeeded"):
                name = "FAILED"
            state = JobState(job, name, "from the record" if record else "not in the queue")
        found[sub.run_id].append(
            TaskStatus(task, job, state.state, state.reason, record, record_status)
        )
    return found


def wait(
    sub: Submission,
    slurm: Slurm,
    *,
    on_change: Callable[[list[TaskStatus]], None],
    first_s: float = 1.0,
    max_s: float = 60.0,
) -> list[TaskStatus]:
    """Poll until every task has finished, backing off from ``first_s`` to ``max_s``."""
    delay = first_s
    last: list[TaskStatus] | None = None
    unknown_polls = 0
    while True:
        tasks = poll([sub], slurm)[sub.run_id]
        if tasks != last:
            on_change(tasks)
            last = tasks
        # A task that has left the queue but whose record has not landed yet is not done;
        # one that nothing knows of (no queue entry, no accounting, no record) for a few
        # polls is reported as it is.
        unknown_polls = unknown_polls + 1 if any(t.state == "UNKNOWN" for t in tasks) else 0
        settled = all(t.finished and (t.record is not None or t.state in FAILED) for t in tasks)
        if settled or (unknown_polls >= 5 and all(t.finished for t in tasks)):
            return tasks
        time.sleep(delay)
        delay = min(max_s, delay * 1.5)
