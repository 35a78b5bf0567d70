"""What the Podman runtime adds to the create request, at the docker-py seam (no engine)."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from executor.errors import InfrastructureError
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


def test_rootless_podman_gets_a_private_runtime_dir_where_the_node_has_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A batch job on a compute node has no login session: no XDG_RUNTIME_DIR and no
    /run/user/<uid>. rexec makes one only its user can enter, and refuses one planted."""
    from executor.runtime import podman

    uid = os.geteuid()
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(podman, "_private", _private_unless_session(podman._private))
    made = podman.runtime_dir()
    assert made == tmp_path / f"rexec-runtime-{uid}"
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    assert podman.default_socket(rootless=True, service="slurm-7-0") == (
        made / "podman" / "rexec-slurm-7-0.sock"  # a job's own service, its own socket
    )
    made.chmod(0o777)  # as if someone else could plant files in it
    with pytest.raises(InfrastructureError, match="not a directory of yours"):
        podman.runtime_dir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "session"))
    assert podman.runtime_dir() == tmp_path / "session"


def _private_unless_session(real: Callable[[Path, int], bool]) -> Callable[[Path, int], bool]:
    """This machine's own /run/user/<uid> is ignored: the node in the test has none."""
    return lambda path, uid: False if str(path).startswith("/run/user/") else real(path, uid)


def test_a_jobs_own_service_is_stopped_when_it_lets_go_and_a_shared_one_is_not(
    tmp_path: Path,
) -> None:
    shared = PodmanRuntime(socket=tmp_path / "shared.sock")
    own = PodmanRuntime(socket=tmp_path / "own.sock", service="slurm-7-0")
    for runtime in (shared, own):
        runtime.started = subprocess.Popen(["sleep", "60"])  # the service it started
    own.close()
    shared.close()
    assert own.started is not None and own.started.poll() is not None  # stopped
    assert shared.started is not None and shared.started.poll() is None  # serves the next run
    shared.started.kill()
    shared.started.wait()
