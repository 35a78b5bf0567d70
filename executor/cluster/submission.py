"""A submission: what ``rexec submit`` decided, kept on shared storage for the node.

The batch script carries no spec, key or parameter: it names this directory,
``RUNS_DIR/.rexec-jobs/<run-id>/``, and the sha256 of its ``submission.json``,
which holds the spec itself (its bytes, never a path to re-read), which signing,
which sweep tasks and site options it was queued with, and the sha256 of each
input's verified listing kept beside it. Slurm keeps its own copy of the batch
script, which the job owner cannot rewrite on shared storage: the node refuses a
submission whose bytes are not the ones that script names (and records why), so
a pending job cannot be swapped for another spec, seed or signing. The sbatch
script and Slurm's log files are kept beside it, so a failed job explains itself.

Site options (partition, account, qos, …) say where a run went, not what ran:
they come from the command line or the user's config, never from the spec, and
the record carries them as the job's identity.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from executor import safeio
from executor.canonical import sha256_hex
from executor.errors import InputError, MismatchError
from executor.paths import config_dir
from executor.signing import TrustPolicy

__all__ = [
    "JOBS_DIR",
    "LISTINGS",
    "PRUNED",
    "REFUSED",
    "SiteOptions",
    "Submission",
    "SweepTask",
    "load_submission",
    "site_defaults",
    "sweep_tasks",
]

SCHEMA = "rexec.submission/v2"
JOBS_DIR = ".rexec-jobs"
SUBMISSION = "submission.json"
SCRIPT = "job.sbatch"
JOB_ID = "job-id"  # written after sbatch answered: not part of the bound submission
REFUSED = "refused.json"  # what the node found when it refused the submission
PRUNED = "pruned.json"  # a regeneration step whose inputs came out unchanged: nothing ran
LISTINGS = "inputs"  # <name>.listing.json: each input's listing as verified at submit time
MAX_TASKS = 1000


@dataclass(frozen=True)
class FromLinks:
    """How a submission's ``from`` inputs are found: resolved now, each record verified
    under ``policy``; ``refs`` (input -> ``run:<run id>:<path>``) names the run a pipeline
    chose instead of the spec's ``latest:``; the ``deferred`` ones are runs of upstream
    jobs that have not run yet, resolved on the node and verified there under ``keys``."""

    policy: TrustPolicy | None = None
    refs: Mapping[str, str] = field(default_factory=dict)
    deferred: frozenset[str] = frozenset()
    keys: tuple[str, ...] = ()


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
    spec_path: str  # where the spec was (its relative paths are read from there)
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
    spec_text: str = ""  # the spec exactly as submitted (the node never re-reads the path)
    listings: dict[str, str] = field(default_factory=dict)  # input name -> listing sha256
    stamps: dict[str, str] = field(default_factory=dict)  # input name -> its stamps (lstat)
    rehash_inputs: bool = False  # nodes hash every input again instead of checking stamps
    # `from` inputs by name: resolved and verified on the submit host ({path, digest,
    # fromRun, fromStatement, fromSigner}), or bound to an upstream job of a pipeline that
    # had not run yet ({from: "run:<run id>:<path>"}), resolved on the node under
    # ``upstream_keys`` (PEM public keys) once Slurm has run it (afterok).
    from_inputs: dict[str, dict[str, str]] = field(default_factory=dict)
    upstream_keys: tuple[str, ...] = ()
    # A regeneration step (cluster/rerun.py): ``spec_text`` is then the original record's
    # Statement (``spec_path`` its directory), and this says which inputs it replaces
    # ({name: {path, digest}} corrected here, or {name: {from, was}} an upstream job's
    # output) and the lineage the new record signs. Empty for a spec.
    rerun: dict[str, Any] = field(default_factory=dict)

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

    def job_ref(self, task: int | None) -> str:
        """One task as Slurm names it: ``123``, or ``123_4`` for an array task."""
        assert self.job_id is not None
        return f"{self.job_id}_{task}" if self.is_array and task is not None else self.job_id

    def logs(self, task: int | None) -> list[Path]:
        """This task's Slurm logs, one per attempt, oldest first: ``slurm-<job>.out``, then
        ``slurm-<job>-r1.out``…, so a requeue never truncates an earlier attempt's log."""
        first = f"slurm-{self.job_ref(task)}"
        attempts: list[tuple[int, Path]] = []
        for path in self.directory.glob(f"{first}-r*.out"):
            restart = path.name.removeprefix(f"{first}-r").removesuffix(".out")
            if restart.isdigit():
                attempts.append((int(restart), path))
        return [self.directory / f"{first}.out", *(p for _, p in sorted(attempts))]

    def to_json(self) -> dict[str, Any]:
        """The JSON form (``submit --json``); ``submission.json`` is this without the job id."""
        doc = asdict(self)
        doc["schema"] = SCHEMA
        doc["site"]["extra"] = list(self.site.extra)
        doc["tasks"] = [{"params": [list(p) for p in t.params], "seed": t.seed} for t in self.tasks]
        return doc

    def encoded(self) -> bytes:
        """``submission.json``'s bytes: what the batch script binds by its sha256."""
        doc = self.to_json()
        doc.pop("job_id")
        return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"

    def save_job_id(self, job_id: str) -> None:
        """Remember Slurm's job id beside the submission (after sbatch answered)."""
        self.job_id = job_id
        safeio.write_atomic(self.directory / JOB_ID, job_id.encode() + b"\n")


def load_submission(directory: Path, *, sha256: str | None = None) -> Submission:
    """Read a submission ``rexec submit`` wrote; with ``sha256`` (the node: what the batch
    script Slurm holds names), exactly those bytes or a MismatchError saying what differs."""
    path = directory / SUBMISSION
    try:
        data = safeio.read_capped(path, cap=64 << 20)
    except FileNotFoundError:
        raise InputError(
            f"{directory}: no {SUBMISSION} here",
            hint="name a run id or job id that `rexec submit` printed, with the same --runs-dir",
        ) from None
    except (OSError, safeio.UnsafeFile) as exc:
        raise InputError(f"{path}: cannot read the submission ({exc})") from exc
    if sha256 is not None and sha256_hex(data) != sha256:
        raise MismatchError(
            f"{path} changed after it was submitted (sha256 {sha256_hex(data)}, the batch "
            f"script Slurm holds names {sha256})",
            hint="someone rewrote the submission on shared storage while the job was queued; "
            "nothing ran. Find out who, then submit again",
        )
    try:
        sub = _parse(json.loads(data))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a rexec submission ({exc})") from exc
    if sha256 is not None and sha256_hex(sub.spec_text.encode()) != sub.spec_sha256:
        raise MismatchError(f"{path}: the spec it holds is not the one its sha256 names")
    job_file = directory / JOB_ID
    if sub.job_id is None and job_file.is_file():
        with contextlib.suppress(OSError, safeio.UnsafeFile, UnicodeDecodeError):
            sub.job_id = safeio.read_capped(job_file, cap=64).decode().strip() or None
    return sub


def _parse(doc: Any) -> Submission:
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else None
        raise ValueError(
            f"schema is {found!r}, expected {SCHEMA!r} (a submission of another rexec "
            "version: submit again)"
        )
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
        spec_text=str(doc["spec_text"]),
        listings={str(k): str(v) for k, v in dict(doc.get("listings", {})).items()},
        stamps={str(k): str(v) for k, v in dict(doc.get("stamps", {})).items()},
        rehash_inputs=bool(doc.get("rehash_inputs")),
        from_inputs={str(k): dict(v) for k, v in dict(doc.get("from_inputs", {})).items()},
        upstream_keys=tuple(str(k) for k in doc.get("upstream_keys", ())),
        rerun=dict(doc.get("rerun") or {}),
    )


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
