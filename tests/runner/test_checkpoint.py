"""``[checkpoint]``: a directory the job resumes from, kept across a scheduler's attempts,
each attempt's record signing the tree it started from and the one it left; and the time
the job is given to write it when asked to stop."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from executor import runner, snapshot, spec
from executor.errors import InputError, SpecError
from executor.runtime import ContainerRequest, ContainerResult, LogSink
from executor.signing import SignOptions
from tests.fakes import FakeRuntime

SPEC = """
version = 1
name = "ckpt"
[image]
build = { dockerfile = "img/Dockerfile", context = "img", allow_unpinned_from = true }
[run]
command = ["train"]
seed = 1
[checkpoint]
mount = "/checkpoint"
grace = "45s"
[determinism]
frameworks = []
"""


class StepRuntime(FakeRuntime):
    """A job that takes one step from its checkpoint each attempt: what a trainer does."""

    def run(self, request: ContainerRequest, sink: LogSink) -> ContainerResult:
        self.requests.append(request)
        by_target = {m.target: m.source for m in request.mounts}
        state = Path(by_target["/checkpoint"]) / "state.json"
        step = json.loads(state.read_text())["step"] if state.exists() else 0
        state.write_text(json.dumps({"step": step + 1}))
        (Path(by_target[request.env["REXEC_OUTPUTS"]]) / "step.txt").write_text(str(step + 1))
        now = datetime.now(UTC)
        return ContainerResult(0, now, now, False, False, "fake")


def run_spec(tmp_path: Path) -> spec.RunSpec:
    (tmp_path / "img").mkdir(exist_ok=True)
    (tmp_path / "img" / "Dockerfile").write_text("FROM scratch\n")
    return spec.loads(SPEC.encode(), source=tmp_path / "spec.toml")


def attempt(tmp_path: Path, kept: Path | None, engine: StepRuntime) -> dict[str, object]:
    options = runner.RunOptions(
        runs_dir=tmp_path / "runs",
        sign=SignOptions(method="none"),
        echo_logs=False,
        checkpoint_dir=kept,
    )
    result = runner.run(run_spec(tmp_path), options=options, runtime=engine)
    statement = json.loads((result.run_dir / "statement.json").read_bytes())
    found: dict[str, object] = statement["predicate"]["buildDefinition"]["internalParameters"][
        "checkpoint"
    ]
    return found


def test_a_kept_checkpoint_carries_one_attempt_into_the_next_and_each_record_signs_it(
    tmp_path: Path,
) -> None:
    kept = tmp_path / "submission" / "checkpoint-0"
    engine = StepRuntime()
    first = attempt(tmp_path, kept, engine)
    second = attempt(tmp_path, kept, engine)
    assert json.loads((kept / "state.json").read_text()) == {"step": 2}
    empty = tmp_path / "empty"
    empty.mkdir()
    assert first["start"] == snapshot.hash_tree(empty, use_cache=False).digest
    assert first["end"] == second["start"] != second["end"]  # the chain of attempts
    assert second["end"] == snapshot.hash_tree(kept, use_cache=False).digest
    assert (first["mount"], first["kept"]) == ("/checkpoint", True)
    request = engine.requests[0]
    assert request.stop_grace_s == 45.0
    (mount,) = [m for m in request.mounts if m.target == "/checkpoint"]
    assert mount.source == kept and not mount.read_only


def test_without_a_scheduler_the_checkpoint_is_fresh_and_not_kept(tmp_path: Path) -> None:
    engine = StepRuntime()
    first = attempt(tmp_path, None, engine)
    again = attempt(tmp_path, None, engine)
    assert first["start"] == again["start"] and first["end"] == again["end"]
    assert first["kept"] is False
    records = sorted((tmp_path / "runs").iterdir())
    assert all(not (r / ".checkpoint").exists() for r in records)


def test_a_checkpoint_directory_that_is_a_link_is_refused_before_any_container(
    tmp_path: Path,
) -> None:
    """Shared storage is writable by whoever can write there: a link planted where the
    checkpoint goes would hand the job another directory (and rexec's chown with it)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    kept = tmp_path / "submission" / "checkpoint-0"
    kept.parent.mkdir()
    kept.symlink_to(elsewhere)
    engine = StepRuntime()
    with pytest.raises(InputError, match="checkpoint-0: the checkpoint directory is not a dir"):
        attempt(tmp_path, kept, engine)
    assert engine.requests == [] and list(elsewhere.iterdir()) == []


def test_a_spec_without_checkpoint_is_stopped_at_once_and_records_none(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "Dockerfile").write_text("FROM scratch\n")
    plain = SPEC.split("[checkpoint]")[0] + "[determinism]\nframeworks = []\n"
    engine = FakeRuntime()
    options = runner.RunOptions(
        runs_dir=tmp_path / "runs", sign=SignOptions(method="none"), echo_logs=False
    )
    result = runner.run(
        spec.loads(plain.encode(), source=tmp_path / "s.toml"), options=options, runtime=engine
    )
    assert engine.requests[0].stop_grace_s == 0.0
    statement = json.loads((result.run_dir / "statement.json").read_bytes())
    assert "checkpoint" not in statement["predicate"]["buildDefinition"]["internalParameters"]


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('mount = "relative"', "checkpoint.mount: expected an absolute container path"),
        ('mount = "/outputs/ckpt"', "checkpoint.mount: /outputs/ckpt nests with"),
        ('mount = "/proc/c"', "checkpoint.mount: /proc/c is under /proc"),
        ('mount = "/c"\ngrace = "20m"', "checkpoint.grace: expected 1 s to 600 s"),
        ('mount = "/c"\ngrace = "soon"', "checkpoint.grace:"),
        ('grace = "10s"', "checkpoint.mount:"),
    ],
)
def test_a_bad_checkpoint_table_names_its_key(tmp_path: Path, table: str, expected: str) -> None:
    text = SPEC.replace('mount = "/checkpoint"\ngrace = "45s"', table)
    with pytest.raises(SpecError) as info:
        spec.loads(text.encode(), source=tmp_path / "s.toml")
    assert expected in info.value.render()


def test_a_sigterm_the_scheduler_says_is_a_preemption_is_recorded_preempted() -> None:
    from executor.errors import Interrupted
    from executor.runner.collect import status_of

    now = datetime.now(UTC)
    ended = ContainerResult(None, now, now, False, False, "")
    told = Interrupted("SIGTERM", preempted_by="Slurm is pre-empting the job")
    assert status_of(ended, interrupted=told).status == "preempted"
    assert status_of(ended, interrupted=Interrupted("SIGTERM")).status == "interrupted"
    assert status_of(ended, interrupted=Interrupted("SIGUSR2")).status == "preempted"
