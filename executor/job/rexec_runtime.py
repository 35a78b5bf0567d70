"""rexec's helper inside the job's container: ``from rexec_runtime import seed_everything``.

rexec mounts this folder read-only at ``/opt/rexec`` and puts it on
``PYTHONPATH``, so a job needs no install. It must therefore use only the
standard library and import numpy / torch / tensorflow lazily, only when they
are requested (``REXEC_DETERMINISM_FRAMEWORKS``) or, outside rexec, already
installed: importing torch costs seconds and a job that does not use it must
not pay.

What it sets, it writes to ``$REXEC_DETERMINISM_REPORT`` (JSON), which rexec
adds to the run's manifest; a replay can then prove the same switches were on.
Process-level settings that must precede the interpreter (``PYTHONHASHSEED``,
``CUBLAS_WORKSPACE_CONFIG``, thread counts) are rexec's job, not this file's;
the report only checks they are there.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["REPORT_SCHEMA", "SeedResult", "seed_everything", "worker_init_fn"]

REPORT_SCHEMA = "rexec.determinism-report/v1"
_KNOWN = ("numpy", "torch", "tensorflow", "jax")
_state: dict[str, int] = {}


@dataclass(frozen=True)
class SeedResult:
    """What :func:`seed_everything` did; give ``generator``, ``worker_init_fn`` to a DataLoader."""

    seed: int
    generator: Any  # torch.Generator seeded with ``seed``, or None without torch
    worker_init_fn: Callable[[int], None]
    seeded: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    report_path: str | None = None


def worker_init_fn(worker_id: int) -> None:
    """Seed ``random`` and numpy in a DataLoader worker.

    torch seeds each worker's torch RNG with ``base_seed + worker_id`` (from the
    loader's generator) but leaves ``random`` and numpy as forked copies, so every
    worker would draw the same augmentations. A module-level function, so it
    pickles under the ``spawn`` start method.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        worker_seed = int(torch.initial_seed()) % 2**32
    else:
        worker_seed = (_state.get("seed", 0) + worker_id) % 2**32
    random.seed(worker_seed)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(worker_seed)


def _requested() -> list[str]:
    """Frameworks to touch: rexec's list, or (outside rexec) the installed ones except jax."""
    listed = os.environ.get("REXEC_DETERMINISM_FRAMEWORKS")
    if listed is not None:
        return [f for f in listed.split(",") if f]
    return [f for f in ("numpy", "torch", "tensorflow") if importlib.util.find_spec(f) is not None]


def _seed_torch(
    torch: Any, seed: int, *, deterministic: bool, strict: bool
) -> tuple[Any, dict[str, Any]]:
    torch.manual_seed(seed)  # also seeds every CUDA device
    torch.cuda.manual_seed_all(seed)
    settings: dict[str, Any] = {"torch.version": str(torch.__version__)}
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=not strict)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False  # autotuning picks kernels by timing
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        settings |= {
            "torch.use_deterministic_algorithms": True,
            "torch.use_deterministic_algorithms.warn_only": not strict,
            "torch.backends.cudnn.deterministic": True,
            "torch.backends.cudnn.benchmark": False,
            "torch.backends.cuda.matmul.allow_tf32": False,
            "torch.backends.cudnn.allow_tf32": False,
        }
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator, settings


def _seed_tensorflow(tf: Any, seed: int, *, deterministic: bool) -> dict[str, Any]:
    tf.keras.utils.set_random_seed(seed)  # python, numpy and tf in one call
    settings: dict[str, Any] = {"tensorflow.version": str(tf.__version__)}
    if deterministic:
        tf.config.experimental.enable_op_determinism()
        settings["tensorflow.enable_op_determinism"] = True
    return settings


def _write_report(path: str, report: dict[str, Any]) -> None:
    """Write then rename, so rexec never reads half a report if the job dies."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def seed_everything(
    seed: int | None = None, *, deterministic: bool = True, report_path: str | None = None
) -> SeedResult:
    """Seed every RNG the job can use and switch frameworks to deterministic kernels.

    ``seed`` defaults to ``$REXEC_SEED`` (set by rexec). Strictness follows
    ``$REXEC_DETERMINISM_STRICT``: ``1`` (default) makes torch raise on an op
    with no deterministic implementation, ``0`` only warns.
    """
    if seed is None:
        env_seed = os.environ.get("REXEC_SEED")
        if env_seed is None:
            raise ValueError("seed_everything(): no seed given and REXEC_SEED is not set")
        seed = int(env_seed)
    strict = os.environ.get("REXEC_DETERMINISM_STRICT", "1") != "0"
    _state["seed"] = seed
    random.seed(seed)
    seeded = ["random"]
    settings: dict[str, Any] = {}
    warnings: list[str] = []
    generator: Any = None
    for name in _requested():
        if name not in _KNOWN:
            warnings.append(f"unknown framework {name!r} ignored")
            continue
        if name == "jax":
            warnings.append("jax has no global RNG: derive keys from jax.random.PRNGKey(seed)")
            continue
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            warnings.append(f"{name} requested but not importable: {exc}")
            continue
        if name == "numpy":
            module.random.seed(seed)
            settings["numpy.version"] = str(module.__version__)
        elif name == "torch":
            generator, torch_settings = _seed_torch(
                module, seed, deterministic=deterministic, strict=strict
            )
            settings |= torch_settings
        else:
            settings |= _seed_tensorflow(module, seed, deterministic=deterministic)
        seeded.append(name)
    if os.environ.get("PYTHONHASHSEED") != str(seed):
        warnings.append(
            "PYTHONHASHSEED is not this seed: set order and str hashes vary between runs "
            "(it only works when set before Python starts; rexec does that)"
        )
    path = report_path or os.environ.get("REXEC_DETERMINISM_REPORT")
    if path:
        report = {
            "schema": REPORT_SCHEMA,
            "seed": seed,
            "deterministic": deterministic,
            "strict": strict,
            "seeded": seeded,
            "settings": settings,
            "warnings": warnings,
            "environment": {
                k: os.environ[k]
                for k in (
                    "PYTHONHASHSEED",
                    "CUBLAS_WORKSPACE_CONFIG",
                    "OMP_NUM_THREADS",
                    "CUDA_DEVICE_ORDER",
                )
                if k in os.environ
            },
            "python": sys.version.split()[0],
        }
        _write_report(path, report)
    return SeedResult(
        seed=seed,
        generator=generator,
        worker_init_fn=worker_init_fn,
        seeded=tuple(seeded),
        settings=settings,
        warnings=tuple(warnings),
        report_path=path,
    )
