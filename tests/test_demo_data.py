"""The demo's committed data is what its generator makes, so the pinned digest is explained."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_make_data_reproduces_the_committed_files(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "specs" / "demo" / "make_data.py"), str(tmp_path)], check=True
    )
    committed = REPO / "specs" / "demo" / "data"
    names = sorted(p.name for p in committed.iterdir())
    assert names == sorted(p.name for p in tmp_path.iterdir())
    for name in names:
        assert (tmp_path / name).read_bytes() == (committed / name).read_bytes(), name


def test_demo_spec_pins_the_committed_data() -> None:
    from executor import snapshot, spec

    demo = spec.load(REPO / "specs" / "demo.toml")
    (blobs,) = demo.inputs
    assert snapshot.hash_tree(blobs.path, use_cache=False).digest == blobs.digest
