"""The Docker runtime's reading of engine failures, at the docker-py seam.

An engine that dies mid-run can break off any call, not only the wait: seen in
CI, its answer to ``start`` was lost after the job had begun. Every such break
must be EngineLost (recorded as infrastructure-failed, exit 6), never a raw
connection error that the CLI would mistake for a file problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from executor.errors import EngineLost
from executor.runtime import ContainerRequest
from executor.runtime.docker import DockerRuntime


class _Container:
    id = "c0ffee"

    def __init__(self, fail: str) -> None:
        self.attrs: dict[str, Any] = {"State": {"OOMKilled": False}}
        self.fail = fail
        self.removed = False

    def attach(self, **kwargs: Any) -> list[tuple[bytes | None, bytes | None]]:
        return []

    def _maybe(self, step: str) -> None:
        if step == self.fail:
            raise requests.exceptions.ConnectionError(
                "('Connection aborted.', RemoteDisconnected('Remote end closed connection'))"
            )

    def start(self) -> None:
        self._maybe("start")

    def wait(self, timeout: float) -> dict[str, int]:
        self._maybe("wait")
        return {"StatusCode": 0}

    def reload(self) -> None:
        self._maybe("reload")

    def remove(self, **kwargs: Any) -> None:
        self.removed = True


class _Client:
    """docker-py's two faces as the runtime uses them: ``api`` creates, ``containers`` wraps."""

    def __init__(self, container: _Container) -> None:
        self.containers = self
        self.api = self
        self.container = container

    def create_host_config(self, **kwargs: Any) -> dict[str, Any]:
        return dict(kwargs)

    def create_container(self, **kwargs: Any) -> dict[str, str]:
        return {"Id": self.container.id}

    def prepare_model(self, attrs: dict[str, str]) -> _Container:
        assert attrs == {"Id": self.container.id}
        return self.container


@pytest.mark.parametrize("step", ["start", "wait", "reload"])
def test_an_engine_lost_at_any_step_of_the_run_is_engine_lost(step: str) -> None:
    container = _Container(fail=step)
    runtime = DockerRuntime()
    runtime._client = _Client(container)
    request = ContainerRequest(
        image="sha256:" + "a" * 64,
        command=["true"],
        workdir="/",
        env={},
        mounts=(),
        user="65534:65534",
        labels={},
        timeout_s=3600,
    )
    with pytest.raises(EngineLost, match="stopped answering while the job ran"):
        runtime.run(request, lambda name, data: None)
    assert container.removed  # tried, at least: gc finds it by its labels otherwise


def test_engine_facts_are_kept_per_daemon_and_asked_again_when_it_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The facts describe the daemon: kept under its socket's identity, asked again once
    the socket is recreated (a restart), never kept for an engine over TCP."""
    monkeypatch.setenv("REXEC_CACHE_DIR", str(tmp_path / "cache"))
    sock = tmp_path / "docker.sock"
    sock.touch()
    asked: list[int] = []

    def facts() -> dict[str, Any]:
        asked.append(1)
        return {"name": "docker", "version": f"v{len(asked)}"}

    local = DockerRuntime(base_url=f"unix://{sock}")
    assert local.kept_facts(local.socket_path(), facts) == {"name": "docker", "version": "v1"}
    assert local.kept_facts(local.socket_path(), facts)["version"] == "v1"  # kept
    sock.unlink()
    sock.touch()  # the daemon restarted: a new socket
    assert local.kept_facts(local.socket_path(), facts)["version"] == "v2"
    remote = DockerRuntime(base_url="tcp://10.0.0.1:2376")
    assert remote.socket_path() is None
    remote.kept_facts(remote.socket_path(), facts)
    remote.kept_facts(remote.socket_path(), facts)
    assert len(asked) == 4
