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

__all__ = ["REPORT_SCHEMA", "SeedResult", "automatic", "seed_everything", "worker_init_fn"]

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
            "mode": "helper",  # the job called seed_everything() itself
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
        _state["helper"] = 1  # the automatic hook never overwrites this report
    return SeedResult(
        seed=seed,
        generator=generator,
        worker_init_fn=worker_init_fn,
        seeded=tuple(seeded),
        settings=settings,
        warnings=tuple(warnings),
        report_path=path,
    )


def automatic() -> None:
    """Seed ``random`` now, and numpy and torch as the job imports them (``sitecustomize``).

    For a job that never calls :func:`seed_everything`. Only the frameworks
    ``[determinism]`` names are touched, and only once the job imports them, so
    a job that never imports torch never pays for it. The first process writes
    the report (``mode = "automatic"``) and rewrites it as frameworks are
    applied; its children (DataLoader workers) apply the same switches but
    leave the report alone, and a report :func:`seed_everything` wrote wins.
    """
    seed = int(os.environ["REXEC_SEED"])
    strict = os.environ.get("REXEC_DETERMINISM_STRICT", "1") != "0"
    _state["seed"] = seed
    random.seed(seed)
    writes = os.environ.get("REXEC_DETERMINISM_HOOKED") is None
    os.environ["REXEC_DETERMINISM_HOOKED"] = str(os.getpid())  # children inherit: not first
    wanted = [f for f in _requested() if f in ("numpy", "torch")]
    report: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "mode": "automatic",
        "seed": seed,
        "deterministic": True,
        "strict": strict,
        "seeded": ["random"],
        "pending": list(wanted),  # requested, not (yet) imported by the job
        "settings": {},
        "warnings": [
            "tensorflow is not seeded automatically (only TF_DETERMINISTIC_OPS is set); "
            "call seed_everything() to seed it"
            for name in _requested()
            if name == "tensorflow"
        ],
        "python": sys.version.split()[0],
    }
    path = os.environ.get("REXEC_DETERMINISM_REPORT")

    def save() -> None:
        if writes and path and not _state.get("helper"):
            _write_report(path, report)

    def applied(name: str, module: Any) -> None:
        if name == "numpy":
            module.random.seed(seed)
            report["settings"]["numpy.version"] = str(module.__version__)
        else:
            _, settings = _seed_torch(module, seed, deterministic=True, strict=strict)
            report["settings"] |= settings
        report["seeded"].append(name)
        report["pending"].remove(name)
        save()

    for name in list(wanted):
        if name in sys.modules:
            applied(name, sys.modules[name])
            wanted.remove(name)
    if wanted:
        sys.meta_path.insert(0, _AfterImport(set(wanted), applied))
    save()


class _AfterImport:
    """A meta-path finder that runs ``callback(name, module)`` once ``name`` is imported."""

    def __init__(self, names: set[str], callback: Callable[[str, Any], None]) -> None:
        self.names = names
        self.callback = callback
        self.busy: set[str] = set()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in self.names or fullname in self.busy:
            return None
        self.busy.add(fullname)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self.busy.discard(fullname)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _ThenCall(spec.loader, self, fullname)  # type: ignore[assignment]
        return spec


class _ThenCall:
    """A loader that loads as the real one does, then hands the module to the finder."""

    def __init__(self, loader: Any, finder: _AfterImport, name: str) -> None:
        self.loader = loader
        self.finder = finder
        self.name = name

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.loader.exec_module(module)
        self.finder.names.discard(self.name)
        self.finder.callback(self.name, module)

    def __getattr__(self, attr: str) -> Any:  # get_resource_reader, is_package, …
        return getattr(self.loader, attr)
