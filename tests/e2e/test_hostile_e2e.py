"""A hostile job and a hostile image in a real container, through the real `rexec`.

The same attacks as tests/hostile/, where the fake engine makes them cheap,
but here the job really runs in the container: it points its reports at the
host's signing key, leaves links and FIFOs in its outputs, and the image tries
to wrap the command or hand the job a volume. Preflight failures must leave
no container behind (engine events by the spec's label).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from executor.errors import ExitCode
from tests.e2e.conftest import BASE_IMAGE, Project, Rexec, build_definition, git

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

HOSTILE = """\
import os
out, reports = os.environ["REXEC_OUTPUTS"], os.environ["REXEC_REPORTS"]
key = os.environ.get("HOST_KEY", "/nonexistent")
report = os.path.join(reports, "determinism.json")
if os.path.lexists(report):
    os.unlink(report)  # rexec's start-up hook wrote the real one: replace it with a link
os.symlink(key, report)
os.symlink("/etc/shadow", os.path.join(reports, "shadow.json"))
os.mkfifo(os.path.join(reports, "fifo.json"))
os.symlink("/", os.path.join(out, ".rexec"))
os.symlink(key, os.path.join(out, "key"))
os.mkfifo(os.path.join(out, "pipe"))
with open(os.path.join(out, "model.bin"), "wb") as f:
    f.write(b"weights")
print("hostile job done")
"""


def image_spec(project: Project, dockerfile: str, command: list[str]) -> Path:
    """The project's spec, with its image built from ``dockerfile`` instead of the demo's."""
    context = project.root / "img"
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\n{dockerfile}")
    build = {"dockerfile": f"{context}/Dockerfile", "context": str(context)}
    return project.spec(command, image={"build": {**build, "args": {"BASE_IMAGE": BASE_IMAGE}}})


def test_a_job_cannot_copy_host_files_into_its_record(
    project: Project, rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    project.write_code("hostile.py", HOSTILE)
    spec = project.spec(
        ["python3", "/code/hostile.py"], extra=f'[run.env]\nHOST_KEY = "{keys[0]}"\n'
    )
    run_dir = rexec.run(spec, keys[0], tmp_path / "runs")
    for path in run_dir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert b"PRIVATE KEY" not in path.read_bytes(), path
    assert not (run_dir / "job-meta").exists() or list((run_dir / "job-meta").iterdir()) == []
    excluded = {e["name"] for e in json.loads((run_dir / "outputs-excluded.json").read_bytes())}
    assert excluded == {".rexec", "key", "pipe"}
    assert sorted(p.name for p in (run_dir / "outputs").iterdir()) == ["model.bin"]
    rexec("verify", run_dir, "--key", keys[1])


def test_the_image_entrypoint_never_wraps_the_recorded_command(
    project: Project, rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    spec = image_spec(
        project,
        'ENTRYPOINT ["sh", "-c", "echo WRAPPED-BY-IMAGE; exec \\"$@\\"", "wrap"]\n',
        ["python3", "-c", "print('the recorded command')"],
    )
    run_dir = rexec.run(spec, keys[0], tmp_path / "runs")
    stdout = (run_dir / "logs" / "stdout.log").read_text()
    assert stdout == "the recorded command\n"
    internal = build_definition(run_dir)["internalParameters"]
    assert internal["argv"] == ["python3", "-c", "print('the recorded command')"]
    assert internal["imageEntrypointOverridden"][0] == "sh"


def test_an_image_volume_is_refused_before_any_container(
    project: Project,
    rexec: Rexec,
    keys: tuple[Path, Path],
    tmp_path: Path,
    job_containers_created,  # type: ignore[no-untyped-def]
) -> None:
    spec = image_spec(project, "VOLUME /scratch\n", ["true"])
    runs = tmp_path / "runs"
    out = rexec("run", spec, "--signing-key", keys[0], "--runs-dir", runs, check=ExitCode.BAD_INPUT)
    assert "declares VOLUME /scratch" in out.stderr and "hint:" in out.stderr
    assert job_containers_created(spec) == []
    assert not runs.exists() or list(runs.iterdir()) == []


def test_a_command_missing_from_the_image_is_bad_input(
    project: Project, rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    spec = project.spec(["no-such-program", "--x"])
    runs = tmp_path / "runs"
    out = rexec("run", spec, "--signing-key", keys[0], "--runs-dir", runs, check=ExitCode.BAD_INPUT)
    assert "run.command[0]: 'no-such-program' is not an executable in the image" in out.stderr
    assert not runs.exists() or list(runs.iterdir()) == []


def test_the_code_pin_and_mount_leave_out_git(
    project: Project, rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """code.path at the repository root: an empty commit must not break the lock, and the
    job must not read the repository's history through /code/.git."""
    (project.code / "peek.py").write_text(
        textwrap.dedent("""\
            import os
            found = os.listdir("/code/.git") if os.path.isdir("/code/.git") else None
            with open(os.path.join(os.environ["REXEC_OUTPUTS"], "git.txt"), "w") as f:
                f.write(repr(found))
            """)
    )

    git(project.root, "add", "-A")
    git(project.root, "commit", "-qm", "peek")
    spec = project.spec(["python3", "/code/code/peek.py"], code={"path": "."})
    locked = tmp_path / "locked.toml"
    rexec("lock", spec, "-o", locked)
    git(project.root, "commit", "-q", "--allow-empty", "-m", "an empty commit")
    run_dir = rexec.run(locked, keys[0], tmp_path / "runs")
    assert (run_dir / "outputs" / "git.txt").read_text() == "[]"
    assert not (run_dir / ".git-cover").exists()


BAD_SPECS = [
    ('timeout = "2m"', "timeout = nan", "run.timeout: expected a finite"),
    ('timeout = "2m"', 'timeout = "2m"\nuser = "00"', "run.user: uid 0"),
    ('timeout = "2m"', 'timeout = "2m"\nsecrets = ["REXEC_SEED"]', "run.secrets[0]: REXEC_SEED"),
    ('timeout = "2m"', 'timeout = "2m"\nenv = { A = "x\\u0000y" }', "run.env.A: holds a NUL"),
    ('mount = "/data"', 'mount = "/proc/data"', "inputs[0].mount: /proc/data is under /proc"),
    ("cpus = 1", "cpus = nan", "resources.cpus: expected a number"),
    ("cpus = 1", "cpus = 1000", "resources.cpus: 1000 CPUs requested"),
    ('memory = "512m"', 'memory = "1k"', "resources.memory: expected at least 6 MiB"),
    ('memory = "512m"', f"memory = 512000000\npids = {2**63 - 1}", "resources.pids: expected"),
]


@pytest.mark.parametrize(
    ("old", "new", "expected"), BAD_SPECS, ids=[b[2].split(":")[0] for b in BAD_SPECS]
)
def test_bad_spec_values_fail_before_any_container_through_the_real_command(
    project: Project,
    rexec: Rexec,
    keys: tuple[Path, Path],
    tmp_path: Path,
    job_containers_created,  # type: ignore[no-untyped-def]
    old: str,
    new: str,
    expected: str,
) -> None:
    spec = project.spec(["python3", "-c", "print('never')"])
    text = spec.read_text()
    assert old in text
    spec.write_text(text.replace(old, new, 1))
    runs = tmp_path / "runs"
    out = rexec("run", spec, "--signing-key", keys[0], "--runs-dir", runs, check=ExitCode.BAD_INPUT)
    assert expected in out.stderr and "hint:" in out.stderr
    assert "Traceback" not in out.stderr
    assert job_containers_created(spec) == []
    assert not runs.exists() or list(runs.iterdir()) == []
