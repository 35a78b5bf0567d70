"""The benchmarks still run: `scripts/bench SUITE --smoke` on tiny sizes, in CI.

A benchmark nobody runs rots (the run bench broke silently when FROM pinning
landed). This asserts that each suite ran to the end and printed its figures,
never a timing: performance is measured by the full benches, not by tests.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

# Each suite, and a line its report must hold once it has measured everything.
SUITES = {
    "run": "rexec overhead over the same hardened docker run:",
    "verify": "sha256sum of outputs",
    "snapshot": "rexec sha256, warm cache",
    "submit": "rexec submit adds",
    "catalog": "catalog bench done",
}


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_the_bench_runs_to_the_end(suite: str, tmp_path: Path) -> None:
    env = dict(os.environ)
    if suite == "submit":  # on the test cluster scripts/test started (else it starts its own)
        conf = os.environ.get("REXEC_TEST_SLURM_CONF")
        if conf:
            env["SLURM_CONF"] = conf
    proc = subprocess.run(
        ["sh", str(REPO / "scripts" / "bench"), suite, "--smoke"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert SUITES[suite] in proc.stdout, proc.stdout
    if suite == "catalog" and os.environ.get("REXEC_TEST_POSTGRES"):
        assert "PostgreSQL / SQLite" in proc.stdout, proc.stdout  # both backends measured
