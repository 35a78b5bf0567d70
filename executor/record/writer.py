"""The run record: one directory per run, complete or absent.

A record is assembled in a hidden sibling (``.<run-id>.partial``) and renamed
into place only once everything is written, so a reader never sees half a
record; an interrupted rexec leaves only a ``.partial`` directory that no
listing treats as a run. Layout: docs/design.md.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from executor import owner, safeio
from executor.canonical import StrictJSONError, strict_loads
from executor.errors import InfrastructureError, InputError, RexecError

STATEMENT = "statement.json"
BUNDLE = "statement.sigstore.json"
# A pipeline's or a regeneration's own signed record (executor/pipelines/ledger.py), kept in
# RUNS_DIR/pipelines/<id>/, and its predicate type: the catalog indexes them too.
PIPELINES = "pipelines"
PIPELINE_PREDICATE = "https://rexec.dev/pipeline/v1"
PUBLIC_KEY = "signing-key.pub"
OUTPUTS = "outputs"
LOGS = "logs"
STDOUT_LOG = f"{LOGS}/stdout.log"  # the job's stdout, as the Statement names it
HOST = "host.json"
INVENTORY = "image-inventory.json"
PARAMS = "params.json"
INPUTS = "inputs"
RECORD = "record.json"
JOB_META = "job-meta"
# In a staging directory only: which rexec process is assembling it (`rexec gc`).
OWNER = ".owner"
PARTIAL_SUFFIX = ".partial"


def new_run_id(name: str, now: datetime | None = None) -> str:
    """A run id that sorts by time and says what ran: ``<UTC stamp>-<name>-<6 hex>``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{name}-{secrets.token_hex(3)}"


def json_file(value: Any) -> bytes:
    """A record's JSON file for people to read: sorted, indented (not what is signed)."""
    return json.dumps(value, indent=2, sort_keys=True).encode() + b"\n"


@dataclass
class RecordWriter:
    """Builds a record in its staging directory; :meth:`commit` publishes it. Used as a
    context manager, a record is complete or absent: any exception discards it."""

    runs_dir: Path
    run_id: str

    def __post_init__(self) -> None:
        self.staging = self.runs_dir / f".{self.run_id}{PARTIAL_SUFFIX}"
        self.final = self.runs_dir / self.run_id
        if self.final.exists():
            raise InputError(f"run record {self.final} already exists")
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            self.staging.mkdir(mode=0o700)
            self.write_json(OWNER, owner.me().to_json())
        except OSError as exc:
            self.discard()
            raise storage_error(self.runs_dir, exc) from exc

    def path(self, name: str) -> Path:
        """A path inside the staging directory."""
        return self.staging / name

    def write(self, name: str, data: bytes) -> Path:
        """Write one record file atomically and durably."""
        target = self.staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        safeio.write_atomic(target, data)
        return target

    def write_json(self, name: str, value: Any) -> Path:
        """Write one record file as sorted, indented JSON."""
        return self.write(name, json_file(value))

    def commit(self, files: Mapping[str, bytes] | None = None) -> Path:
        """Write the record's last ``files``, then publish it: rename the staging directory
        into place, so a reader sees all of it or nothing."""
        for name, data in (files or {}).items():
            self.write(name, data)
        (self.staging / OWNER).unlink()
        # Records are shared artefacts: readable by others, writable by no one but the owner.
        self.staging.chmod(0o755)
        os.replace(self.staging, self.final)
        safeio.fsync_dir(self.runs_dir)
        return self.final

    def discard(self) -> None:
        """Remove the staging directory: a run that is not recorded leaves nothing behind."""
        with contextlib.suppress(OSError):
            safeio.rmtree(self.staging)  # the job's tree: any depth, never following a link

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Whatever stops a record before :meth:`commit` discards it; a file system error
        becomes what the user can act on (:func:`storage_error`)."""
        if exc is None:
            return
        self.discard()
        if isinstance(exc, OSError) and exc.errno is not None:  # not a socket's: the disk's
            raise storage_error(self.runs_dir, exc) from exc


def storage_error(runs_dir: Path, exc: OSError) -> RexecError:
    """A runs directory that cannot take the record: the user's to fix, or the disk's."""
    name = os.fsdecode(exc.filename) if exc.filename is not None else None
    if name is not None and not os.path.abspath(name).startswith(os.path.abspath(runs_dir)):
        return InputError(
            f"{name}: {exc.strerror or exc}", hint="check the path and its permissions"
        )
    what = f"cannot write the run record under {runs_dir}: {exc.strerror or exc}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST):
        return InputError(what, hint="choose a writable directory with --runs-dir")
    return InfrastructureError(
        what,
        hint="free space (or use --runs-dir elsewhere); nothing was published, "
        "the partial record was removed",
    )


def stale_partials(runs_dir: Path) -> list[tuple[Path, str]]:
    """Partial records whose rexec process is gone, each with why it is judged so."""
    found: list[tuple[Path, str]] = []
    if not runs_dir.is_dir():
        return found
    for path in sorted(runs_dir.iterdir()):
        if not (path.name.startswith(".") and path.name.endswith(PARTIAL_SUFFIX)):
            continue
        if path.is_symlink() or not path.is_dir():
            continue
        try:
            doc = strict_loads(safeio.read_capped(path / OWNER, cap=4096))
            host, pid, start = str(doc["host"]), doc["pid"], str(doc["start"])
        except (OSError, RexecError, StrictJSONError, KeyError, TypeError):
            continue  # no owner we can read: not ours to judge
        if owner.is_orphan(host, pid, start):
            found.append((path, f"its rexec (pid {pid} on {host}) is gone"))
    return found


def list_records(runs_dir: Path) -> list[Path]:
    """Complete records only: staging directories start with a dot."""
    if not runs_dir.is_dir():
        return []
    return sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
