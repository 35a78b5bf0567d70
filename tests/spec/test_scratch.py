"""[run] scratch_workdir: only where a mount can go, and never over what must stay read-only."""

from __future__ import annotations

from pathlib import Path

import pytest

from executor import spec
from executor.errors import SpecError

IMAGE = "registry.example/demo@sha256:" + "a" * 64
DIGEST = "sha256-tree-v1:" + "b" * 64


def load(tmp_path: Path, workdir: str) -> spec.RunSpec:
    text = (
        f'version = 1\nname = "t"\n[image]\nref = "{IMAGE}"\n'
        f'[run]\ncommand = ["t"]\nseed = 1\nworkdir = "{workdir}"\nscratch_workdir = true\n'
        f'[[inputs]]\nname = "d"\npath = "data"\ndigest = "{DIGEST}"\nmount = "/data"\n'
    )
    return spec.loads(text.encode(), source=tmp_path / "spec.toml")


def test_a_workdir_of_its_own_is_accepted_and_recorded(tmp_path: Path) -> None:
    s = load(tmp_path, "/work")
    assert s.run.scratch_workdir
    assert spec.resolved_view(s)["scratchWorkdir"] is True


@pytest.mark.parametrize(
    ("workdir", "expected"),
    [
        ("/", "the workdir is /, which cannot be replaced"),
        ("/outputs/x", "inside /outputs, which is writable already"),
        ("/tmp", "inside /tmp, which is writable already"),
        ("/data/sub", "inside input 'd' (/data), which stays read-only"),
        ("/proc/self", "inside /proc, where no scratch directory can go"),
    ],
)
def test_a_workdir_that_cannot_be_scratch_is_refused(
    tmp_path: Path, workdir: str, expected: str
) -> None:
    with pytest.raises(SpecError) as info:
        load(tmp_path, workdir)
    assert any(d.startswith("run.") and expected in d for d in info.value.details), (
        info.value.details
    )
