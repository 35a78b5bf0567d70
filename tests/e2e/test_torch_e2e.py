"""The CPU PyTorch trainer end to end: locked, trained twice, bit-identical weights.

The first run on a machine builds images/torch (apt-get install python3-torch,
about a minute); the second run of the same spec reuses that image because its
build inputs are unchanged, which this test checks too. Expected values come
from the job's contract (what seed_everything() must set), not from earlier runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import REPO, Rexec

pytestmark = [pytest.mark.docker, pytest.mark.registry, pytest.mark.usefixtures("engine")]


def image_dependency(run_dir: Path) -> dict[str, Any]:
    statement = json.loads((run_dir / "statement.json").read_bytes())
    deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    found: dict[str, Any] = next(d for d in deps if d["name"] == "image")
    return found


def test_torch_trains_bit_identically_with_deterministic_algorithms(
    rexec: Rexec, registry: str, tmp_path: Path
) -> None:
    locked = tmp_path / "torch.lock.toml"
    rexec("lock", REPO / "specs" / "torch.toml", "-o", locked, "--allow-dirty")
    # A developer's checkout may be dirty; the tree digest still pins the code.
    first = rexec.run(locked, None, tmp_path / "runs", "-q", "--allow-dirty")
    second = rexec.run(locked, None, tmp_path / "runs", "-q", "--allow-dirty")

    names = sorted(p.name for p in (first / "outputs").iterdir())
    assert names == sorted(
        ["0.weight.npy", "0.bias.npy", "2.weight.npy", "2.bias.npy", "metrics.json"]
    )
    for name in names:
        assert (first / "outputs" / name).read_bytes() == (second / "outputs" / name).read_bytes()
    metrics = json.loads((first / "outputs" / "metrics.json").read_text())
    assert metrics["torch"].startswith("1.13")
    assert metrics["test_accuracy"] > 0.8  # it learned the blobs

    report = json.loads((first / "job-meta" / "determinism.json").read_text())
    assert "torch" in report["seeded"]
    assert report["settings"]["torch.use_deterministic_algorithms"] is True
    assert report["settings"]["torch.use_deterministic_algorithms.warn_only"] is False
    assert report["seed"] == 1234

    builds = [image_dependency(d)["annotations"]["build"] for d in (first, second)]
    assert [b["reused"] for b in builds] == [False, True]
    assert builds[0]["bases"][0]["digest"].startswith("sha256:")  # the base is pinned
    # The package inventory is the image's: it names the image id that ran.
    inventory = json.loads((first / "image-inventory.json").read_text())
    assert inventory["imageId"] == image_dependency(first)["annotations"]["imageId"]
