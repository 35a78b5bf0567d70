"""``rexec status`` at cluster scale: one squeue and at most one sacct per poll however many
runs are tracked, what a failure shows, every attempt's log kept, and the records alone
when the controller does not answer."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pytest

from executor.cluster import JobState, SiteOptions, Slurm, Submission, SweepTask, poll, tracked
from executor.cluster.submit import render_script


class CountingSlurm(Slurm):
    """Slurm's answers without a controller: the queue and accounting as given, each call
    counted (the seam `scripts/bench submit` measures against a real cluster)."""

    def __init__(self, queue: dict[str, JobState], accounting: dict[str, JobState]) -> None:
        super().__init__({})
        self._queue, self._accounting = queue, accounting

    def queue(self, user: str | None = None) -> dict[str, JobState]:
        self.calls.append("squeue")
        return self._queue

    def accounting(self, job_ids: Iterable[str]) -> dict[str, JobState] | None:
        self.calls.append("sacct")
        return {j: self._accounting[j] for j in job_ids if j in self._accounting}


def submission(runs: Path, n: int, *, tasks: int = 1) -> Submission:
    sub = Submission(
        run_id=f"20261201T000000Z-t-{n:06d}",
        spec_path="-",
        spec_sha256="-",
        runs_dir=str(runs),
        site=SiteOptions(),
        sign={},
        tasks=tuple(SweepTask(seed=i) for i in range(tasks)),
        job_id=str(1000 + n),
    )
    sub.directory.mkdir(parents=True)
    (sub.directory / "submission.json").write_bytes(sub.encoded())
    sub.save_job_id(str(1000 + n))
    return sub


def record(runs: Path, run_id: str, status: str, exit_code: int, stderr: str = "") -> Path:
    path = runs / run_id
    (path / "logs").mkdir(parents=True)
    (path / "record.json").write_text(json.dumps({"status": status, "exitCode": exit_code}))
    (path / "logs" / "stderr.log").write_text(stderr)
    return path


def test_a_hundred_tracked_runs_cost_one_squeue_and_one_sacct_per_poll(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    subs = [submission(runs, n, tasks=1 + n % 3) for n in range(100)]
    live = {"1000": JobState("1000", "RUNNING")}
    done = {s.job_ref(t): JobState(s.job_ref(t), "COMPLETED") for s in subs[1:] for t in (0, 1, 2)}
    slurm = CountingSlurm(live, done)
    found = poll(subs, slurm)
    assert slurm.calls == ["squeue", "sacct"]
    assert len(found) == 100 and found[subs[0].run_id][0].state == "RUNNING"
    assert [t.job_id for t in found[subs[2].run_id]] == ["1002_0", "1002_1", "1002_2"]


def test_every_tracked_submission_is_found_and_a_linked_one_is_not(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    subs = [submission(runs, n) for n in range(3)]
    elsewhere = tmp_path / "elsewhere"
    subs[0].directory.rename(elsewhere)
    subs[0].directory.symlink_to(elsewhere)  # planted on shared storage
    unqueued = submission(runs, 9)
    (unqueued.directory / "job-id").unlink()  # sbatch never answered
    assert [s.run_id for s in tracked(runs)] == [s.run_id for s in subs[1:]]
    assert tracked(tmp_path / "nothing-here") == []


def test_a_failure_shows_its_exit_code_signal_and_last_error_line(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    ran, killed = submission(runs, 1), submission(runs, 2)
    record(runs, ran.run_id, "failed", 3, "Traceback…\nValueError: loss is nan\n\n")
    (killed.directory / "slurm-1002.out").write_text("rexec: starting\nslurmstepd: OOM\n")
    accounting = {
        "1001": JobState("1001", "FAILED", "NonZeroExitCode", 1, 0),
        "1002": JobState("1002", "OUT_OF_MEMORY", "", 0, 9),
    }
    found = poll([ran, killed], CountingSlurm({}, accounting))
    (first,) = found[ran.run_id]
    assert (first.job_exit, first.job_signal, first.last_error) == (
        3,  # the job's own exit code, from its record, not rexec's
        None,
        "ValueError: loss is nan",
    )
    (second,) = found[killed.run_id]
    assert (second.record, second.job_signal, second.last_error) == (None, 9, "slurmstepd: OOM")
    assert first.exit_code == second.exit_code == 5


def test_a_linked_log_is_not_read(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    sub = submission(runs, 1)
    secret = tmp_path / "secret.txt"
    secret.write_text("the key\n")
    (sub.directory / "slurm-1001.out").symlink_to(secret)
    (task,) = poll([sub], CountingSlurm({}, {"1001": JobState("1001", "FAILED")}))[sub.run_id]
    assert task.failed and task.last_error == ""


def test_without_the_controller_the_records_on_disk_answer(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    good, bad, pending = (submission(runs, n) for n in range(3))
    record(runs, good.run_id, "succeeded", 0)
    record(runs, bad.run_id, "preempted", 143)
    found = poll([good, bad, pending], None)
    states = [(t.state, t.record_status) for run in found.values() for t in run]
    assert states == [("COMPLETED", "succeeded"), ("FAILED", "preempted"), ("UNKNOWN", None)]


def test_a_pruned_regeneration_step_ends_well_and_one_after_a_failure_ends(
    tmp_path: Path,
) -> None:
    """A regeneration job that ran nothing (pruned) is settled and not a failure; a job
    queued after one that failed is pending for ever in Slurm: status --wait ends on it."""
    runs = tmp_path / "runs"
    pruned, after_failure, still_waiting = (submission(runs, n) for n in range(3))
    (pruned.directory / "pruned.json").write_text(json.dumps({"reason": "unchanged"}))
    queue = {
        "1001": JobState("1001", "PENDING", "DependencyNeverSatisfied"),
        "1002": JobState("1002", "PENDING", "Dependency"),
    }
    found = poll(
        [pruned, after_failure, still_waiting],
        CountingSlurm(queue, {"1000": JobState("1000", "COMPLETED")}),
    )
    ((done,), (never,), (waiting,)) = found.values()
    assert (done.record_status, done.settled, done.failed) == ("pruned", True, False)
    assert (never.finished, never.settled, never.failed) == (True, True, True)
    assert not waiting.finished


def test_each_attempt_keeps_its_own_log(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    sub = submission(runs, 1)
    for restart in (10, 2, 1):
        (sub.directory / f"slurm-1001-r{restart}.out").write_text(f"attempt {restart}\n")
    names = [p.name for p in sub.logs(None)]
    assert names == [
        "slurm-1001.out",
        "slurm-1001-r1.out",
        "slurm-1001-r2.out",
        "slurm-1001-r10.out",
    ]
    script = render_script(sub, name="t", export=[], sha256="f" * 64)
    assert "#SBATCH --open-mode=append" in script  # Slurm never truncates the first
    assert '"slurm-${SLURM_JOB_ID}-r$restart.out"' in script


def test_a_fifo_where_a_log_should_be_neither_blocks_nor_is_read(tmp_path: Path) -> None:
    """The job owner controls the submission dir: a FIFO in place of the Slurm log would
    hang a reader that opens it blocking."""
    import os

    runs = tmp_path / "runs"
    sub = submission(runs, 1)
    os.mkfifo(sub.directory / "slurm-1001.out")
    (task,) = poll([sub], CountingSlurm({}, {"1001": JobState("1001", "FAILED")}))[sub.run_id]
    assert task.failed and task.last_error == ""


def test_a_run_id_planted_with_terminal_escapes_is_shown_inert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rexec status` with no run shows every submission under the shared runs dir,
    whoever wrote it: its run id must not reach the terminal as escape sequences."""
    import argparse

    from executor.cli import status as cli

    runs = tmp_path / "runs"
    evil = submission(runs, 1)
    evil.run_id = "x\x1b]0;owned\x07"
    (runs / ".rexec-jobs" / evil.run_id).mkdir()
    (runs / ".rexec-jobs" / evil.run_id / "submission.json").write_bytes(evil.encoded())
    (runs / ".rexec-jobs" / evil.run_id / "job-id").write_text("1001\n")
    monkeypatch.setattr(
        "executor.cluster.Slurm", lambda: CountingSlurm({"1001": JobState("1001", "RUNNING")}, {})
    )
    args = argparse.Namespace(refs=[], runs_dir=runs, wait=False, json=False)
    assert cli.handle(args) == 0
    shown = capsys.readouterr().out
    assert "\x1b" not in shown and "\x07" not in shown and "owned" in shown
