"""Classify how the host a replay runs on differs from the host a run was recorded on.

An auditor needs to know, before a replay starts, whether a mismatch could
explain a different result. Each difference between two ``rexec.host/v1``
captures gets one of three impacts:

* ``breaks-bitwise``: floating-point results are expected to change (another
  GPU model, compute capability or SM count, another number of GPUs, another
  CUDA/cuDNN/NCCL or driver *major* version, another CPU architecture);
* ``may-break-bitwise``: results can change depending on the kernels chosen
  (driver or CUDA minor version; CPU model and SIMD flags for a CPU-only job,
  since they decide which BLAS kernels run);
* ``provenance-only``: identity and bookkeeping (serials, UUIDs, PCI bus ids,
  clocks, power limits, hostname, kernel, engine version, memory size).

GPUs are paired by position in PCI bus order, not by UUID, because a replay on
another machine has other UUIDs by definition; the UUID then shows up as a
provenance difference instead of every GPU looking removed and re-added.
Anything not named by a rule is ``provenance-only``: the rules list what is
known to change numerics, and the doc (docs/replay.md) says so.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

BREAKS = "breaks-bitwise"
MAY_BREAK = "may-break-bitwise"
PROVENANCE = "provenance-only"
IMPACT_ORDER = (BREAKS, MAY_BREAK, PROVENANCE)

# (pattern over the dotted path, impact). First match wins. "gpu.devices.N" is
# the i-th GPU in PCI bus order. Version keys get a major/minor split below.
_RULES: tuple[tuple[str, str], ...] = (
    ("gpu.available", BREAKS),
    ("gpu.count", BREAKS),
    ("gpu.devices.count", BREAKS),
    ("gpu.devices.N.name", BREAKS),
    ("gpu.devices.N.compute_capability", BREAKS),
    ("gpu.devices.N.multiprocessor_count", BREAKS),
    ("gpu.devices.N.sm_count", BREAKS),
    ("gpu.devices.N.mig.current", BREAKS),
    ("gpu.devices.N.mig.instances", BREAKS),
    ("gpu.devices.N.nvlinks.active", MAY_BREAK),  # collective algorithms follow topology
    ("cpu.architecture", BREAKS),
    ("cpu.model", MAY_BREAK),  # CPU jobs only; provenance when the job used GPUs
    ("cpu.flags", MAY_BREAK),  # likewise
)
_VERSION_KEYS = (
    "gpu.driver_version",
    "gpu.cuda_driver_version",
    "*cudnn*version*",
    "*nccl*version*",
    "*cuda*version*",
)
_CPU_NUMERICS = ("cpu.model", "cpu.flags")


@dataclass(frozen=True)
class EnvDifference:
    """One way two host captures differ, with how likely it is to change results."""

    path: str
    recorded: Any
    current: Any
    impact: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        """The JSON form used by ``diff`` and the replay verdict."""
        return {
            "path": self.path,
            "recorded": self.recorded,
            "current": self.current,
            "impact": self.impact,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class EnvDiff:
    """Every classified difference between two host captures."""

    differences: tuple[EnvDifference, ...]

    def by_impact(self, impact: str) -> list[EnvDifference]:
        """The differences of one impact level."""
        return [d for d in self.differences if d.impact == impact]

    @property
    def worst(self) -> str | None:
        """The most serious impact found, or None when the hosts match."""
        for impact in IMPACT_ORDER:
            if self.by_impact(impact):
                return impact
        return None

    def to_json(self) -> dict[str, Any]:
        """The JSON form: the differences and the worst impact."""
        return {
            "worst": self.worst,
            "counts": {i: len(self.by_impact(i)) for i in IMPACT_ORDER},
            "differences": [d.to_json() for d in self.differences],
        }


def classify(recorded: Mapping[str, Any], current: Mapping[str, Any], *, uses_gpu: bool) -> EnvDiff:
    """Every leaf that differs between two host captures, with its impact."""
    before = _flatten(_normalise(recorded))
    after = _flatten(_normalise(current))
    diffs = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path, _ABSENT), after.get(path, _ABSENT)
        if old == new:
            continue
        impact, reason = _impact(path, old, new, uses_gpu=uses_gpu)
        diffs.append(
            EnvDifference(
                path=path,
                recorded=None if old is _ABSENT else old,
                current=None if new is _ABSENT else new,
                impact=impact,
                reason=reason,
            )
        )
    diffs.sort(key=lambda d: (IMPACT_ORDER.index(d.impact), d.path))
    return EnvDiff(tuple(diffs))


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Any = _Absent()


def _normalise(host: Mapping[str, Any]) -> dict[str, Any]:
    """Devices keyed by UUID become a list in PCI bus order, plus their count."""
    doc = json.loads(json.dumps(host))  # a deep copy we may reshape
    gpu = doc.get("gpu")
    if isinstance(gpu, dict) and isinstance(gpu.get("devices"), dict):
        devices = list(gpu["devices"].values())
        devices.sort(key=lambda d: str((d.get("pci") or {}).get("bus_id") or d.get("uuid") or ""))
        for device in devices:
            _normalise_device(device)
        gpu["devices"] = {"count": len(devices), "list": devices}
        gpu.pop("topology", None)  # keyed by UUIDs; link kinds are compared per device
    return dict(doc)


def _normalise_device(device: dict[str, Any]) -> None:
    """MIG instances and NVLinks carry UUIDs and bus ids; keep what shapes numerics."""
    mig = device.get("mig")
    if isinstance(mig, dict) and isinstance(mig.get("instances"), list):
        mig["instances"] = sorted(
            f"{i.get('profile')} ({i.get('multiprocessors')} SMs)" for i in mig["instances"]
        )
    links = device.get("nvlinks")
    if isinstance(links, list):
        device["nvlinks"] = {"active": sum(1 for x in links if x.get("active"))}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, list) and prefix.endswith("devices.list"):
        for i, item in enumerate(value):
            out.update(_flatten(item, f"{prefix.removesuffix('.list')}[{i}]"))
    else:
        out[prefix] = value  # other lists (CPU flags, runtimes) compare as one value
    return out


def _impact(path: str, old: Any, new: Any, *, uses_gpu: bool) -> tuple[str, str]:
    if path.startswith("gpu.devices[") and (old is _ABSENT or new is _ABSENT):
        return BREAKS, "a GPU is present on one host only"
    for pattern in _VERSION_KEYS:
        if fnmatch.fnmatchcase(path, pattern):
            return _version_impact(old, new)
    generic = _generic_path(path)
    for pattern, impact in _RULES:
        if fnmatch.fnmatchcase(generic, pattern):
            if generic in _CPU_NUMERICS and uses_gpu:
                return PROVENANCE, "the job ran on GPUs; the CPU does not decide its numerics"
            return impact, _REASONS.get(impact, "")
    return PROVENANCE, "identity or bookkeeping; does not change results"


def _generic_path(path: str) -> str:
    """``gpu.devices[3].name`` → ``gpu.devices.N.name`` for rule matching."""
    if path.startswith("gpu.devices["):
        head, _, tail = path.partition("]")
        return "gpu.devices.N" + tail if head else path
    return path


def _version_impact(old: Any, new: Any) -> tuple[str, str]:
    major_old, major_new = _major(old), _major(new)
    if major_old is None or major_new is None or major_old != major_new:
        return BREAKS, f"major version {major_old} → {major_new}"
    return MAY_BREAK, "same major version, another minor: kernels may differ"


def _major(value: Any) -> str | None:
    if value is _ABSENT or value is None:
        return None
    return str(value).split(".")[0]


_REASONS = {
    BREAKS: "different hardware or library generation: float results are expected to change",
    MAY_BREAK: "can change which kernels run, and so float rounding",
}
