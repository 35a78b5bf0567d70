"""Slurm's text output, as captured from a 22.05 cluster, parsed field by field."""

from __future__ import annotations

import pytest

from executor.cluster.slurm import parse_sacct, parse_squeue, parse_submitted
from executor.errors import InfrastructureError

# `squeue -h -t all --me -o '%i|%T|%r|%N'` with a running job, a pending array and a done one.
SQUEUE = """\
12|RUNNING|None|n1
13_[2-4,7%2]|PENDING|JobArrayTaskLimit|
13_0|RUNNING|None|n2
13_1|COMPLETED|None|n1
9|CANCELLED|None|n1
"""

# `sacct -n -P -X -o JobID,State,ExitCode,Reason,NodeList -j 9,10,11,14_0`
SACCT = """\
9|CANCELLED by 0|0:15|None|n1
10|FAILED|3:0|NonZeroExitCode|n2
11|TIMEOUT|0:0|TimeLimit|n1
14_0|OUT_OF_MEMORY|0:125|OutOfMemory|n1
15_[0-2]|CANCELLED by 0|0:0|None|None assigned
"""


def test_squeue_lines_and_pending_arrays_expanded() -> None:
    jobs = parse_squeue(SQUEUE)
    assert jobs["12"].state == "RUNNING" and jobs["12"].reason == "" and jobs["12"].nodes == "n1"
    assert {j for j in jobs if j.startswith("13_")} == {f"13_{i}" for i in (0, 1, 2, 3, 4, 7)}
    assert jobs["13_7"].state == "PENDING" and jobs["13_7"].reason == "JobArrayTaskLimit"
    assert jobs["13_1"].state == "COMPLETED"


def test_sacct_states_and_exit_codes() -> None:
    jobs = parse_sacct(SACCT)
    assert jobs["9"].state == "CANCELLED" and jobs["9"].signal == 15
    assert (jobs["10"].state, jobs["10"].exit_code, jobs["10"].reason) == (
        "FAILED",
        3,
        "NonZeroExitCode",
    )
    assert jobs["11"].state == "TIMEOUT"
    assert jobs["14_0"].state == "OUT_OF_MEMORY"
    # an array cancelled while pending is one line; each of its tasks was cancelled
    assert {j: jobs[j].state for j in jobs if j.startswith("15_")} == dict.fromkeys(
        ("15_0", "15_1", "15_2"), "CANCELLED"
    )


def test_junk_lines_are_skipped() -> None:
    assert parse_squeue("garbage\n\n|||\n") == {}
    assert parse_sacct("a|b\n") == {}


def test_sbatch_parsable_output() -> None:
    assert parse_submitted("4711\n") == "4711"
    assert parse_submitted("4711;rexec\n") == "4711"
    with pytest.raises(InfrastructureError):
        parse_submitted("sbatch: error: something\n")
