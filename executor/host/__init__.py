"""Host capture: everything about this host that can change a run's result (the face of ``host/``).

GPUs, driver and topology come from NVML (``gpus``, over the ``nvml`` seam), CPU,
memory and the operating system from ``system``; :func:`resolve_gpus` turns a
spec's GPU request into the UUIDs of this host's GPUs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from executor.host.gpus import (
    HOST_SCHEMA,
    GpuId,
    GpuInventory,
    capture_gpus,
    gpu_inventory,
    resolve_gpus,
)
from executor.host.nvml import NvmlUnavailable, load_nvml, nvml_session
from executor.host.system import capture_cpu, capture_memory, capture_os


def capture_host(
    *, engine: Mapping[str, Any] | None = None, nvml: Any | None = None
) -> dict[str, Any]:
    """Everything about this host that can change a run's result (``rexec.host/v1``).

    ``engine`` is what the container runtime reported; without it the record
    says the engine was not asked, rather than guessing.
    """
    return {
        "schema": HOST_SCHEMA,
        "gpu": capture_gpus(nvml),
        "cpu": capture_cpu(),
        "memory": capture_memory(),
        "os": capture_os(),
        "engine": dict(engine)
        if engine is not None
        else {
            "available": False,
            "reason": "the container engine was not queried",
        },
    }


__all__ = [
    "HOST_SCHEMA",
    "GpuId",
    "GpuInventory",
    "NvmlUnavailable",
    "capture_gpus",
    "capture_host",
    "gpu_inventory",
    "load_nvml",
    "nvml_session",
    "resolve_gpus",
]
