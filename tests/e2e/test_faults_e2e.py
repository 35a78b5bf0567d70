"""Faults with real parts: signals to `rexec run`, a killed engine, a full or read-only
runs directory, a registry that is down, inputs changed under a running job, and eight
runs at once. After each: no orphan container, no leaked volume, a truthful record or
a clear error, and the next run works.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import pytest

from executor.errors import ExitCode
from tests.e2e.conftest import REPO, Project, Rexec, exit_status

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

STATE_DIR = Path(os.environ.get("REXEC_STATE_DIR", "/var/lib/rexec-dev"))
SLEEPER = """\
import os, time
open(os.path.join(os.environ["REXEC_OUTPUTS"], "started"), "w").write("x")
print("job started", flush=True)
time.sleep(120)
"""


def containers_of(spec: Path) -> list[docker.models.containers.Container]:
    return docker.from_env().containers.list(all=True, filters={"label": f"dev.rexec.spec={spec}"})


def volumes() -> set[str]:
    return {v.name for v in docker.from_env().volumes.list()}


def start_run(rexec: Rexec, spec: Path, key: Path, runs: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "executor", "run", spec, "--signing-key", key, "--runs-dir", runs],
        env=rexec.env,
        cwd=rexec.cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_job(runs: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list(runs.glob(".*.partial/outputs/started")):
            return
        if proc.poll() is not None:
            raise AssertionError(f"rexec ended early: {proc.communicate()}")
        time.sleep(0.1)
    raise AssertionError("the job did not start")


@pytest.fixture
def sleeper(project: Project) -> Path:
    project.write_code("sleep.py", SLEEPER)
    return project.spec(["python3", "/code/sleep.py"])


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)]
)
def test_a_signal_stops_the_job_and_signs_an_interrupted_record(
    rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path, sleeper: Path, signum: int, code: int
) -> None:
    runs = tmp_path / "runs"
    before = volumes()
    proc = start_run(rexec, sleeper, keys[0], runs)
    wait_for_job(runs, proc)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert f"interrupted ({signal.Signals(signum).name})" in stderr
    (record,) = runs.iterdir()  # the record, and no .partial left
    status = exit_status(record)
    assert status["status"] == "interrupted"
    assert status["reason"] == f"rexec received {signal.Signals(signum).name}"
    assert containers_of(sleeper) == []
    assert volumes() <= before
    rexec("verify", record, "--key", keys[1], check=ExitCode.JOB_FAILED)  # no success
    rexec("verify", record, "--key", keys[1], "--allow-failed")


def test_after_sigkill_gc_removes_the_orphan_container_and_partial_record(
    rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path, sleeper: Path, project: Project
) -> None:
    runs = tmp_path / "runs"
    proc = start_run(rexec, sleeper, keys[0], runs)
    wait_for_job(runs, proc)
    proc.kill()
    proc.wait(timeout=30)
    assert len(containers_of(sleeper)) == 1  # the engine owns it: it outlives rexec
    (partial,) = runs.glob(".*.partial")
    dry = json.loads(rexec("gc", "--runs-dir", runs, "--dry-run", "--json").stdout)
    assert [p["path"] for p in dry["partials"]] == [str(partial)]
    assert len(dry["containers"]) >= 1 and partial.exists()
    out = rexec("gc", "--runs-dir", runs)
    assert "its rexec is gone" in out.stdout
    assert containers_of(sleeper) == [] and not partial.exists()
    assert rexec("gc", "--runs-dir", runs).stdout.strip() == "nothing to remove"
    project.write_code("ok.py", "print('fine')\n")
    rexec.run(project.spec(["python3", "/code/ok.py"]), keys[0], runs)


def test_gc_never_touches_a_run_in_progress(
    rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path, sleeper: Path
) -> None:
    runs = tmp_path / "runs"
    proc = start_run(rexec, sleeper, keys[0], runs)
    try:
        wait_for_job(runs, proc)
        doc = json.loads(rexec("gc", "--runs-dir", runs, "--json").stdout)
        assert doc["partials"] == [] and doc["containers"] == []
        assert len(containers_of(sleeper)) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


def test_inputs_changed_under_the_job_fail_the_run_naming_the_file(
    rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path, project: Project
) -> None:
    project.write_code("wait.py", SLEEPER.replace("time.sleep(120)", "time.sleep(3)"))
    spec = project.spec(["python3", "/code/wait.py"])
    runs = tmp_path / "runs"
    proc = start_run(rexec, spec, keys[0], runs)
    wait_for_job(runs, proc)
    (project.data / "numbers.txt").write_text("1\n2\nTAMPERED\n")
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.MISMATCH, stderr
    assert "input 'data'" in stderr and "changed while the job ran" in stderr
    (record,) = runs.iterdir()
    status = exit_status(record)
    assert status["status"] == "failed" and "numbers.txt" in " ".join([status["reason"], stderr])


def test_a_runs_dir_inside_an_input_is_refused_before_any_container(
    rexec: Rexec,
    keys: tuple[Path, Path],
    project: Project,
    job_containers_created: Callable[[Path], list[object]],
) -> None:
    project.write_code("ok.py", "print('fine')\n")
    spec = project.spec(["python3", "/code/ok.py"])
    out = rexec(
        "run",
        spec,
        "--signing-key",
        keys[0],
        "--runs-dir",
        project.data / "runs",
        check=ExitCode.BAD_INPUT,
    )
    assert "overlaps inputs[0].path" in out.stderr and "hint:" in out.stderr
    assert not (project.data / "runs").exists()
    assert job_containers_created(spec) == []


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount a small tmpfs for a runs directory (tests run as root in CI)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    made: list[Path] = []

    def mount(options: str) -> Path:
        target = tmp_path / f"mnt{len(made)}"
        target.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], check=True)
        made.append(target)
        return target

    yield mount
    for target in made:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_a_read_only_runs_dir_fails_before_any_container(
    rexec: Rexec,
    keys: tuple[Path, Path],
    project: Project,
    mounted: Callable[[str], Path],
    job_containers_created: Callable[[Path], list[object]],
) -> None:
    runs = mounted("ro,size=1m")
    project.write_code("ok.py", "print('fine')\n")
    spec = project.spec(["python3", "/code/ok.py"])
    out = rexec("run", spec, "--signing-key", keys[0], "--runs-dir", runs, check=ExitCode.BAD_INPUT)
    assert f"cannot write the run record under {runs}" in out.stderr
    assert "Read-only file system" in out.stderr and "Traceback" not in out.stderr
    assert job_containers_created(spec) == []


def test_a_runs_dir_that_fills_up_gives_a_clear_error_and_leaves_nothing(
    rexec: Rexec,
    keys: tuple[Path, Path],
    project: Project,
    mounted: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    runs = mounted("size=2m")
    project.write_code(
        "fill.py",
        "import os\nwith open(os.path.join(os.environ['REXEC_OUTPUTS'], 'big'), 'wb') as f:\n"
        "    try:\n        f.write(b'x' * (4 << 20))\n    except OSError:\n        pass\n",
    )
    spec = project.spec(["python3", "/code/fill.py"])
    out = rexec("run", spec, "--signing-key", keys[0], "--runs-dir", runs, check=None)
    assert out.code in (ExitCode.JOB_FAILED, ExitCode.INFRASTRUCTURE), out.stderr
    assert "Traceback" not in out.stderr
    if out.code == ExitCode.INFRASTRUCTURE:
        assert f"cannot write the run record under {runs}" in out.stderr
        assert list(runs.iterdir()) == []  # nothing half-written
    else:  # the record fit: it must be complete and verify
        (record,) = runs.iterdir()
        rexec("verify", record, "--key", keys[1], "--allow-failed")
    assert containers_of(spec) == []
    rexec.run(spec.parent / spec.name, keys[0], tmp_path / "runs-after", check=None)


def test_eight_concurrent_runs_into_one_runs_dir_all_land(
    rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path, project: Project
) -> None:
    project.write_code(
        "ok.py",
        "import os\nopen(os.path.join(os.environ['REXEC_OUTPUTS'], 'o'), 'w').write(os.environ['REXEC_RUN_ID'])\n",
    )
    spec = project.spec(["python3", "/code/ok.py"])
    runs = tmp_path / "runs"
    rexec.run(spec, keys[0], runs)  # builds the image once, so the eight only run
    with ThreadPoolExecutor(8) as pool:
        dirs = list(pool.map(lambda _: rexec.run(spec, keys[0], runs, "-q"), range(8)))
    assert len(set(dirs)) == 8
    assert len([p for p in runs.iterdir() if not p.name.startswith(".")]) == 9
    assert not list(runs.glob(".*"))
    for record in dirs:
        rexec("verify", record, "--key", keys[1])


def _restart_engine() -> None:
    """What a user does after the engine died: scripts/setup starts whatever is down."""
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "setup")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"scripts/setup could not restart the engine:\n{proc.stderr}"


def test_an_engine_killed_mid_run_is_an_infrastructure_failure(
    rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path, sleeper: Path, project: Project
) -> None:
    pidfile = STATE_DIR / "dockerd.pid"
    if not pidfile.is_file():
        pytest.skip(f"{pidfile} is missing: this engine was not started by scripts/setup")
    runs = tmp_path / "runs"
    proc = start_run(rexec, sleeper, keys[0], runs)
    try:
        wait_for_job(runs, proc)
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        _restart_engine()
    assert proc.returncode == ExitCode.INFRASTRUCTURE, stderr
    assert "stopped answering" in stderr and "Traceback" not in stderr
    (record,) = runs.iterdir()
    assert exit_status(record)["status"] == "infrastructure-failed"
    rexec("verify", record, "--key", keys[1], "--allow-failed")
    rexec("gc", "--runs-dir", runs)
    assert containers_of(sleeper) == []
    project.write_code("ok.py", "print('fine')\n")
    rexec.run(project.spec(["python3", "/code/ok.py"]), keys[0], runs)


def test_a_registry_that_is_down_is_an_infrastructure_error_for_lock_and_run(
    rexec: Rexec,
    keys: tuple[Path, Path],
    tmp_path: Path,
    registry: str,
    project: Project,
    job_containers_created: Callable[[Path], list[object]],
) -> None:
    pidfile = STATE_DIR / "registry.pid"
    if not pidfile.is_file():
        pytest.skip(f"{pidfile} is missing: this registry was not started by scripts/setup")
    ref = f"{registry}/rexec/absent:v1"
    project.write_code("ok.py", "print('fine')\n")
    spec = project.spec(["python3", "/code/ok.py"], image={"ref": ref})
    unpinned = spec.rename(spec.with_name("unpinned.toml"))
    absent = f"{registry}/rexec/absent@sha256:{'0' * 64}"
    pinned = project.spec(["python3", "/code/ok.py"], image={"ref": absent})
    pinned = pinned.rename(pinned.with_name("pinned.toml"))
    os.kill(int(pidfile.read_text()), signal.SIGTERM)
    try:
        time.sleep(0.5)
        out = rexec("lock", unpinned, "-o", tmp_path / "l.toml", check=ExitCode.INFRASTRUCTURE)
        assert "Traceback" not in out.stderr and not (tmp_path / "l.toml").exists()
        out = rexec(
            "run",
            pinned,
            "--signing-key",
            keys[0],
            "--runs-dir",
            tmp_path / "runs",
            check=ExitCode.INFRASTRUCTURE,
        )
        assert "cannot pull" in out.stderr and "Traceback" not in out.stderr
        assert job_containers_created(pinned) == []
        assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []
    finally:
        _restart_engine()


CHECKPOINTER = """\
import json, os, signal, sys, time
state = {"step": 0}
def save(signum, frame):
    state["stopped_by"] = signal.Signals(signum).name
    for where in ("/checkpoint", os.environ["REXEC_OUTPUTS"]):  # the same bytes twice
        with open(os.path.join(where, "state.json"), "w") as f:
            json.dump(state, f, sort_keys=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, save)
open(os.path.join(os.environ["REXEC_OUTPUTS"], "started"), "w").write("x")
while True:
    state["step"] += 1
    time.sleep(0.05)
"""


def test_a_job_with_a_checkpoint_is_handed_the_signal_and_its_grace(
    rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path, project: Project
) -> None:
    """Asked to stop, rexec passes the signal on and lets the job write its checkpoint
    (a job without `[checkpoint]` is removed at once, the test above); the record signs
    the checkpoint the job left."""
    project.write_code("ckpt.py", CHECKPOINTER)
    spec = project.spec(["python3", "/code/ckpt.py"], checkpoint={"mount": "/checkpoint"})
    runs = tmp_path / "runs"
    proc = start_run(rexec, spec, keys[0], runs)
    wait_for_job(runs, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 143, stderr
    (record,) = runs.iterdir()
    assert exit_status(record)["status"] == "interrupted"
    saved = json.loads((record / "outputs" / "state.json").read_text())
    assert saved["stopped_by"] == "SIGTERM" and saved["step"] > 0
    left = tmp_path / "left"
    left.mkdir()
    (left / "state.json").write_bytes((record / "outputs" / "state.json").read_bytes())
    internal = json.loads((record / "statement.json").read_bytes())["predicate"]["buildDefinition"][
        "internalParameters"
    ]
    checkpoint = internal["checkpoint"]
    assert checkpoint["end"] == rexec("snapshot", "hash", left, "--quiet").stdout.strip()
    assert checkpoint["kept"] is False and checkpoint["start"] != checkpoint["end"]
    assert containers_of(spec) == []
