"""The outputs policy: what a job's outputs directory becomes in the record.

``run``, ``verify``, ``replay`` and ``diff`` all follow these rules (docs/security.md):

- A **subject** is a regular file whose path under ``outputs/`` is UTF-8, has no
  backslash, no control character and no more than ``MAX_DEPTH`` levels.
- Anything else the job left (symbolic links, FIFOs, sockets, devices, files with
  such names, trees nested too deep) is **removed** from ``outputs/`` after the job
  and listed, kind and escaped name, in the signed byproduct ``outputs-excluded.json``:
  a link could point anywhere, a FIFO would block a reader, and a name a verifier
  cannot encode cannot be checked.
- Modes are **normalised** (directories 0755, files 0644, or 0755 with any execute
  bit), so a verifier who is not root can read every subject.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass

from executor import safeio

EXCLUDED = "outputs-excluded.json"
MAX_DEPTH = 256
_BAD_NAME_RE = re.compile(r"[\x00-\x1f\x7f\\]")


def name_problem(raw: bytes) -> str | None:
    """Why an output path cannot be a subject, or None when it can."""
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "its name is not UTF-8"
    if _BAD_NAME_RE.search(name):
        return "its name holds a backslash or a control character"
    if raw.count(b"/") >= MAX_DEPTH:
        return f"it is nested deeper than {MAX_DEPTH} levels"
    return None


def is_subject_name(name: str) -> bool:
    """A subject name from a Statement that may be joined to a directory: relative, no
    ``..``, and one the policy would have made (a record may have been forged)."""
    parts = name.split("/")
    return (
        bool(name)
        and not name.startswith("/")
        and ".." not in parts
        and "" not in parts
        and name_problem(name.encode("utf-8", "surrogateescape")) is None
    )


def display(raw: bytes) -> str:
    """A path as text that any terminal or JSON reader can show unambiguously."""
    return raw.decode("utf-8", "backslashreplace").encode("unicode_escape").decode("ascii")


def display_text(value: object) -> str:
    """A string from a record, as a terminal may show it: control characters escaped."""
    return display(str(value).encode("utf-8", "surrogateescape"))


@dataclass(frozen=True)
class Excluded:
    """Something the job left in outputs/ that is not a subject, and why."""

    name: str  # escaped with :func:`display`
    kind: str
    reason: str

    def to_json(self) -> dict[str, str]:
        """The JSON form kept in ``outputs-excluded.json``."""
        return {"name": self.name, "kind": self.kind, "reason": self.reason}


def settle(outputs: str | os.PathLike[str]) -> tuple[list[tuple[str, bytes]], list[Excluded]]:
    """Apply the policy to a finished job's outputs: remove what cannot be a subject,
    normalise modes, and return the subjects' (name, absolute path) and what was excluded."""
    subjects: list[tuple[str, bytes]] = []
    excluded: list[Excluded] = []
    for entry in safeio.walk(outputs):
        mode = entry.st.st_mode
        problem = name_problem(entry.rel)
        if stat.S_ISDIR(mode):
            if problem is not None:
                excluded.append(Excluded(display(entry.rel), "a directory", problem))
                safeio.rmtree(entry.path)  # the walk does not enter a removed directory
            else:
                os.chmod(entry.path, 0o755)
            continue
        if problem is None and not stat.S_ISREG(mode):
            problem = "only regular files are outputs"
        if problem is not None:
            excluded.append(Excluded(display(entry.rel), safeio.kind_of(mode), problem))
            os.unlink(entry.path)
            continue
        os.chmod(entry.path, 0o755 if mode & 0o111 else 0o644)
        subjects.append((entry.rel.decode("utf-8"), entry.path))
    os.chmod(outputs, 0o755)
    return subjects, excluded
