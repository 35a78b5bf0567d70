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
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from executor import safeio
from executor.cluster.rerun import pruned
from executor.cluster.slurm import JobState, Slurm
from executor.cluster.submission import (
    JOBS_DIR,
    REFUSED,
    SUBMISSION,
    Submission,
    load_submission,
)
from executor.errors import ExitCode, InputError, RexecError

__all__ = ["TaskStatus", "find_submission", "poll", "tracked", "wait"]

TAIL = 1 << 16  # how much of a log's end is read for its last line
MAX_LINE = 300
UNKNOWN_POLLS = 10  # polls before a task nothing knows of is reported as it is
# A job queued after one that failed (afterok): Slurm keeps it pending for ever.
NEVER = "DependencyNeverSatisfied"

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
    job_exit: int | None = None  # the job's exit code: its record's, else Slurm's
    job_signal: int | None = None  # the signal that ended it, as Slurm accounts it
    last_error: str = ""  # a failed task's last line of stderr (its record's, else Slurm's log)

    @property
    def never(self) -> bool:
        """Pending after a job that failed: it will never start (``rexec cancel`` it)."""
        return self.state == "PENDING" and self.reason == NEVER

    @property
    def finished(self) -> bool:
        """Out of the queue (a final state, or a record with no live state), or never to
        start."""
        return self.state not in LIVE or self.never

    @property
    def failed(self) -> bool:
        """Ended other than succeeded (or pruned: a regeneration step with nothing to do)."""
        ended_well = self.record_status in ("succeeded", "pruned")
        return self.finished and (not ended_well or self.state in FAILED or self.never)

    @property
    def settled(self) -> bool:
        """Finished, with what shared storage says of it landed (or Slurm's failure)."""
        told = self.record is not None or self.record_status == "pruned"
        return self.finished and (told or self.state in FAILED or self.never)

    @property
    def exit_code(self) -> int:
        """0 only for a succeeded record; 5 for any failed state or record."""
        return int(ExitCode.JOB_FAILED if self.failed else ExitCode.OK)

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
            "exitCode": self.job_exit,
            "signal": self.job_signal,
            "lastError": self.last_error or None,
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


def tracked(runs_dir: Path) -> list[Submission]:
    """Every submission under ``runs_dir`` that Slurm accepted, oldest run id first."""
    jobs = runs_dir / JOBS_DIR
    if not jobs.is_dir():
        return []
    found = []
    for directory in sorted(jobs.iterdir()):
        if directory.is_symlink() or not (directory / SUBMISSION).is_file():
            continue
        try:
            sub = load_submission(directory)
        except RexecError:
            continue  # another rexec's, or damaged: `rexec status RUN_ID` says which
        if sub.job_id is not None:
            found.append(sub)
    return found


def _task_ids(sub: Submission) -> list[tuple[int | None, str]]:
    tasks: list[int | None] = list(range(len(sub.tasks))) if sub.is_array else [None]
    return [(task, sub.job_ref(task)) for task in tasks]


def refusal(sub: Submission) -> str | None:
    """Why a node refused the submission (it was changed while queued), if one did."""
    try:
        doc = json.loads(safeio.read_capped(sub.directory / REFUSED, cap=1 << 16))
    except (OSError, ValueError, safeio.UnsafeFile):
        return None
    return str(doc.get("reason")) if isinstance(doc, dict) else None


@dataclass(frozen=True)
class _Record:
    """A task's newest attempt on shared storage, as its record.json says."""

    path: Path | None = None
    status: str | None = None
    exit_code: int | None = None


def _newest_record(sub: Submission, task: int | None) -> _Record:
    """This task's record of the latest attempt, and the status it signed."""
    base = sub.task_run_id(task, 0)
    runs = Path(sub.runs_dir)
    found = [p for p in runs.glob(f"{base}*") if p.name == base or p.name.startswith(base + "-r")]
    if not found:
        if refusal(sub) is not None:
            return _Record(status="refused")
        return _Record(status="pruned" if pruned(sub.directory) is not None else None)

    def attempt(p: Path) -> int:
        tail = p.name.removeprefix(base).removeprefix("-r")
        return int(tail) if tail.isdigit() else 0

    newest = max(found, key=attempt)
    try:
        doc = json.loads(safeio.read_capped(newest / "record.json", cap=1 << 20))
    except (OSError, ValueError, safeio.UnsafeFile):
        return _Record(newest)
    code = doc.get("exitCode")
    return _Record(newest, str(doc.get("status")), code if isinstance(code, int) else None)


def _last_line(paths: Sequence[Path]) -> str:
    """The last non-blank line of the first of ``paths`` that has one (read from its end,
    never through a link), cut to one screen line."""
    for path in paths:
        try:
            fd = safeio.open_regular(path)
        except (OSError, safeio.UnsafeFile):
            continue
        try:
            size = os.fstat(fd).st_size
            tail = os.pread(fd, TAIL, max(0, size - TAIL))
        finally:
            os.close(fd)
        lines = [line.strip() for line in tail.decode(errors="replace").splitlines()]
        for line in reversed(lines):
            if line:
                return line[:MAX_LINE]
    return ""


def poll(subs: Sequence[Submission], slurm: Slurm | None) -> dict[str, list[TaskStatus]]:
    """Every task of every submission: one squeue, at most one sacct, then the records.
    Without ``slurm`` (its controller is down), the records alone."""
    queue = slurm.queue() if slurm is not None else {}
    wanted = [(sub, task, job) for sub in subs for task, job in _task_ids(sub)]
    gone = [job for _, _, job in wanted if job not in queue]
    accounting = slurm.accounting(gone) if gone and slurm is not None else {}
    found: dict[str, list[TaskStatus]] = {sub.run_id: [] for sub in subs}
    for sub, task, job in wanted:
        state: JobState | None = queue.get(job) or (accounting or {}).get(job)
        record = _newest_record(sub, task)
        if record.status == "refused" and state is None:
            state = JobState(job, "FAILED", f"refused: {refusal(sub)}")
        if state is None:
            # No accounting (or not yet): the record on shared storage is the truth.
            name = "COMPLETED" if record.status in ("succeeded", "pruned") else "UNKNOWN"
            if record.status not in (None, "succeeded", "pruned"):
                name = "FAILED"
            state = JobState(job, name, "from the record" if record.path else "not in the queue")
        status = TaskStatus(
            task,
            job,
            state.state,
            state.reason,
            record.path,
            record.status,
            record.exit_code if record.exit_code is not None else state.exit_code,
            state.signal or None,
        )
        if status.failed:
            job_stderr = [record.path / "logs" / "stderr.log"] if record.path else []
            logs = [*job_stderr, *reversed(sub.logs(task))]
            status = replace(status, last_error=_last_line(logs))
        found[sub.run_id].append(status)
    return found


def wait(
    subs: Sequence[Submission],
    slurm: Slurm,
    *,
    on_change: Callable[[Submission, list[TaskStatus]], None],
    every_s: float = 1.0,
) -> dict[str, list[TaskStatus]]:
    """Poll every ``every_s`` until every task of every submission has finished: one
    ``squeue`` (and at most one ``sacct``) per poll, whatever their number, so an end is
    noticed within ``every_s`` of Slurm (or the record) saying so."""
    last: dict[str, list[TaskStatus]] = {}
    unknown_polls = 0
    while True:
        found = poll(subs, slurm)
        for sub in subs:
            if found[sub.run_id] != last.get(sub.run_id):
                on_change(sub, found[sub.run_id])
        last = found
        tasks = [t for run in found.values() for t in run]
        # A task that has left the queue but whose record has not landed yet is not done;
        # one that nothing knows of (no queue entry, no accounting, no record) for a few
        # polls is reported as it is.
        unknown_polls = unknown_polls + 1 if any(t.state == "UNKNOWN" for t in tasks) else 0
        if all(t.settled for t in tasks) or (
            unknown_polls >= UNKNOWN_POLLS and all(t.finished for t in tasks)
        ):
            return found
        time.sleep(every_s)
