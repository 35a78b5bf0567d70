"""`rexec run` and `rexec verify` end to end: real command, real engine, real containers."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from executor.errors import ExitCode
from tests.e2e.conftest import Project, Rexec, build_definition, exit_status

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

PROBE = """\
import ctypes, json, os

def try_userns():
    # unshare(CLONE_NEWUSER): in a new user namespace a job holds every capability again
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x10000000) == 0:
        return "created"
    return ctypes.get_errno()

def try_write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return "ok"
    except OSError as exc:
        return exc.errno

status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines()
              if ":\\t" in line)
report = {
    "uid": os.getuid(),
    "write": {p: try_write(p) for p in ("/probe", "/data/probe", "/code/probe", "/tmp/probe")},
    "cap_eff": int(status["CapEff"], 16),
    "cap_bnd": int(status["CapBnd"], 16),
    "no_new_privs": int(status["NoNewPrivs"]),
    "interfaces": sorted(os.listdir("/sys/class/net")),
    "env": {k: os.environ.get(k) for k in ("REXEC_SEED", "PYTHONHASHSEED", "OMP_NUM_THREADS")},
    "params": json.load(open(os.environ["REXEC_PARAMS"])),
    "data": sorted(os.listdir("/data")),
    "userns": try_userns(),
}
with open(os.path.join(os.environ["REXEC_OUTPUTS"], "probe.json"), "w") as f:
    json.dump(report, f, sort_keys=True)
print("probe done")
"""


def test_job_is_hardened_as_seen_from_inside(
    project: Project, rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    project.write_code("probe.py", PROBE)
    spec = project.spec(["python3", "/code/probe.py"])
    run_dir = rexec.run(spec, keys[0], tmp_path / "runs", "--param", "scale=3")
    report = json.loads((run_dir / "outputs" / "probe.json").read_text())
    assert report["uid"] != 0
    assert report["write"] == {
        "/probe": errno.EROFS,
        "/data/probe": errno.EROFS,
        "/code/probe": errno.EROFS,
        "/tmp/probe": "ok",
    }
    assert report["cap_eff"] == 0 and report["cap_bnd"] == 0
    assert report["no_new_privs"] == 1
    assert report["userns"] == errno.EPERM  # no nested user namespace (seccomp)
    assert report["interfaces"] == ["lo"]
    assert report["env"] == {"REXEC_SEED": "7", "PYTHONHASHSEED": "7", "OMP_NUM_THREADS": "1"}
    assert report["params"] == {"scale": 3}
    assert report["data"] == ["numbers.txt", "sub"]
    assert "probe done" in (run_dir / "logs" / "stdout.log").read_text()

    spec_view = build_definition(run_dir)["externalParameters"]["spec"]
    assert spec_view["params"] == {"scale": 3}
    assert spec_view["paramOverrides"] == [{"key": "scale", "default": 2, "value": 3}]
    internal = build_definition(run_dir)["internalParameters"]
    assert internal["hardening"]["network"] == "none"
    assert internal["hardening"]["readOnlyRootFilesystem"] is True


def test_failed_job_is_recorded_and_signed(
    project: Project, rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    project.write_code("fail.py", "import sys\nprint('boom', file=sys.stderr)\nsys.exit(3)\n")
    spec = project.spec(["python3", "/code/fail.py"])
    runs = tmp_path / "runs"
    out = rexec(
        "run", spec, "--signing-key", keys[0], "--runs-dir", runs, check=ExitCode.JOB_FAILED
    )
    assert "failed (exit code 3)" in out.stderr
    (run_dir,) = runs.iterdir()  # the record, and no leftover staging directory
    assert exit_status(run_dir) == {"status": "failed", "exitCode": 3, "oomKilled": False}
    assert "boom" in (run_dir / "logs" / "stderr.log").read_text()
    refused = rexec("verify", run_dir, "--key", keys[1], check=ExitCode.JOB_FAILED)
    assert "status:    failed (exit 3)" in refused.stdout  # authentic, and refused as a success
    verified = rexec("verify", run_dir, "--key", keys[1], "--allow-failed")
    assert "failed" in verified.stdout and "VERIFIED" in verified.stdout


def test_timeout_is_recorded(
    project: Project, rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    project.write_code("slow.py", "import time\nprint('epoch 1 loss 0.5')\ntime.sleep(60)\n")
    spec = project.spec(["python3", "/code/slow.py"], run={"timeout": "2s"})
    run_dir = rexec.run(spec, keys[0], tmp_path / "runs", check=ExitCode.JOB_FAILED)
    assert exit_status(run_dir)["status"] == "timed-out"
    # what it printed before it was killed: a block-buffered stdout lost it (the log was empty)
    assert (run_dir / "logs" / "stdout.log").read_text() == "epoch 1 loss 0.5\n"
    assert build_definition(run_dir)["internalParameters"]["environment"]["PYTHONUNBUFFERED"] == "1"


def test_changed_snapshot_stops_the_run_before_any_container(
    project: Project,
    rexec: Rexec,
    keys: tuple[Path, Path],
    tmp_path: Path,
    job_containers_created,  # type: ignore[no-untyped-def]
) -> None:
    project.write_code("noop.py", "print('should never run')\n")
    spec = project.spec(["python3", "/code/noop.py"])
    numbers = project.data / "numbers.txt"
    numbers.write_bytes(numbers.read_bytes().replace(b"2", b"7"))
    runs = tmp_path / "runs"
    out = rexec("run", spec, "--signing-key", keys[0], "--runs-dir", runs, check=ExitCode.MISMATCH)
    assert "numbers.txt" in out.stderr
    assert "sub/more.txt" not in out.stderr
    assert job_containers_created(spec) == []
    assert not runs.exists() or list(runs.iterdir()) == []


def test_dirty_code_is_refused_unless_allowed(
    project: Project, rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    project.write_code("job.py", "print('hi')\n")
    spec = project.spec(["python3", "/code/job.py"])
    (project.code / "job.py").write_text("print('changed')\n")
    runs = tmp_path / "runs"
    out = rexec("run", spec, "--signing-key", keys[0], "--runs-dir", runs, check=ExitCode.BAD_INPUT)
    assert "uncommitted changes" in out.stderr and "job.py" in out.stderr
    run_dir = rexec.run(spec, keys[0], runs, "--allow-dirty")
    deps = build_definition(run_dir)["resolvedDependencies"]
    code = next(d for d in deps if d["name"] == "code")
    assert code["annotations"]["dirty"] is True
    assert len(code["digest"]["gitCommit"]) == 40


def test_verify_catches_tampering(
    project: Project, rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    project.write_code(
        "out.py",
        """\
        import os
        out = os.environ["REXEC_OUTPUTS"]
        os.makedirs(out + "/nested", exist_ok=True)
        open(out + "/a.txt", "w").write("alpha")
        open(out + "/nested/b.txt", "w").write("beta")
        """,
    )
    spec = project.spec(["python3", "/code/out.py"])
    run_dir = rexec.run(spec, keys[0], tmp_path / "runs")
    rexec("verify", run_dir, "--key", keys[1])

    output = run_dir / "outputs" / "nested" / "b.txt"
    output.write_text("BETA")
    tampered_output = rexec("verify", run_dir, "--key", keys[1], check=ExitCode.MISMATCH)
    assert "nested/b.txt" in tampered_output.stderr
    output.write_text("beta")

    statement_file = run_dir / "statement.json"
    original = statement_file.read_bytes()
    statement_file.write_bytes(original.replace(b'"e2e"', b'"e2f"', 1))
    tampered_statement = rexec("verify", run_dir, "--key", keys[1], check=ExitCode.SIGNATURE)
    statement_file.write_bytes(original)

    rexec("keygen", "--out", tmp_path / "other" / "k")
    wrong_key = rexec(
        "verify", run_dir, "--key", tmp_path / "other" / "k.pub", check=ExitCode.SIGNATURE
    )
    messages = {tampered_output.stderr, tampered_statement.stderr, wrong_key.stderr}
    assert len(messages) == 3
    rexec("verify", run_dir, "--key", keys[1])  # restored: verifies again


def test_unreachable_engine_is_an_infrastructure_error(
    project: Project, rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    project.write_code("job.py", "print('hi')\n")
    spec = project.spec(["python3", "/code/job.py"])
    rexec.env["DOCKER_HOST"] = f"unix://{tmp_path}/no-such.sock"
    runs = tmp_path / "runs"
    out = rexec(
        "run", spec, "--signing-key", keys[0], "--runs-dir", runs, check=ExitCode.INFRASTRUCTURE
    )
    assert "cannot reach the Docker engine" in out.stderr


def test_a_device_handed_to_the_job_is_there_and_recorded() -> None:
    """What a multi-node job's node does with its InfiniBand devices (this machine has
    none: a tty stands in, as it stands in for GPUs in the test cluster's gres)."""
    from executor.runtime import ContainerRequest, Hardening
    from executor.runtime.docker import DockerRuntime
    from tests.e2e.conftest import BASE_IMAGE

    chunks: list[bytes] = []
    request = ContainerRequest(
        image=BASE_IMAGE,
        command=["sh", "-c", "test -c /dev/tty2 && echo there"],
        workdir="/",
        env={},
        mounts=[],
        user="65534:65534",
        labels={"dev.rexec.test": "devices"},
        hardening=Hardening(devices=("/dev/tty2",)),
        timeout_s=60,
    )
    result = DockerRuntime().run(request, lambda _, chunk: chunks.append(chunk))
    assert result.exit_code == 0 and b"".join(chunks).strip() == b"there"
    assert Hardening(devices=("/dev/tty2",)).describe()["devices"] == ["/dev/tty2"]


def test_check_finds_a_missing_module_or_program_before_any_job(
    project: Project, rexec: Rexec, tmp_path: Path
) -> None:
    """A script that imports a package the image lacks failed after a container ran: the
    message was clear, but only then. `run --check` says so first, and runs no job."""
    project.write_code("helpers.py", "X = 1\n")
    project.write_code(
        "train.py", "import json\nimport helpers\nimport torch\nfrom sklearn import svm\n"
    )
    runs = tmp_path / "runs"
    spec = project.spec(["python3", "/code/train.py"])
    out = rexec("run", spec, "--check", "--runs-dir", runs, check=ExitCode.BAD_INPUT)
    assert "import torch: not in the image's Python" in out.stderr
    assert "import sklearn: not in the image's Python" in out.stderr
    assert "import json: ok" in out.stdout and "helpers" not in out.stdout  # the code's own
    assert not runs.exists() or list(runs.iterdir()) == []  # no job ran, nothing recorded
    good = project.spec(["python3", "/code/helpers.py"])
    doc = json.loads(rexec("run", good, "--check", "--runs-dir", runs, "--json").stdout)
    assert doc["ok"] and doc["found"].endswith("/python3")
    absent = project.spec(["trainx", "--epochs", "3"])
    out = rexec("run", absent, "--check", "--runs-dir", runs, check=ExitCode.BAD_INPUT)
    assert "trainx: no such program in the image" in out.stderr
