"""The demo spec end to end: trains, signs, verifies, and comes out the same twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, Rexec, statement

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

DEMO = REPO / "specs" / "demo.toml"


def run_demo(rexec: Rexec, key: Path, runs: Path) -> Path:
    # The CI checkout is clean; a developer's may not be, and that is not what this tests.
    return rexec.run(DEMO, key, runs, "--allow-dirty")


def test_demo_runs_twice_bit_identical_and_verifies(
    rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    first = run_demo(rexec, keys[0], tmp_path / "runs")
    second = run_demo(rexec, keys[0], tmp_path / "runs")
    assert first != second
    names = sorted(p.name for p in (first / "outputs").iterdir())
    assert names == ["metrics.json", "model.npz"]
    for name in names:
        assert (first / "outputs" / name).read_bytes() == (second / "outputs" / name).read_bytes()
    subjects = [statement(d)["subject"] for d in (first, second)]
    assert subjects[0] == subjects[1]
    metrics = json.loads((first / "outputs" / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.8  # it really learned something
    for run_dir in (first, second):
        assert "VERIFIED" in rexec("verify", run_dir, "--key", keys[1]).stdout


def test_demo_replays_bitwise(rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path) -> None:
    original = run_demo(rexec, keys[0], tmp_path / "runs")
    out = rexec(
        "replay",
        original,
        "--key",
        keys[1],
        "--signing-key",
        keys[0],
        "--runs-dir",
        tmp_path / "replays",
        "--json",
    )
    verdict = json.loads(out.stdout)
    assert verdict["verdict"] == "reproduced-bitwise"
