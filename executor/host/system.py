"""The non-GPU half of host capture: CPU, memory, cgroup limits, the OS; the only
module that imports ``psutil``.

CPU model and flags decide which SIMD kernels BLAS picks; cgroup limits decide
how many threads a job really gets; the kernel and OS explain the rest. None of
this needs a driver, so it lives apart from NVML (:mod:`executor.host`).

The job image's package inventory lives with the images (:mod:`executor.images.inventory`).
"""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path
from typing import Any

import psutil

__all__ = [
    "capture_cpu",
    "capture_memory",
    "capture_os",
    "cgroup_limits",
    "cpu_list",
]


def cpu_list(cpus: set[int] | list[int]) -> str:
    """``{0, 1, 2, 5}`` → ``0-2,5`` (the kernel's cpulist format)."""
    out: list[str] = []
    ordered = sorted(cpus)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """Model name and feature flags of the first processor in ``/proc/cpuinfo``."""
    model = flags = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if model is None and key in ("model name", "Model", "cpu model"):
            model = value.strip()
        if flags is None and key in ("flags", "Features"):
            flags = sorted(set(value.split()))
        if model is not None and flags is not None:
            break
    return {"model": model, "flags": flags or []}


def _cgroup_paths(proc_self_cgroup: str) -> dict[str, str]:
    """``/proc/self/cgroup`` → controller → path (``""`` is the v2 unified hierarchy)."""
    paths: dict[str, str] = {}
    for line in proc_self_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                paths[controller] = parts[2]
    return paths


def _first(root: Path, rel: str, name: str) -> str | None:
    """The file in the process's own cgroup, else the hierarchy root (a container's view)."""
    for base in (root / rel.lstrip("/"), root):
        value = _read(base / name)
        if value is not None:
            return value
    return None


def cgroup_limits(
    *, proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")
) -> dict[str, Any]:
    """CPU quota (as a number of CPUs) and memory limit (bytes) of this process's cgroup.

    ``None`` means unlimited. v2 is read when ``cgroup.controllers`` exists at
    the root; otherwise the v1 ``cpu`` and ``memory`` controllers.
    """
    paths = _cgroup_paths(_read(proc_cgroup) or "")
    cpus: float | None = None
    memory: int | None = None
    if (root / "cgroup.controllers").exists():
        rel = paths.get("", "/")
        cpu_max = _first(root, rel, "cpu.max")
        if cpu_max and not cpu_max.startswith("max"):
            quota, period = cpu_max.split()
            cpus = int(quota) / int(period)
        mem_max = _first(root, rel, "memory.max")
        if mem_max and mem_max != "max":
            memory = int(mem_max)
        return {"version": 2, "cpu_limit": cpus, "memory_limit_bytes": memory}
    cpu_rel = paths.get("cpu", "/")
    cfs_quota = _first(root / "cpu", cpu_rel, "cpu.cfs_quota_us")
    cfs_period = _first(root / "cpu", cpu_rel, "cpu.cfs_period_us")
    if cfs_quota and cfs_period and int(cfs_quota) > 0:
        cpus = int(cfs_quota) / int(cfs_period)
    limit = _first(root / "memory", paths.get("memory", "/"), "memory.limit_in_bytes")
    # v1 writes "no limit" as a huge page-aligned number near 2**63.
    if limit and int(limit) < 2**62:
        memory = int(limit)
    return {"version": 1, "cpu_limit": cpus, "memory_limit_bytes": memory}


def capture_cpu() -> dict[str, Any]:
    """CPU model, flags and the cgroup's CPU limits: they pick BLAS kernels and thread counts."""
    info = parse_cpuinfo(_read(Path("/proc/cpuinfo")) or "")
    affinity = os.sched_getaffinity(0)
    return {
        **info,
        "architecture": platform.machine(),
        "logical": os.cpu_count(),
        "physical": psutil.cpu_count(logical=False),
        "affinity": cpu_list(affinity),
        "affinity_count": len(affinity),
        "cgroup": cgroup_limits(),
    }


def capture_memory() -> dict[str, Any]:
    """Total and available memory, and the cgroup's limit."""
    limits = cgroup_limits()
    return {
        "total_bytes": psutil.virtual_memory().total,
        "cgroup_limit_bytes": limits["memory_limit_bytes"],
    }


def parse_os_release(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            out[key.strip()] = value.strip().strip('"')
    return out


def capture_os() -> dict[str, Any]:
    """Kernel, OS release and C library: the rest of what can change a result."""
    release = parse_os_release(_read(Path("/etc/os-release")) or "")
    return {
        "name": release.get("PRETTY_NAME"),
        "id": release.get("ID"),
        "version_id": release.get("VERSION_ID"),
        "kernel": platform.release(),
        "kernel_version": platform.version(),
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
    }


# --- inside the job's image -------------------------------------------------
