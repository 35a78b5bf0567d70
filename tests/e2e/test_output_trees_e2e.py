"""The signed tree digests of a run's outputs: what a later run pins as its input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from executor.errors import ExitCode
from tests.e2e.conftest import Project, Rexec, build_definition

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

JOB = """\
import os
out = os.environ["REXEC_OUTPUTS"]
os.makedirs(os.path.join(out, "model", "shards"))
open(os.path.join(out, "model", "w.bin"), "wb").write(b"weights")
open(os.path.join(out, "model", "shards", "0"), "wb").write(b"0")
open(os.path.join(out, "metrics.json"), "w").write('{"acc": 0.5}')
"""


def test_output_trees_are_signed_and_checked(
    project: Project, rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    project.write_code("job.py", JOB)
    run_dir = rexec.run(project.spec(["python3", "/code/job.py"]), keys[0], tmp_path / "runs")
    internal = build_definition(run_dir)["internalParameters"]
    trees = internal["outputTrees"]
    assert set(trees) == {"outputs/", "outputs/model/"}
    hashed = rexec("snapshot", "hash", run_dir / "outputs" / "model", "--quiet").stdout.strip()
    assert trees["outputs/model/"] == hashed  # what a later run pins for outputs/model
    whole = rexec("snapshot", "hash", run_dir / "outputs", "--quiet").stdout.strip()
    assert trees["outputs/"] == whole
    assert internal["invoker"]["uid"] == 0 and internal["invoker"]["host"]
    rexec("verify", run_dir, "--key", keys[1])
    (run_dir / "outputs" / "model" / "extra").mkdir()  # no file changed, the tree did
    out = rexec("verify", run_dir, "--key", keys[1], "--json", check=ExitCode.MISMATCH)
    assert "tree outputs/model/" in json.dumps(json.loads(out.stdout))
