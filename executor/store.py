"""The run record: one directory per run, complete or absent.

A record is assembled in a hidden sibling (``.<run-id>.partial``) and renamed
into place only once everything is written, so a reader never sees half a
record; an interrupted rexec leaves only a ``.partial`` directory that no
listing treats as a run. Layout: docs/design.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from executor import safeio
from executor.errors import InputError

STATEMENT = "statement.json"
BUNDLE = "statement.sigstore.json"
PUBLIC_KEY = "signing-key.pub"
OUTPUTS = "outputs"
LOGS = "logs"
HOST = "host.json"
INVENTORY = "image-inventory.json"
PARAMS = "params.json"
INPUTS = "inputs"
RECORD = "record.json"
JOB_META = "job-meta"


def new_run_id(name: str, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{name}-{secrets.token_hex(3)}"


@dataclass
class RecordWriter:
    """Builds a record in its staging directory; :meth:`commit` publishes it."""

    runs_dir: Path
    run_id: str

    def __post_init__(self) -> None:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.staging = self.runs_dir / f".{self.run_id}.partial"
        self.final = self.runs_dir / self.run_id
        if self.final.exists():
            raise InputError(f"run record {self.final} already exists")
        self.staging.mkdir(mode=0o700)

    def path(self, name: str) -> Path:
        return self.staging / name

    def write(self, name: str, data: bytes) -> Path:
        target = self.staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        return target

    def write_json(self, name: str, value: Any) -> Path:
        return self.write(name, json.dumps(value, indent=2, sort_keys=True).encode() + b"\n")

    def commit(self) -> Path:
        # Records are shared artefacts: readable by others, writable by no one but the owner.
        self.staging.chmod(0o755)
        os.replace(self.staging, self.final)
        _fsync_dir(self.runs_dir)
        return self.final

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            safeio.rmtree(self.staging)  # the job's tree: any depth, never following a link


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def list_records(runs_dir: Path) -> list[Path]:
    """Complete records only: staging directories start with a dot."""
    if not runs_dir.is_dir():
        return []
    return sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
