"""The non-GPU half of host capture, and the job image's package inventory.

CPU model and flags decide which SIMD kernels BLAS picks; cgroup limits decide
how many threads a job really gets; the kernel and OS explain the rest. None of
this needs a driver, so it lives apart from NVML (:mod:`executor.host`).

The package inventory is read *inside* the job's image, because that, not the
host, is what the job imports. It runs once per image digest and is cached.
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
from pathlib import Path
from typing import Any

import psutil

from executor.errors import InputError

__all__ = [
    "INVENTORY_SCHEMA",
    "INVENTORY_SCRIPT",
    "capture_cpu",
    "capture_memory",
    "capture_os",
    "cgroup_limits",
    "cpu_list",
    "inventory_cache_path",
    "parse_inventory",
]

INVENTORY_SCHEMA = "rexec.inventory/v1"


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

# The Python half runs with whatever interpreter the image has. It must not use
# single quotes (it sits inside sh '…'), must not write (read-only root), and
# must survive a missing or broken torch: a version we cannot read is null.
_INVENTORY_PY = r"""
import json, os, platform, subprocess, sys
from importlib import metadata
out = {"schema": "rexec.inventory/v1", "python": {"version": platform.python_version(),
       "implementation": platform.python_implementation(), "executable": sys.executable}}
pkgs = {}
for d in metadata.distributions():
    name = d.metadata["Name"]
    if name:
        pkgs[name] = d.version
out["pip"] = [{"name": k, "version": pkgs[k]} for k in sorted(pkgs, key=str.lower)]
try:
    rows = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${Architecture}\n"],
                          capture_output=True, text=True, check=True).stdout.splitlines()
    out["dpkg"] = [dict(zip(("name", "version", "arch"), r.split("\t"))) for r in sorted(rows) if r]
except (OSError, subprocess.CalledProcessError):
    out["dpkg"] = None
keys = ("CUDA_VERSION", "CUDNN_VERSION", "NCCL_VERSION", "NV_CUDNN_VERSION")
out["env"] = {k: os.environ[k] for k in keys if os.environ.get(k)}
fw = {}
if "torch" in pkgs:
    try:
        import torch
        fw["torch"] = torch.__version__
        fw["cuda_runtime"] = torch.version.cuda
        try:
            fw["cudnn"] = torch.backends.cudnn.version()
        except Exception:
            fw["cudnn"] = None
        try:
            v = torch.cuda.nccl.version()
            fw["nccl"] = ".".join(map(str, v)) if isinstance(v, tuple) else v
        except Exception:
            fw["nccl"] = None
    except Exception as exc:
        fw["torch_error"] = repr(exc)
out["frameworks"] = fw
sys.stdout.write(json.dumps(out) + "\n")
"""

INVENTORY_SCRIPT = (
    "set -u\n"
    "for py in python3 python; do\n"
    '  if command -v "$py" >/dev/null 2>&1; then\n'
    f"    exec \"$py\" -B -c '{_INVENTORY_PY}'\n"
    "  fi\n"
    "done\n"
    "# No Python: Debian package names and versions never contain quotes or backslashes.\n"
    'printf \'{"schema":"rexec.inventory/v1","python":null,"pip":[],"frameworks":{},"dpkg":\'\n'
    "if command -v dpkg-query >/dev/null 2>&1; then\n"
    "  printf '['\n"
    "  dpkg-query -W -f "
    '\'{"name":"${Package}","version":"${Version}","arch":"${Architecture}"}\\n\''
    " | sort | sed '$!s/$/,/' | tr -d '\\n'\n"
    "  printf ']}\\n'\n"
    "else\n"
    "  printf 'null}\\n'\n"
    "fi\n"
)


def parse_inventory(stdout: str) -> dict[str, Any]:
    """The one JSON object :data:`INVENTORY_SCRIPT` printed (its last non-empty line).

    Earlier lines are tolerated because an image's ``sitecustomize`` or an
    import may print; the inventory is always written last.
    """
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    try:
        value = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"the image's package inventory is not JSON ({exc}); last line: {lines[-1][:200]!r}",
            hint="the image must provide /bin/sh; check the image runs `sh -c true`",
        ) from exc
    if not isinstance(value, dict) or value.get("schema") != INVENTORY_SCHEMA:
        raise InputError(
            "the image's package inventory has no rexec.inventory/v1 object on its last line",
            details=lines[-3:],
            hint="the image must provide /bin/sh; check the image runs `sh -c true`",
        )
    return value


_DIGEST = re.compile(r"^(sha256):([0-9a-f]{64})$")


def inventory_cache_path(image_digest: str) -> Path:
    """Where the inventory of ``sha256:<hex>`` is cached (content-addressed, never stale)."""
    m = _DIGEST.match(image_digest)
    if not m:
        raise InputError(
            f"image digest {image_digest!r}: expected sha256:<64 lowercase hex>",
            hint="pin images by digest (`rexec lock` writes it)",
        )
    base = os.environ.get("REXEC_CACHE_DIR") or str(Path.home() / ".cache" / "rexec")
    return Path(base) / "inventory" / f"{m.group(1)}-{m.group(2)}.json"
