"""The pipeline's stage order and what it hands the engine, with a fake at the Docker seam.

End-to-end tests drive a real engine; these check what cannot happen here
(a GPU) through recorded NVML answers, and what must not happen at all (a
container after a failed preflight) by counting calls.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from executor import runner, spec
from executor.errors import InputError
from executor.host import nvml
from executor.host.nvml_replay import ReplayNvml
from executor.signing import SignOptions
from tests.fakes import FakeRuntime
from tests.host.nvml_fixtures import load_fixture


def make_spec(tmp_path: Path, gpus: str) -> spec.RunSpec:
    (tmp_path / "img").mkdir(exist_ok=True)
    (tmp_path / "img" / "Dockerfile").write_text("FROM scratch\n")
    text = f"""
version = 1
name = "gpu"
[image]
build = {{ dockerfile = "img/Dockerfile", context = "img", allow_unpinned_from = true }}
[run]
command = ["train"]
seed = 3
[resources]
gpus = {gpus}
[determinism]
frameworks = ["torch"]
"""
    return spec.loads(text.encode(), source=tmp_path / "spec.toml")


def options(tmp_path: Path) -> runner.RunOptions:
    return runner.RunOptions(
        runs_dir=tmp_path / "runs", sign=SignOptions(method="none"), echo_logs=False
    )


@pytest.fixture
def workstation(monkeypatch: pytest.MonkeyPatch) -> Mapping[str, Any]:
    """This host answers NVML as the recorded one-GPU PCIe workstation does."""
    doc = load_fixture("workstation-rtx4090-pcie")
    real = nvml.load_nvml()
    monkeypatch.setattr(nvml, "load_nvml", lambda: ReplayNvml(doc, real=real))
    return doc


def test_gpus_are_handed_to_the_engine_by_uuid(
    tmp_path: Path, workstation: Mapping[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    uuid = workstation["calls"]["nvmlDeviceGetUUID"]["gpu0"]["ok"]
    runtime = FakeRuntime()
    result = runner.run(make_spec(tmp_path, '"all"'), options=options(tmp_path), runtime=runtime)
    (request,) = runtime.requests
    assert tuple(request.gpu_uuids) == (uuid,)
    assert request.env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert request.env["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert request.env["NCCL_ALGO"]  # GPU runs pin NCCL's algorithm
    statement = json.loads((result.run_dir / "statement.json").read_bytes())
    internal = statement["predicate"]["buildDefinition"]["internalParameters"]
    assert internal["gpuUuids"] == [uuid]
    host = json.loads((result.run_dir / "host.json").read_bytes())
    assert list(host["gpu"]["devices"]) == [uuid]  # keyed by UUID, never by index
    builder = statement["predicate"]["runDetails"]["builder"]["builderDependencies"]
    driver = workstation["calls"]["nvmlSystemGetDriverVersion"][""]["ok"]
    assert {"name": "driver-version", "uri": f"pkg:generic/driver_version@{driver}"} in builder


def test_gpu_request_on_this_gpu_less_host_fails_before_any_container(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    with pytest.raises(InputError, match=r"\[resources\] gpus.*no NVIDIA GPU"):
        runner.run(make_spec(tmp_path, "1"), options=options(tmp_path), runtime=runtime)
    assert runtime.requests == [] and runtime.builds == 0
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


def test_cpu_run_gets_no_gpu_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = FakeRuntime()
    runner.run(make_spec(tmp_path, "0"), options=options(tmp_path), runtime=runtime)
    (request,) = runtime.requests
    assert request.gpu_uuids == ()
    assert "NVIDIA_DRIVER_CAPABILITIES" not in request.env
    assert "NCCL_ALGO" not in request.env
