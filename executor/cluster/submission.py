"""A submission: what ``rexec submit`` decided, kept on shared storage for the node.

The batch script carries no spec, key or parameter: it only names this
directory, ``RUNS_DIR/.rexec-jobs/<run-id>/``, where ``submission.json`` says
which spec (and its sha256, checked again on the node), which signing, which
sweep tasks, and which site options it was queued with. The sbatch script and
Slurm's log files are kept beside it, so a failed job explains itself.

Site options (partition, account, qos, …) say where a run went, not what ran:
they come from the command line or the user's config, never from the spec, and
the record carries them as the job's identity.
"""

from __future__ import annotations

import itertools
import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from executor import safeio
from executor.errors import InputError
from executor.paths import config_dir

__all__ = [
    "JOBS_DIR",
    "SiteOptions",
    "Submission",
    "SweepTask",
    "load_submission",
    "site_defaults",
    "sweep_tasks",
]

SCHEMA = "rexec.submission/v1"
JOBS_DIR = ".rexec-jobs"
SUBMISSION = "submission.json"
SCRIPT = "job.sbatch"
MAX_TASKS = 1000


@dataclass(frozen=True)
class SiteOptions:
    """Where the job goes and what it may use: sbatch flags, never part of the spec."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    time: str | None = None
    nodes: int = 1
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    requeue: bool = False
    # The pre-emption warning: Slurm sends it to the batch shell (rexec) this many
    # seconds before the end, e.g. "USR2@60"; rexec stops the job and signs `preempted`.
    signal: str | None = None
    extra: tuple[str, ...] = ()  # more sbatch flags, passed through as given


@dataclass(frozen=True)
class SweepTask:
    """One array task: the params and seed it overrides."""

    params: tuple[tuple[str, Any], ...] = ()
    seed: int | None = None


@dataclass
class Submission:
    """Everything the node needs to run its part, and what the submit host saw."""

    run_id: str
    spec_path: str
    spec_sha256: str
    runs_dir: str
    site: SiteOptions
    sign: Mapping[str, Any]  # method, key path, trust config: paths, never key material
    tasks: tuple[SweepTask, ...] = (SweepTask(),)
    allow_dirty: bool = False
    secret_names: tuple[str, ...] = ()
    submit_host: str = ""
    submitted_at: str = ""
    job_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        """``RUNS_DIR/.rexec-jobs/<run-id>``: the submission, its script and its logs."""
        return Path(self.runs_dir) / JOBS_DIR / self.run_id

    @property
    def is_array(self) -> bool:
        """A sweep of more than one task is one job array."""
        return len(self.tasks) > 1

    def task_run_id(self, task: int | None, restart: int) -> str:
        """The run id of one task and attempt: ``RUN``, ``RUN-t3``, ``RUN-t3-r1``."""
        run_id = self.run_id if task is None or not self.is_array else f"{self.run_id}-t{task}"
        return run_id if restart == 0 else f"{run_id}-r{restart}"

    def to_json(self) -> dict[str, Any]:
        """The JSON form kept in ``submission.json``."""
        doc = asdict(self)
        doc["schema"] = SCHEMA
        doc["site"]["extra"] = list(self.site.extra)
        doc["tasks"] = [{"params": [list(p) for p in t.params], "seed": t.seed} for t in self.tasks]
        return doc

    def save(self) -> None:
        """Write ``submission.json`` atomically (the node may read it at any moment)."""
        data = json.dumps(self.to_json(), indent=2, sort_keys=True).encode() + b"\n"
        safeio.write_atomic(self.directory / SUBMISSION, data)


def load_submission(directory: Path) -> Submission:
    """Read a submission the user's own ``rexec submit`` wrote; a clear error otherwise."""
    path = directory / SUBMISSION
    try:
        doc = json.loads(safeio.read_capped(path, cap=4 << 20))
        if doc.get("schema") != SCHEMA:
            raise ValueError(f"schema is {doc.get('schema')!r}, expected {SCHEMA!r}")
        site = dict(doc["site"])
        site["extra"] = tuple(site.get("extra", ()))
        tasks = tuple(
            SweepTask(tuple((str(k), v) for k, v in t.get("params", [])), t.get("seed"))
            for t in doc["tasks"]
        )
        return Submission(
            run_id=str(doc["run_id"]),
            spec_path=str(doc["spec_path"]),
            spec_sha256=str(doc["spec_sha256"]),
            runs_dir=str(doc["runs_dir"]),
            site=SiteOptions(**site),
            sign=dict(doc["sign"]),
            tasks=tasks or (SweepTask(),),
            allow_dirty=bool(doc.get("allow_dirty")),
            secret_names=tuple(doc.get("secret_names", ())),
            submit_host=str(doc.get("submit_host", "")),
            submitted_at=str(doc.get("submitted_at", "")),
            job_id=doc.get("job_id"),
            extra=dict(doc.get("extra", {})),
        )
    except FileNotFoundError:
        raise InputError(
            f"{directory}: no {SUBMISSION} here",
            hint="name a run id or job id that `rexec submit` printed, with the same --runs-dir",
        ) from None
    except (OSError, ValueError, KeyError, TypeError, safeio.UnsafeFile) as exc:
        raise InputError(f"{path}: not a rexec submission ({exc})") from exc


def sweep_tasks(
    sweeps: Sequence[str], *, parse: Any, params: Mapping[str, Any]
) -> tuple[SweepTask, ...]:
    """``--sweep lr=0.1,0.05 --sweep seed=1,2`` → the cartesian product, in that order.

    ``parse`` reads one value as ``--param`` does (TOML, falling back to a
    string). Keys must name a param of the spec or ``seed``.
    """
    axes: list[tuple[str, list[Any]]] = []
    for text in sweeps:
        key, sep, values = text.partition("=")
        key = key.strip()
        if not sep or not key or not values:
            raise InputError(
                f"--sweep {text!r}: expected KEY=V1,V2,…", hint="e.g. --sweep lr=0.1,0.05,0.01"
            )
        if key != "seed" and key not in params:
            raise InputError(
                f"--sweep {key}: no such parameter in [params] (known: "
                f"{', '.join(sorted(params)) or 'none'}, and seed)",
                hint="add it to the spec's [params] first, so its default is recorded",
            )
        if key in {k for k, _ in axes}:
            raise InputError(f"--sweep {key} is given twice", hint="list all its values in one")
        parsed = [parse(f"{key}={v.strip()}")[1] for v in values.split(",")]
        if key == "seed" and not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32 for v in parsed
        ):
            raise InputError(f"--sweep seed: expected integers from 0 to 2**32-1, got {values}")
        axes.append((key, parsed))
    if not axes:
        return (SweepTask(),)
    combos = list(itertools.product(*(values for _, values in axes)))
    if len(combos) > MAX_TASKS:
        raise InputError(f"the sweep has {len(combos)} tasks, more than {MAX_TASKS}")
    tasks = []
    for combo in combos:
        chosen = dict(zip((k for k, _ in axes), combo, strict=True))
        seed = chosen.pop("seed", None)
        tasks.append(SweepTask(tuple(chosen.items()), seed))
    return tuple(tasks)


def site_defaults(path: Path | None = None) -> dict[str, Any]:
    """The user's defaults for site options: ``~/.config/rexec/cluster.toml`` ``[slurm]``.

    For example ``partition = "gpu"``, ``account = "ml-team"``, ``extra =
    ["--exclusive"]``. The command line wins over the file; the spec never
    holds these.
    """
    path = path or Path(config_dir()) / "cluster.toml"
    try:
        data = safeio.read_capped(path, cap=1 << 20)
    except FileNotFoundError:
        return {}
    except (OSError, safeio.UnsafeFile) as exc:
        raise InputError(f"{path}: cannot read the cluster config ({exc})") from exc
    try:
        table = tomllib.loads(data.decode("utf-8")).get("slurm", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid TOML ({exc})", hint="see docs/cluster.md") from exc
    known = {f for f in SiteOptions.__dataclass_fields__ if f not in ("nodes",)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise InputError(
            f"{path}: [slurm] has unknown keys {', '.join(unknown)}",
            hint=f"known: {', '.join(sorted(known))}",
        )
    return dict(table)


def user_name() -> str:
    """The submitting user, for squeue's filter."""
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name
