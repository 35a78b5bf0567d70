"""What the Podman runtime adds to the create request, at the docker-py seam (no engine)."""

from __future__ import annotations

from typing import Any

import pytest

from executor.runtime import ContainerRequest
from executor.runtime.podman import PodmanRuntime, global_flags


class _Api:
    """docker-py's low-level client as the runtime uses it to create a container."""

    def __init__(self) -> None:
        self.host_config: dict[str, Any] = {}

    def create_host_config(self, **kwargs: Any) -> dict[str, Any]:
        from docker.api.client import APIClient

        return dict(APIClient(version="1.41").create_host_config(**kwargs))

    def create_container(self, **kwargs: Any) -> dict[str, str]:
        self.host_config = kwargs["host_config"]
        return {"Id": "c0ffee"}


class _Client:
    def __init__(self) -> None:
        self.api = _Api()
        self.containers = self

    def prepare_model(self, attrs: dict[str, str]) -> dict[str, str]:
        return attrs


def request(**kwargs: Any) -> ContainerRequest:
    return ContainerRequest(
        image="sha256:" + "a" * 64, command=["true"], workdir="/", env={}, mounts=(),
        user="1000:1000", labels={}, **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize("euid", [0, 1000])
def test_the_create_request_podman_needs(monkeypatch: pytest.MonkeyPatch, euid: int) -> None:
    monkeypatch.setattr("os.geteuid", lambda: euid)
    runtime = PodmanRuntime(socket="/nonexistent/podman.sock")
    client = _Client()
    runtime._client = client
    runtime._create(request(gpu_uuids=("GPU-aaaa", "MIG-bbbb"), memory_bytes=1 << 30))
    hc = client.api.host_config
    assert hc["Ulimits"] == [
        {"Name": "nofile", "Soft": 4096, "Hard": 4096},
        {"Name": "nproc", "Soft": 4096, "Hard": 4096},
    ]
    assert hc.get("UsernsMode") == ("keep-id" if euid else None)
    assert [d["PathOnHost"] for d in hc["Devices"]] == [
        "nvidia.com/gpu=GPU-aaaa",
        "nvidia.com/gpu=MIG-bbbb",
    ]
    assert hc.get("DeviceRequests") is None
    assert hc["ReadonlyRootfs"] is True and hc["CapDrop"] == ["ALL"] and hc["Memory"] == 1 << 30


def test_global_flags_follow_the_host() -> None:
    flags = global_flags(rootless=True)
    assert flags[-2:] == ["--storage-driver", "overlay"]
    assert "--storage-driver" not in global_flags(rootless=False)


def test_rootless_on_cgroup_v1_says_which_limits_it_cannot_hold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setattr("executor.runtime.podman._cgroup_v2", lambda: False)
    runtime = PodmanRuntime(socket="/nonexistent/podman.sock")
    assert runtime.unenforced_limits(request(memory_bytes=1 << 30, cpus=1.0)) == [
        "memory",
        "cpus",
        "pids",
    ]
    monkeypatch.setattr("executor.runtime.podman._cgroup_v2", lambda: True)
    assert runtime.unenforced_limits(request(memory_bytes=1 << 30)) == []
