"""The run spec's types, its limits and the parsers of single values (durations, sizes, users).

Frozen dataclasses between the stages; no I/O. The face, :mod:`executor.spec`,
re-exports every name here.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from executor.contracts import Contract
from executor.determinism import REASONS
from executor.errors import SpecError
from executor.metrics import Source
from executor.signing import SigningMethod

SPEC_VERSION = 1
TREE_DIGEST_RE = re.compile(r"^(sha256|blake3)-tree-v1:[0-9a-f]{64}$")
IMAGE_DIGEST_RE = re.compile(r"@sha256:[0-9a-f]{64}$")
IMAGE_ID_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
# `from = "run:<run-id>:<path under outputs>"` or `latest:<spec name>:<path>`.
FROM_RE = re.compile(r"^(run|latest):([A-Za-z0-9][A-Za-z0-9_.-]{0,127}):([^\x00]+)$")
UNRESOLVED_DIGEST = "unresolved"  # a `from` input's digest until its upstream record is read
LOCK_HINT = "`rexec lock SPEC -o LOCKED` pins it (or `rexec run --allow-unpinned` pins at run time)"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Values of these must never be written into a spec (and so into a manifest).
SECRET_NAME_RE = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|ACCESS_KEY|PRIVATE_KEY)", re.I)
RESERVED_ENV_PREFIX = "REXEC_"
# Names rexec itself sets in the job's environment: neither `env` nor `secrets` may
# replace them, or the job would see values the record does not claim.
RESERVED_ENV_NAMES = frozenset(REASONS) | {
    "PYTHONPATH",
    "PYTHONDONTWRITEBYTECODE",
    "HOME",
    "NVIDIA_DRIVER_CAPABILITIES",
    "NVIDIA_VISIBLE_DEVICES",
    "CUDA_VISIBLE_DEVICES",
}
# Targets a mount may neither be nor sit under: the kernel's and the engine's own
# file systems, the job's scratch space, and where rexec mounts its own files.
RESERVED_MOUNTS = ("/proc", "/dev", "/sys", "/etc", "/tmp", "/rexec", "/opt/rexec")
USER_RE = re.compile(r"^(\d{1,10})(?::(\d{1,10}))?$")
MAX_ID = 2**32 - 2  # (uid_t)-1 means "unchanged" to the kernel
MAX_TIMEOUT_S = 30 * 86400.0
MAX_CPUS = 4096.0
MIN_MEMORY = 6 << 20  # the engine refuses less
MAX_MEMORY = 1 << 50
MAX_PIDS = 4_194_304  # the kernel's PID_MAX_LIMIT
SIGNING_METHODS = ("key", "sigstore", "none")
FRAMEWORKS = ("numpy", "torch", "tensorflow", "jax")
ENGINES = ("docker", "podman")
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h)?$")
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$", re.I)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


@dataclass(frozen=True)
class BuildSpec:
    """``[image] build``: a Dockerfile, its context and arguments."""

    dockerfile: Path
    context: Path
    args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    # A recorded opt-in: FROM lines without a digest use the engine's local image
    # (its id is recorded, with pinned=false). Off unless the spec says so.
    allow_unpinned_from: bool = False


@dataclass(frozen=True)
class ArchiveSpec:
    """An image saved with ``docker save`` (or an OCI layout tar), for air-gapped hosts."""

    path: Path
    image_id: str  # sha256:<hex> of the image config inside the archive


@dataclass(frozen=True)
class ImageSpec:
    """``[image]``: exactly one of a pinned ref, a build or an archive."""

    ref: str | None = None
    build: BuildSpec | None = None
    archive: ArchiveSpec | None = None
    # Not settable from TOML: replay pins the exact local image a record names.
    image_id: str | None = None


@dataclass(frozen=True)
class RunSection:
    """``[run]``: the command, its environment, seed, timeout and user."""

    command: tuple[str, ...]
    workdir: str
    env: Mapping[str, str]
    secrets: tuple[str, ...]
    seed: int
    timeout_s: float
    user: str | None
    # How [params] reach the job besides params.json: "json" (only the file),
    # "flags" (--key value appended to the command) or "flags=" (--key=value).
    params_as: str = "json"
    # A recorded opt-in: the working directory is writable scratch (a copy of the
    # code when it is the code's mount, else an empty tmpfs), discarded after the run.
    scratch_workdir: bool = False
    # Why the run was made ("candidate for release 1.4"): recorded, signed, shown with the
    # roles (who ran, who signed, who approved); it does not change what is computed.
    purpose: str | None = None


@dataclass(frozen=True)
class InputSpec:
    """One ``[[inputs]]`` snapshot: where it is, its pinned digest, where the job sees it.

    ``from_ref`` (``run:<run-id>:<path>`` or ``latest:<name>:<path>``) names a
    directory of an earlier run's outputs instead of a path; it is resolved, its
    record verified under the caller's trust policy, and ``from_run`` /
    ``from_statement`` / ``from_signer`` filled, before the run (catalog).
    """

    name: str
    path: Path
    digest: str
    mount: str
    from_ref: str | None = None
    from_run: str | None = None
    from_statement: str | None = None
    from_signer: str | None = None  # who the upstream record was verified to be signed by
    # ``[inputs.contract]``: what its files must look like, checked before the job runs.
    contract: Contract | None = None


@dataclass(frozen=True)
class CodeSpec:
    """``[code]``: the job's code, mounted read-only, pinned by commit and tree."""

    path: Path
    mount: str
    # Written by `rexec lock`; when present, the run checks the code against them.
    commit: str | None = None
    tree: str | None = None


@dataclass(frozen=True)
class Resources:
    """``[resources]``: CPUs, memory, GPUs and a pids limit."""

    cpus: float | None
    memory_bytes: int | None
    gpus: str | int | tuple[str, ...] | None
    pids: int


@dataclass(frozen=True)
class Determinism:
    """``[determinism]``: the frameworks to make deterministic, and how strictly."""

    frameworks: tuple[str, ...]
    strict: bool
    # rexec's start-up hook seeds a job that never calls seed_everything() (docs/determinism.md).
    automatic: bool = True


@dataclass(frozen=True)
class Signing:
    """``[signing]``: how the record is signed."""

    method: SigningMethod
    key: Path | None


@dataclass(frozen=True)
class Security:
    """Explicit, recorded opt-outs of the hardened defaults. All default to off."""

    allow_network: bool = False
    # The host's network stack, as HPC containers use it: what lets the ranks of a
    # multi-node job reach each other (and InfiniBand). Required for `submit --nodes` > 1.
    allow_host_network: bool = False
    allow_root: bool = False
    allow_writable_root: bool = False

    @property
    def network(self) -> str:
        """The container's network: ``none`` unless opted in to ``bridge`` or ``host``."""
        return "host" if self.allow_host_network else "bridge" if self.allow_network else "none"


@dataclass(frozen=True)
class Tolerance:
    """How far a numeric output may drift and still count as reproduced."""

    pattern: str  # fnmatch pattern over output paths, e.g. "*.npz" or "metrics.json"
    rtol: float
    atol: float


@dataclass(frozen=True)
class ParamOverride:
    """A ``--param`` override, with the default it replaced (both are recorded)."""

    key: str
    default: Any
    value: Any


@dataclass(frozen=True)
class Checkpoint:
    """``[checkpoint]``: a directory the job writes its progress to, kept from one attempt
    to the next when a scheduler requeues the job, and the time it has to write it when
    it is asked to stop (the signal rexec received is passed on to it)."""

    mount: str
    grace_s: float = 30.0


# How long a job may take to write its checkpoint once asked to stop.
MAX_GRACE_S = 600.0


@dataclass(frozen=True)
class RunSpec:
    """A whole run spec, frozen and validated: what every later stage reads."""

    source: Path
    source_sha256: str
    version: int
    name: str
    image: ImageSpec
    run: RunSection
    inputs: tuple[InputSpec, ...]
    code: CodeSpec | None
    outputs_mount: str
    params: Mapping[str, Any]
    overrides: tuple[ParamOverride, ...]
    resources: Resources
    determinism: Determinism
    signing: Signing
    security: Security
    tolerances: tuple[Tolerance, ...] = ()
    # `rexec run --seed N`: the spec's seed it replaced (both are recorded).
    seed_override: ParamOverride | None = None
    # `[runtime] engine`: "docker" or "podman"; None: the default (docker), or --runtime.
    engine: str | None = None
    checkpoint: Checkpoint | None = None
    # ``[[metrics]]``: where the run's metrics are besides its JSON outputs (docs/spec.md).
    metrics: tuple[Source, ...] = ()
    # ``[outputs] volatile``: outputs replay and diff report as volatile, not as different.
    volatile: tuple[str, ...] = ()

    @property
    def base_dir(self) -> Path:
        """Relative paths in a spec are relative to the spec file's directory."""
        return self.source.parent


def reserved_env(name: str) -> str | None:
    """Why ``name`` may not be set by a spec (``env`` or ``secrets``), or None."""
    if name.startswith(RESERVED_ENV_PREFIX):
        return "names starting with REXEC_ are set by rexec itself"
    if name in RESERVED_ENV_NAMES:
        return (
            "set by rexec itself (determinism, helper path or home); "
            "the value the record claims is rexec's, so it cannot be replaced"
        )
    return None


def parse_duration(value: int | float | str) -> float:
    """Seconds from ``600``, ``"90s"``, ``"10m"`` or ``"2h"``."""
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number of seconds, got {value!r}")
        return float(value)
    match = _DURATION_RE.match(value.strip())
    if not match:
        raise ValueError(f"expected seconds or a duration like '90s', '10m', '2h', got {value!r}")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"s": 1, "m": 60, "h": 3600}[unit]


def parse_user(value: str) -> tuple[int, int]:
    """``"UID"`` or ``"UID:GID"``, numbers only; a lone UID runs with GID = UID.

    Numbers, because the container engine resolves a name in the image (which
    the job's author controls) and gives an unknown UID the group 0.
    """
    match = USER_RE.match(value)
    if not match:
        raise ValueError(
            f"expected a numeric 'UID' or 'UID:GID', got {value!r}; user names are resolved "
            "in the image, which rexec does not trust (for nobody use '65534:65534')"
        )
    uid = int(match.group(1))
    gid = int(match.group(2)) if match.group(2) is not None else uid
    if uid > MAX_ID or gid > MAX_ID:
        raise ValueError(f"ids go up to {MAX_ID}, got {value!r}")
    return uid, gid


def parse_size(value: int | str) -> int:
    """Bytes from ``1073741824``, ``"512m"``, ``"2g"`` or ``"2GiB"``."""
    if isinstance(value, int):
        return value
    match = _SIZE_RE.match(value.strip())
    if not match:
        raise ValueError(f"expected bytes or a size like '512m', '2g', got {value!r}")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def parse_override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as a TOML value (``0.1``, ``true``, ``"a"``),
    falling back to a plain string so ``--param opt=adam`` works unquoted."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise SpecError(
            f"--param {text!r}: expected KEY=VALUE", hint="for example --param learning_rate=0.1"
        )
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value
