"""GPUs as NVML sees them, and a spec's GPU request resolved to this host's GPUs.

A run record has to say what the job ran on, because a different GPU model,
driver or topology is the first thing that breaks bitwise reproducibility.
NVML is the source of truth for NVIDIA GPUs; everything else about the host
(CPU, memory, cgroups, OS) lives in :mod:`executor.host.system`, and
:func:`executor.host.capture_host` merges the two.

Every NVML call goes through an ``nvml`` object that is the real ``pynvml``
module in production and a :class:`executor.host.nvml_replay.ReplayNvml` (or a
recorder) in tests and in ``scripts/record-nvml``. The replay raises the real
``pynvml.NVMLError_*`` classes, so the ``except`` clauses below are exactly
the ones exercised by the fixtures (see ``docs/hardware.md``).

Failure policy, as data rather than crashes:

* NVML cannot start (``LibraryNotFound`` on hosts without a driver,
  ``DriverNotLoaded``, ``NoPermission``): ``gpu.available`` is false and
  ``gpu.reason`` says why; the run goes on without GPUs.
* A GPU lacks a feature (``NotSupported``, ``FunctionNotFound``,
  ``NoPermission``, or any other NVML error for that one query): the field is
  ``null`` and ``unavailable[field]`` names the NVML error.
* NVML is shut down whenever it was started.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from executor.errors import InputError
from executor.host import nvml as seam
from executor.host.nvml import NvmlUnavailable, error_name, nvml_session, reason, text
from executor.host.system import cpu_list

HOST_SCHEMA = "rexec.host/v1"

# Enough 64-bit words for 1024 CPUs. A constant (not derived from this host's
# CPU count) so a recorded fixture replays the same call on any machine.
CPU_SET_WORDS = 16

# `nvidia-smi topo -m` letters for nvmlDeviceGetTopologyCommonAncestor levels.
# INTERNAL (two GPUs on one board) has no letter of its own in nvidia-smi's
# legend; we keep NVML's name rather than invent one.
TOPOLOGY_LETTERS = {
    0: "INTERNAL",
    10: "PIX",  # at most one PCIe bridge between the two
    20: "PXB",  # several PCIe bridges, no host bridge
    30: "PHB",  # through a PCIe host bridge (the CPU)
    40: "NODE",  # across host bridges within one NUMA node
    50: "SYS",  # across NUMA nodes (the SMP interconnect)
}
NVLINK_REMOTE_TYPES = {0: "gpu", 1: "ibmnpu", 2: "switch", 0xFF: "unknown"}
COMPUTE_MODES = {0: "Default", 1: "ExclusiveThread", 2: "Prohibited", 3: "ExclusiveProcess"}
CLOCKS = {"graphics": 0, "sm": 1, "memory": 2}  # NVML_CLOCK_GRAPHICS / _SM / _MEM
APP_CLOCKS = {"graphics": 0, "memory": 2}


class _Query:
    """Runs one NVML query per field and turns an NVML error into a recorded gap."""

    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml
        self.unavailable: dict[str, str] = {}

    def __call__(self, field: str, fn: str, *args: Any) -> Any:
        try:
            return getattr(self.nvml, fn)(*args)
        except self.nvml.NVMLError as exc:
            self.unavailable[field] = error_name(exc)
            return None


def _cpu_list(words: Sequence[int]) -> str:
    """NVML's 64-bit affinity words → ``0-23,48-71`` (the kernel's cpulist format)."""
    return cpu_list([w * 64 + b for w, x in enumerate(words) for b in range(64) if int(x) >> b & 1])


def _opt(value: Any, convert: Callable[[Any], Any]) -> Any:
    return None if value is None else convert(value)


def _pci(struct: Any) -> dict[str, Any]:
    return {
        "bus_id": text(struct.busId).lower(),
        "device_id": f"0x{int(struct.pciDeviceId):08x}",
        "subsystem_id": f"0x{int(struct.pciSubSystemId):08x}",
    }


def _mig_profile(name: str | None, attrs: Any) -> str | None:
    """``NVIDIA A100-SXM4-40GB MIG 1g.5gb`` → ``1g.5gb``; else from the slice counts."""
    if name and (m := re.search(r"MIG (\S+)$", name)):
        return m.group(1)
    if attrs is not None:
        gb = round(int(attrs.memorySizeMB) / 1024)
        return f"{int(attrs.gpuInstanceSliceCount)}g.{gb}gb"
    return None


def _mig_instance(nvml: Any, mig: Any) -> dict[str, Any]:
    q = _Query(nvml)
    name = _opt(q("name", "nvmlDeviceGetName", mig), text)
    attrs = q("attributes", "nvmlDeviceGetAttributes", mig)
    return {
        "uuid": _opt(q("uuid", "nvmlDeviceGetUUID", mig), text),
        "name": name,
        "profile": _mig_profile(name, attrs),
        "gpu_instance_id": q("gpu_instance_id", "nvmlDeviceGetGpuInstanceId", mig),
        "compute_instance_id": q("compute_instance_id", "nvmlDeviceGetComputeInstanceId", mig),
        "multiprocessors": _opt(attrs, lambda a: int(a.multiprocessorCount)),
        "memory_total_bytes": _opt(
            q("memory_total", "nvmlDeviceGetMemoryInfo", mig), lambda m: int(m.total)
        ),
        "unavailable": q.unavailable,
    }


def _mig(nvml: Any, handle: Any, q: _Query) -> dict[str, Any]:
    mode = q("mig_mode", "nvmlDeviceGetMigMode", handle)
    state = {1: "enabled", 0: "disabled"}
    out: dict[str, Any] = {
        "current": _opt(mode, lambda m: state.get(m[0], str(m[0]))),
        "pending": _opt(mode, lambda m: state.get(m[1], str(m[1]))),
        "instances": [],
    }
    if not mode or not mode[0]:
        return out
    for index in range(q("mig_max_devices", "nvmlDeviceGetMaxMigDeviceCount", handle) or 0):
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, index)
        except nvml.NVMLError_NotFound:
            continue  # slot not populated: NVML's documented answer
        out["instances"].append(_mig_instance(nvml, mig))
    out["instances"].sort(key=lambda i: str(i["uuid"]))
    return out


def _nvlinks(nvml: Any, handle: Any, q: _Query) -> list[dict[str, Any]] | None:
    """Every NVLink of one GPU; ``None`` when the GPU has none (recorded in ``unavailable``)."""
    links: list[dict[str, Any]] = []
    for link in range(int(nvml.NVML_NVLINK_MAX_LINKS)):
        try:
            active = nvml.nvmlDeviceGetNvLinkState(handle, link)
        except nvml.NVMLError_InvalidArgument:
            break  # past this GPU's last link
        except nvml.NVMLError as exc:
            if link == 0:
                q.unavailable["nvlink"] = error_name(exc)
                return None
            break
        entry: dict[str, Any] = {"link": link, "active": bool(active)}
        if active:
            lq = _Query(nvml)
            remote = lq("remote_pci", "nvmlDeviceGetNvLinkRemotePciInfo", handle, link)
            kind = lq("remote_type", "nvmlDeviceGetNvLinkRemoteDeviceType", handle, link)
            entry["remote_bus_id"] = _opt(remote, lambda r: text(r.busId).lower())
            entry["remote_type"] = _opt(kind, lambda k: NVLINK_REMOTE_TYPES.get(k, "unknown"))
            if lq.unavailable:
                entry["unavailable"] = lq.unavailable
        links.append(entry)
    return links


def _device(nvml: Any, h: Any) -> dict[str, Any]:
    q = _Query(nvml)
    ecc = q("ecc_mode", "nvmlDeviceGetEccMode", h)
    device: dict[str, Any] = {
        "name": _opt(q("name", "nvmlDeviceGetName", h), text),
        "uuid": _opt(q("uuid", "nvmlDeviceGetUUID", h), text),
        "serial": _opt(q("serial", "nvmlDeviceGetSerial", h), text),
        "pci": _opt(q("pci", "nvmlDeviceGetPciInfo", h), _pci),
        "vbios": _opt(q("vbios", "nvmlDeviceGetVbiosVersion", h), text),
        "memory_total_bytes": _opt(
            q("memory_total", "nvmlDeviceGetMemoryInfo", h), lambda m: int(m.total)
        ),
        "compute_capability": _opt(
            q("compute_capability", "nvmlDeviceGetCudaComputeCapability", h),
            lambda cc: f"{cc[0]}.{cc[1]}",
        ),
        "ecc": _opt(ecc, lambda e: {"current": bool(e[0]), "pending": bool(e[1])}),
        "persistence_mode": _opt(q("persistence_mode", "nvmlDeviceGetPersistenceMode", h), bool),
        "power_limit_watts": _opt(
            q("power_limit", "nvmlDeviceGetPowerManagementLimit", h), lambda mw: int(mw) / 1000
        ),
        "max_clocks_mhz": {
            k: q(f"max_clock_{k}", "nvmlDeviceGetMaxClockInfo", h, c) for k, c in CLOCKS.items()
        },
        "application_clocks_mhz": {
            k: q(f"application_clock_{k}", "nvmlDeviceGetApplicationsClock", h, c)
            for k, c in APP_CLOCKS.items()
        },
        "compute_mode": _opt(
            q("compute_mode", "nvmlDeviceGetComputeMode", h), lambda m: COMPUTE_MODES.get(m, str(m))
        ),
        "cpu_affinity": _opt(
            q("cpu_affinity", "nvmlDeviceGetCpuAffinity", h, CPU_SET_WORDS), _cpu_list
        ),
        "numa_node": q("numa_node", "nvmlDeviceGetNumaNodeId", h),
    }
    device["mig"] = _mig(nvml, h, q)
    device["nvlinks"] = _nvlinks(nvml, h, q)
    device["unavailable"] = q.unavailable
    return device


def _nv_count(a: dict[str, Any], b: dict[str, Any]) -> int:
    """Bonded NVLinks between two GPUs, as ``nvidia-smi topo -m`` counts them.

    Direct links are those on ``a`` whose remote bus id is ``b``'s. Through
    NVSwitch every GPU reaches every other, so the count is the switch links
    both sides have (the smaller of the two).
    """
    la, lb = a.get("nvlinks") or [], b.get("nvlinks") or []
    b_bus = (b.get("pci") or {}).get("bus_id")
    direct = sum(1 for x in la if x["active"] and x.get("remote_bus_id") == b_bus)
    sw_a = sum(1 for x in la if x["active"] and x.get("remote_type") == "switch")
    sw_b = sum(1 for x in lb if x["active"] and x.get("remote_type") == "switch")
    return direct + min(sw_a, sw_b)


def _topology(nvml: Any, order: list[tuple[Any, dict[str, Any]]]) -> list[dict[str, Any]]:
    pairs: list[dict[str, Any]] = []
    for i, (ha, a) in enumerate(order):
        for hb, b in order[i + 1 :]:
            entry: dict[str, Any] = {"gpus": sorted([a["uuid"], b["uuid"]])}
            try:
                level = int(nvml.nvmlDeviceGetTopologyCommonAncestor(ha, hb))
                entry["pcie"] = TOPOLOGY_LETTERS.get(level, f"LEVEL{level}")
            except nvml.NVMLError as exc:
                entry["pcie"] = None
                entry["unavailable"] = {"pcie": error_name(exc)}
            nv = _nv_count(a, b)
            entry["nvlinks"] = nv
            entry["link"] = f"NV{nv}" if nv else entry["pcie"]
            pairs.append(entry)
    pairs.sort(key=lambda p: p["gpus"])
    return pairs


def _cuda_version(v: int | None) -> str | None:
    """NVML's 12040 → ``12.4`` (major*1000 + minor*10)."""
    return None if v is None else f"{v // 1000}.{v % 1000 // 10}"


def _device_count(nvml: Any) -> int:
    """``nvmlDeviceGetCount``; its failure means NVML is not usable on this host."""
    try:
        return int(nvml.nvmlDeviceGetCount())
    except nvml.NVMLError as exc:
        raise NvmlUnavailable(reason(exc)) from exc


def capture_gpus(nvml: Any | None = None) -> dict[str, Any]:
    """The ``gpu`` section of the host capture: system versions, devices by UUID, topology."""
    if nvml is None:
        try:
            nvml = seam.load_nvml()
        except ImportError as exc:
            return {"available": False, "reason": f"nvidia-ml-py is not installed: {exc}"}
    try:
        with nvml_session(nvml):
            q = _Query(nvml)
            system = {
                "driver_version": _opt(q("driver_version", "nvmlSystemGetDriverVersion"), text),
                "nvml_version": _opt(q("nvml_version", "nvmlSystemGetNVMLVersion"), text),
                "cuda_driver_version": _cuda_version(
                    q("cuda_driver_version", "nvmlSystemGetCudaDriverVersion")
                ),
            }
            count = _device_count(nvml)
            order: list[tuple[Any, dict[str, Any]]] = []
            unreachable: list[dict[str, Any]] = []
            for index in range(count):
                try:
                    handle = nvml.nvmlDeviceGetHandleByIndex(index)
                except nvml.NVMLError as exc:  # e.g. GpuIsLost: the others still count
                    unreachable.append({"nvml_index": index, "error": error_name(exc)})
                    continue
                order.append((handle, _device(nvml, handle)))
            devices = {str(d["uuid"] or f"unidentified-{i}"): d for i, (_, d) in enumerate(order)}
            topology = _topology(nvml, order)
    except NvmlUnavailable as exc:
        return {"available": False, "reason": exc.reason}
    if count == 0:
        return {"available": False, "reason": "NVML started but reports 0 GPUs", **system}
    return {
        "available": True,
        **system,
        "unavailable": q.unavailable,
        "unreachable": unreachable,
        "count": count,
        "devices": devices,
        "topology": topology,
    }


@dataclass(frozen=True)
class GpuId:
    """One physical GPU as resolution needs it: UUID, PCI bus id, its MIG instances."""

    uuid: str
    bus_id: str
    mig_uuids: tuple[str, ...] = ()


@dataclass(frozen=True)
class GpuInventory:
    """The GPUs of this host in PCI bus order, or why there are none."""

    gpus: tuple[GpuId, ...]
    reason: str | None = None


def gpu_inventory(nvml: Any | None = None) -> GpuInventory:
    """Just enough NVML to resolve a GPU request (no clocks, no topology)."""
    if nvml is None:
        try:
            nvml = seam.load_nvml()
        except ImportError as exc:
            return GpuInventory((), f"nvidia-ml-py is not installed: {exc}")
    try:
        with nvml_session(nvml):
            gpus: list[GpuId] = []
            for index in range(_device_count(nvml)):
                try:
                    h = nvml.nvmlDeviceGetHandleByIndex(index)
                except nvml.NVMLError:
                    continue  # a lost GPU is never handed to a job
                try:
                    uuid = text(nvml.nvmlDeviceGetUUID(h))
                    bus_id = text(nvml.nvmlDeviceGetPciInfo(h).busId).lower()
                except nvml.NVMLError:
                    continue  # a GPU without a UUID cannot be pinned
                migs = [m["uuid"] for m in _mig(nvml, h, _Query(nvml))["instances"] if m["uuid"]]
                gpus.append(GpuId(uuid=uuid, bus_id=bus_id, mig_uuids=tuple(migs)))
    except NvmlUnavailable as exc:
        return GpuInventory((), exc.reason)
    if not gpus:
        return GpuInventory((), "NVML started but reports 0 GPUs")
    return GpuInventory(tuple(sorted(gpus, key=lambda g: g.bus_id)))


_KEY = "[resources] gpus"


def resolve_gpus(
    request: str | int | Sequence[str] | None, *, nvml: Any | None = None
) -> tuple[str, ...]:
    """``"all"`` | N | ``["GPU-…", "MIG-…"]`` → the UUIDs handed to Docker.

    ``N`` takes the first N GPUs in PCI bus order, which is stable across
    reboots (NVML's index order is not promised to be). Nothing is asked of
    NVML when no GPU is requested, so CPU-only runs never touch the driver.
    """
    if request is None or request == 0 or (isinstance(request, (list, tuple)) and not request):
        return ()
    if isinstance(request, bool) or not isinstance(request, (str, int, list, tuple)):
        raise InputError(
            f'{_KEY}: expected "all", a GPU count or a list of GPU UUIDs, got {request!r}',
            hint='write gpus = "all", gpus = 2 or gpus = ["GPU-…"]',
        )
    if isinstance(request, str) and request != "all":
        raise InputError(
            f'{_KEY}: expected "all", a count or a list of UUIDs, got the string {request!r}',
            hint='write gpus = "all", gpus = 2 or gpus = ["GPU-…"] (a list, even for one)',
        )
    if isinstance(request, int) and request < 0:
        raise InputError(
            f"{_KEY}: a GPU count cannot be negative ({request})", hint="use 0 or more"
        )
    inventory = gpu_inventory(nvml)
    if not inventory.gpus:
        raise InputError(
            f"{_KEY} asks for GPUs ({request!r}) but this host has no NVIDIA GPU: "
            f"{inventory.reason}",
            hint="run on a GPU host, or remove `gpus` from [resources] for a CPU-only run",
        )
    present = [g.uuid for g in inventory.gpus]
    if request == "all":
        return tuple(present)
    if isinstance(request, int):
        if request > len(present):
            raise InputError(
                f"{_KEY} = {request} but this host has {len(present)} NVIDIA GPU(s)",
                details=present,
                hint=f"ask for at most {len(present)}, or name GPUs by UUID",
            )
        return tuple(present[:request])
    known = set(present) | {m for g in inventory.gpus for m in g.mig_uuids}
    listed = [str(u) for u in request]
    unknown = [u for u in listed if u not in known]
    if unknown:
        raise InputError(
            f"{_KEY}: no GPU with UUID {', '.join(unknown)} on this host; present:",
            details=sorted(known),
            hint="`rexec env` lists this host's GPUs by UUID",
        )
    if len(set(listed)) != len(listed):
        raise InputError(f"{_KEY}: a GPU UUID is listed twice: {listed}", hint="list each GPU once")
    return tuple(listed)
