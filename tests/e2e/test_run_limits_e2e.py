"""Resource limits, secrets and root opt-in, through the real command on a real engine."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from executor.errors import ExitCode
from tests.e2e.conftest import Project, Rexec, build_definition, exit_status

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]


def test_memory_limit_kills_and_is_recorded(
    project: Project, rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    project.write_code("hog.py", "blocks = [bytearray(16 << 20) for _ in range(64)]\n")
    spec = project.spec(["python3", "/code/hog.py"], resources={"memory": "64m"})
    run_dir = rexec.run(spec, keys[0], tmp_path / "runs", check=ExitCode.JOB_FAILED)
    status = exit_status(run_dir)
    assert status["status"] == "failed"
    assert status["oomKilled"] is True
    resources = build_definition(run_dir)["externalParameters"]["spec"]["resources"]
    assert resources["memoryBytes"] == 64 << 20


def test_secret_reaches_the_job_but_never_the_record(
    project: Project, rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    project.write_code(
        "secret.py",
        """\
        import hashlib, os
        value = os.environ["SERVICE_TOKEN"].encode()
        out = os.environ["REXEC_OUTPUTS"]
        open(out + "/token.sha256", "w").write(hashlib.sha256(value).hexdigest())
        """,
    )
    spec = project.spec(["python3", "/code/secret.py"], run={"secrets": ["SERVICE_TOKEN"]})
    runs = tmp_path / "runs"
    # Not set: refused before anything runs.
    rexec("run", spec, "--signing-key", keys[0], "--runs-dir", runs, check=ExitCode.BAD_INPUT)
    secret = "s3cr3t-value-that-must-not-leak"
    rexec.env["SERVICE_TOKEN"] = secret
    run_dir = rexec.run(spec, keys[0], runs)
    expected = hashlib.sha256(secret.encode()).hexdigest()
    assert (run_dir / "outputs" / "token.sha256").read_text() == expected
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert build_definition(run_dir)["internalParameters"]["secretNames"] == ["SERVICE_TOKEN"]


def test_root_needs_an_explicit_opt_in(
    project: Project, rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    project.write_code(
        "whoami.py",
        'import os\nopen(os.environ["REXEC_OUTPUTS"] + "/uid", "w").write(str(os.getuid()))\n',
    )
    spec = project.spec(["python3", "/code/whoami.py"], run={"user": "0:0"})
    runs = tmp_path / "runs"
    refused = rexec(
        "run", spec, "--signing-key", keys[0], "--runs-dir", runs, check=ExitCode.BAD_INPUT
    )
    assert "allow_root" in refused.stderr
    project.spec(["python3", "/code/whoami.py"], run={"user": "0:0"}, security={"allow_root": True})
    run_dir = rexec.run(spec, keys[0], runs)
    assert (run_dir / "outputs" / "uid").read_text() == "0"
    assert build_definition(run_dir)["internalParameters"]["optIns"]["allowRoot"] is True
