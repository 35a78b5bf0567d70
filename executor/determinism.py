"""The environment that makes a job as deterministic as its frameworks allow.

These variables must be set *before* the job's interpreter starts: CUDA reads
``CUBLAS_WORKSPACE_CONFIG`` when cuBLAS initialises, OpenMP reads its thread
count at load time, and Python fixes its hash seed at start-up. So rexec puts
them in the container's environment rather than asking the job to set them.
Each variable and its reason is in :data:`REASONS` and in
``docs/determinism.md``; the returned mapping is recorded verbatim in the
manifest so a replay sets exactly the same ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from executor.canonical import StrictJSONError, strict_loads
from executor.errors import InputError

__all__ = [
    "CONTAINER_HELPER_DIR",
    "FRAMEWORKS",
    "HELPER_DIR",
    "MAX_SEED",
    "REASONS",
    "cpu_threads",
    "determinism_env",
    "portability_notes",
    "report_state",
]

# The folder holding rexec_runtime.py (seed_everything): mount it read-only at
# CONTAINER_HELPER_DIR and prepend that to PYTHONPATH. It has no __init__.py on
# purpose: it is a plain import root inside the container, not a package.
HELPER_DIR = Path(__file__).resolve().parent / "job"
CONTAINER_HELPER_DIR = "/opt/rexec"

FRAMEWORKS = ("numpy", "torch", "tensorflow", "jax")

# PYTHONHASHSEED accepts 0..2**32-1, and so does numpy's legacy global seed.
MAX_SEED = 2**32 - 1

REASONS: dict[str, str] = {
    "REXEC_SEED": "the run's seed; seed_everything() and the job read it",
    "PYTHONHASHSEED": "fixes str/bytes hashing, so set and dict iteration order repeats",
    "REXEC_DETERMINISM_FRAMEWORKS": "tells seed_everything() which frameworks the spec asked for",
    "REXEC_DETERMINISM_STRICT": "1: nondeterministic ops raise; 0: they only warn",
    "REXEC_DETERMINISM_AUTO": "0: rexec's start-up hook leaves a job that never seeds alone",
    "OMP_NUM_THREADS": "fixed OpenMP thread count: parallel reductions sum in a fixed order",
    "MKL_NUM_THREADS": "same for Intel MKL (conda/pip builds of numpy and torch)",
    "OPENBLAS_NUM_THREADS": "same for OpenBLAS (numpy and scipy wheels)",
    "CUDA_DEVICE_ORDER": "CUDA numbers GPUs by PCI bus id, the order NVML and rexec use",
    "CUBLAS_WORKSPACE_CONFIG": (
        "a fixed cuBLAS workspace; torch's deterministic mode requires it on CUDA >= 10.2"
    ),
    "NCCL_ALGO": "one collective algorithm: NCCL otherwise picks per message size and topology",
    "NCCL_PROTO": "one protocol (Simple): LL/LL128 change the reduction's chunking",
    "NCCL_NVLS_ENABLE": "no NVLink SHARP: in-switch reductions have their own order",
    "TF_DETERMINISTIC_OPS": "TensorFlow picks deterministic kernels or raises",
    "TF_ENABLE_ONEDNN_OPTS": "0: oneDNN CPU kernels may reorder float sums by CPU model",
    "XLA_FLAGS": "XLA (JAX) uses deterministic GPU scatter/reduction kernels",
}


def determinism_env(
    *,
    seed: int,
    frameworks: Sequence[str],
    strict: bool,
    cpu_threads: int = 1,
    gpus: bool = False,
    automatic: bool = True,
) -> dict[str, str]:
    """Every variable rexec sets in the container for determinism (``[determinism]``).

    ``cpu_threads`` pins the BLAS/OpenMP pools; one thread is the default
    because it is the only count whose summation order is the same on every
    machine. ``gpus`` adds the cuBLAS and NCCL pins, which are meaningless
    without a GPU and would only clutter the record.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InputError(
            f"seed: expected an integer from 0 to {MAX_SEED}, got {seed!r}",
            hint="PYTHONHASHSEED and numpy accept only 32-bit unsigned seeds",
        )
    unknown = sorted(set(frameworks) - set(FRAMEWORKS))
    if unknown:
        raise InputError(
            f"[determinism] frameworks: unknown {', '.join(map(repr, unknown))}",
            hint=f"choose from {', '.join(FRAMEWORKS)}",
        )
    if isinstance(cpu_threads, bool) or not isinstance(cpu_threads, int) or cpu_threads < 1:
        raise InputError(
            f"[resources] cpu threads: expected a positive integer, got {cpu_threads!r}",
            hint="use 1 for bitwise-repeatable CPU reductions",
        )
    chosen = sorted(set(frameworks))
    threads = str(cpu_threads)
    env = {
        "REXEC_SEED": str(seed),
        "PYTHONHASHSEED": str(seed),
        "REXEC_DETERMINISM_FRAMEWORKS": ",".join(chosen),
        "REXEC_DETERMINISM_STRICT": "1" if strict else "0",
        "REXEC_DETERMINISM_AUTO": "1" if automatic else "0",
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    }
    if gpus or "torch" in chosen:
        # Harmless on CPU-only torch, and torch raises without it on CUDA.
        env["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    if gpus:
        env |= {
            "NCCL_ALGO": "Ring",
            "NCCL_PROTO": "Simple",
            "NCCL_NVLS_ENABLE": "0",
        }
    if "tensorflow" in chosen:
        env["TF_DETERMINISTIC_OPS"] = "1"
        env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    if "jax" in chosen:
        env["XLA_FLAGS"] = "--xla_gpu_deterministic_ops=true"
    return env


def cpu_threads(cpus: float | None) -> int:
    """The BLAS/OpenMP thread count for ``[resources] cpus``: whole CPUs, at least one."""
    return max(1, int(cpus or 1))


def portability_notes(*, cpu_threads: int) -> list[str]:
    """What this run's settings cost in bit-identity across machines, said and recorded.

    More than one BLAS/OpenMP thread splits reductions by thread, and how a
    library splits them depends on the thread count and the CPU: the same run
    repeats bit for bit on this machine, but not necessarily on another.
    """
    if cpu_threads <= 1:
        return []
    return [
        f"resources.cpus = {cpu_threads}: BLAS/OpenMP run {cpu_threads} threads, which split "
        "float reductions by thread; the run repeats bit for bit on this machine, but a "
        "machine with another CPU or library build may differ in the last bits (cpus = 1 "
        "is portable)"
    ]


# What rexec_runtime (seed_everything, or its start-up hook) writes to the job's reports.
REPORT = "determinism.json"


def report_state(job_meta: Mapping[str, bytes], frameworks: Iterable[str]) -> dict[str, Any]:
    """Whether the job's determinism report came back, and who wrote it.

    ``mode`` is ``helper`` (the job called seed_everything()), ``automatic``
    (rexec's start-up hook applied what it could) or ``absent`` (no Python of
    the job reported: a non-Python job, ``python -I``/``-S``, or a job that died
    first). Read from the job's own file, so anything else is ``unrecognised``.
    """
    wanted = sorted(frameworks)
    data = job_meta.get(REPORT)
    if data is None:
        return {"report": "absent", "requested": wanted}
    try:
        mode = strict_loads(data).get("mode")
    except (StrictJSONError, AttributeError):
        mode = None
    if mode not in ("helper", "automatic"):
        mode = "unrecognised"
    return {"report": mode, "requested": wanted}
