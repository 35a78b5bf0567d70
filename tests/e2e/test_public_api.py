"""The library API: `executor.run` and `executor.verify` do what the commands do."""

from __future__ import annotations

from pathlib import Path

import pytest

import executor
from executor.signing import KeyPolicy, SignOptions, generate_keypair
from tests.e2e.conftest import REPO


@pytest.mark.docker
@pytest.mark.usefixtures("engine")
def test_run_then_verify_from_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REXEC_CACHE_DIR", str(tmp_path / "cache"))
    key, pub = tmp_path / "k.key", tmp_path / "k.pub"
    generate_keypair(key, pub, password=None)
    result = executor.run(
        REPO / "specs" / "demo.toml",
        runs_dir=tmp_path / "runs",
        params={"epochs": 5},
        sign=SignOptions(method="key", key_path=key),
        allow_dirty=True,
    )
    assert result.status.status == "succeeded"
    assert {s.name for s in result.subjects} == {"metrics.json", "model.npz"}
    verdict = executor.verify(result.run_dir, KeyPolicy.from_file(pub))
    assert verdict.verified
    (result.run_dir / "outputs" / "model.npz").write_bytes(b"tampered")
    assert not executor.verify(result.run_dir, KeyPolicy.from_file(pub)).verified
