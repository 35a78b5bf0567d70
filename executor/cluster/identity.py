"""Who the job is, as Slurm told the node: the identity a cluster run's record signs.

Read from the ``SLURM_*`` variables slurmd sets in the batch step (all seen
in a 22.05 job; account and qos only with accounting). GPUs: Slurm's GRES
indices are per node and index gres.conf's device list, so they are neither
NVML indices nor stable names; they are resolved here to NVML UUIDs (the
index-th GPU in PCI bus order, which is what ``AutoDetect=nvml`` and an
ordered ``File=/dev/nvidia[0-N]`` give) and both are recorded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from executor.errors import InputError
from executor.host import gpu_inventory

__all__ = ["allocated_cpus", "allocated_memory", "gpu_indices", "job_identity", "resolve_allocated"]

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def _int(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name, "").strip()
    return int(value) if value.isdigit() else None


def gpu_indices(env: Mapping[str, str]) -> list[int]:
    """``SLURM_JOB_GPUS`` (or the step's) ``0,2-3`` → ``[0, 2, 3]``; none without GRES."""
    raw = env.get("SLURM_STEP_GPUS") or env.get("SLURM_JOB_GPUS") or ""
    found: list[int] = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        match = _RANGE.match(part)
        if match is None:
            raise InputError(f"SLURM_JOB_GPUS={raw!r}: not a list of GPU indices")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        found.extend(range(low, high + 1))
    return found


def resolve_allocated(indices: Sequence[int], *, nvml: Any | None = None) -> tuple[str, ...]:
    """The allocated GRES indices as NVML UUIDs (PCI bus order), or a clear error."""
    if not indices:
        return ()
    inventory = gpu_inventory(nvml)
    if not inventory.gpus:
        raise InputError(
            f"Slurm allocated GPUs {list(indices)} but this node shows none through NVML: "
            f"{inventory.reason}",
            hint="check the node's NVIDIA driver, or submit without --gpus-per-node",
        )
    present = [g.uuid for g in inventory.gpus]
    beyond = [i for i in indices if i >= len(present)]
    if beyond:
        raise InputError(
            f"Slurm allocated GPU indices {list(indices)} but this node has {len(present)} GPU(s)",
            hint="the node's gres.conf lists more devices than NVML sees; ask the admins",
        )
    return tuple(present[i] for i in indices)


def allocated_cpus(env: Mapping[str, str]) -> int | None:
    """The CPUs Slurm gave this job on this node (Docker does not see Slurm's cgroup)."""
    return _int(env, "SLURM_CPUS_ON_NODE")


def allocated_memory(env: Mapping[str, str]) -> int | None:
    """The memory Slurm gave this job on this node, in bytes (``SLURM_MEM_PER_NODE`` is MB)."""
    mb = _int(env, "SLURM_MEM_PER_NODE")
    return None if mb is None else mb << 20


def job_identity(
    env: Mapping[str, str],
    *,
    nodes: Sequence[str],
    gpu_uuids: Sequence[str],
    submit_host: str,
    site: Mapping[str, Any],
) -> dict[str, Any]:
    """The job as the record states it (``internalParameters.scheduler``)."""
    array_job, array_task = _int(env, "SLURM_ARRAY_JOB_ID"), _int(env, "SLURM_ARRAY_TASK_ID")
    identity: dict[str, Any] = {
        "kind": "slurm",
        "cluster": env.get("SLURM_CLUSTER_NAME"),
        "jobId": env.get("SLURM_JOB_ID"),
        "jobName": env.get("SLURM_JOB_NAME"),
        "restartCount": _int(env, "SLURM_RESTART_COUNT") or 0,  # unset on the first run
        "partition": env.get("SLURM_JOB_PARTITION"),
        "nodeList": env.get("SLURM_JOB_NODELIST"),
        "nodes": list(nodes),
        "node": env.get("SLURMD_NODENAME"),
        "submitHost": env.get("SLURM_SUBMIT_HOST") or submit_host,
        "user": env.get("SLURM_JOB_USER"),
        "gpus": {"slurmIndices": gpu_indices(env), "uuids": list(gpu_uuids)},
        "cpusOnNode": allocated_cpus(env),
        "memPerNodeBytes": allocated_memory(env),
        "siteOptions": {k: v for k, v in site.items() if v not in (None, (), [], False)},
    }
    if array_job is not None:
        identity["array"] = {"jobId": str(array_job), "taskId": array_task}
    for key, name in (("account", "SLURM_JOB_ACCOUNT"), ("qos", "SLURM_JOB_QOS")):
        if env.get(name):
            identity[key] = env[name]
    return identity
