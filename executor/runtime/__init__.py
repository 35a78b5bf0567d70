"""The container engine seam: a small protocol, the types it speaks, and the factory.

The pipeline talks to a :class:`ContainerRuntime`, so stages can be tested with
a fake at this seam while end-to-end tests drive a real engine
(:mod:`executor.runtime.docker`, the only module that imports ``docker``).
:func:`default_runtime` is the one place that chooses the engine.
"""

from __future__ import annotations

from typing import Any

from executor.errors import InfrastructureError, InputError
from executor.runtime.types import (
    NOBODY,
    OWNER_HOST_LABEL,
    OWNER_PID_LABEL,
    OWNER_START_LABEL,
    RUN_LABEL,
    SPEC_LABEL,
    ContainerInfo,
    ContainerRequest,
    ContainerResult,
    ContainerRuntime,
    Hardening,
    ImageInfo,
    LogSink,
    Mount,
    check_repo_digest,
    log_files,
)

__all__ = [
    "ENGINES",
    "NOBODY",
    "OWNER_HOST_LABEL",
    "OWNER_PID_LABEL",
    "OWNER_START_LABEL",
    "RUN_LABEL",
    "SPEC_LABEL",
    "ContainerInfo",
    "ContainerRequest",
    "ContainerResult",
    "ContainerRuntime",
    "Hardening",
    "ImageInfo",
    "LogSink",
    "Mount",
    "check_repo_digest",
    "default_runtime",
    "engine_info",
    "log_files",
]


ENGINES = ("docker", "podman")


def default_runtime(engine: str | None = None, *, service: str | None = None) -> ContainerRuntime:
    """The engine named (``--runtime``, the spec's ``[runtime] engine``), else Docker.

    The one place that chooses; every command and stage that needs an engine asks here.
    ``service``: a name for an engine service of this process's own (a batch job's):
    Podman starts one on its own socket, which :meth:`close` stops.
    """
    if engine not in (None, *ENGINES):
        raise InputError(
            f"unknown container engine {engine!r}", hint=f"choose one of {', '.join(ENGINES)}"
        )
    if engine == "podman":
        from executor.runtime.podman import PodmanRuntime

        return PodmanRuntime(service=service)
    from executor.runtime.docker import DockerRuntime

    return DockerRuntime()


_default: ContainerRuntime | None = None


def engine_info() -> dict[str, Any]:
    """Engine facts for host capture; ``available: False`` when it cannot be reached."""
    global _default
    _default = _default or default_runtime()
    try:
        return {"available": True, **_default.engine_info()}
    except InfrastructureError as exc:
        return {"available": False, "reason": exc.message}
