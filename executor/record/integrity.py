"""A record's files against its signed Statement: every output against its subject (none
missing, none extra) and every byproduct file against its digest, each problem
collected, one line per file, so a deployment gate shows the whole damage.

Files are listed and hashed by the outputs policy's rules (executor/outputs.py):
never through a link, never waiting on a FIFO, names shown escaped.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executor import safeio, snapshot
from executor.errors import InputError, RexecError
from executor.outputs import display, is_subject_name, name_problem
from executor.record.reader import StatementView, dig


@dataclass(frozen=True)
class ArtifactReport:
    """Result of comparing a directory with the signed subjects."""

    checked: int
    verified: int
    mismatched: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    details: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when nothing is mismatched, missing or extra."""
        return not (self.mismatched or self.missing or self.extra)


def _list_files(root: Path) -> dict[str, safeio.Entry]:
    """Every non-directory entry under ``root`` (links included, never followed), by
    its path relative to ``root``; a name that cannot be a subject is shown escaped."""
    found: dict[str, safeio.Entry] = {}
    for entry in safeio.walk(root):
        if stat.S_ISDIR(entry.st.st_mode):
            continue
        name = display(entry.rel) if name_problem(entry.rel) else entry.rel.decode()
        found[name] = entry
    return found


def _hash_entry(entry: safeio.Entry, hash_file: Callable[[bytes], str]) -> str:
    """The sha256 of a listed file, or why it has none (not regular, unreadable)."""
    if not stat.S_ISREG(entry.st.st_mode):
        raise NotHashed(f"{safeio.kind_of(entry.st.st_mode)}, not a regular file")
    try:
        return hash_file(entry.path)
    except safeio.UnsafeFile as exc:
        raise NotHashed(exc.message) from exc
    except OSError as exc:
        raise NotHashed(f"cannot be read ({exc.strerror})") from exc


class NotHashed(Exception):
    """Why a listed file has no digest (not regular, unreadable)."""

    pass


class _Tally:
    """Every problem found while comparing files with their signed digests, collected."""

    def __init__(self) -> None:
        self.mismatched: list[str] = []
        self.missing: list[str] = []
        self.details: list[str] = []
        self.verified = 0

    def mismatch(self, name: str, why: str) -> None:
        self.mismatched.append(name)
        self.details.append(f"mismatched: {name}: {why}")

    def miss(self, name: str, where: Path) -> None:
        self.missing.append(name)
        self.details.append(f"missing: {name} (signed, not in {where})")

    def check(
        self, name: str, entry: safeio.Entry, expected: str, hash_file: Callable[[bytes], str]
    ) -> None:
        try:
            found = _hash_entry(entry, hash_file)
        except NotHashed as why:
            self.mismatch(name, str(why))
            return
        if found == expected.lower():
            self.verified += 1
        else:
            self.mismatch(name, f"sha256 {found}, signed {expected}")

    def report(
        self, checked: int, extra: Sequence[str] = (), extra_details: Sequence[str] = ()
    ) -> ArtifactReport:
        return ArtifactReport(
            checked=checked,
            verified=self.verified,
            mismatched=tuple(self.mismatched),
            missing=tuple(self.missing),
            extra=tuple(extra),
            details=(*self.details, *extra_details),
        )


def compare_artifacts(
    subjects: list[Any], root: Path, *, hash_file: Callable[[bytes], str] = safeio.sha256_file
) -> ArtifactReport:
    """Re-hash ``root`` and compare it with the Statement's subjects, collecting every
    mismatched, missing and extra file."""
    if not root.is_dir():
        raise InputError(
            f"{root}: the artifacts directory does not exist",
            hint="pass --artifacts DIR, or a complete run record with outputs/",
        )
    files = _list_files(root)
    tally = _Tally()
    named: set[str] = set()
    for item in subjects:
        name = item.get("name") if isinstance(item, dict) else None
        expected = dig(item, "digest", "sha256")
        if not isinstance(name, str) or not is_subject_name(name):
            tally.mismatch(repr(name), "not a safe relative path")
            continue
        named.add(name)
        entry = files.get(name)
        if entry is None:
            tally.miss(name, root)
        elif not isinstance(expected, str):
            tally.mismatch(name, "the subject has no sha256 digest")
        else:
            tally.check(name, entry, expected, hash_file)
    extra = sorted(set(files) - named)
    return tally.report(
        len(subjects), extra, [f"extra: {name} (in {root}, not a signed subject)" for name in extra]
    )


def compare_byproducts(statement: Mapping[str, Any], record: Path) -> ArtifactReport:
    """Re-hash every file of the record the Statement names as a byproduct (host capture,
    logs, params, listings, inventory, job reports): each must be the signed bytes."""
    tally = _Tally()
    checked = 0
    for item in StatementView(statement).byproducts:
        if "content" in item or "digest" not in item:
            continue  # inline (the exit status), or no file named: the signature covers it
        name, expected = item.get("name"), dig(item, "digest", "sha256")
        checked += 1
        if not isinstance(name, str) or not is_subject_name(name) or not isinstance(expected, str):
            tally.mismatch(f"byproduct {name!r}", "not a safe name with a sha256")
            continue
        path = record / name
        try:
            st = path.lstat()
        except FileNotFoundError:
            tally.miss(name, record)
            continue
        except OSError as exc:
            tally.mismatch(name, f"cannot be read ({exc.strerror})")
            continue
        tally.check(
            name, safeio.Entry(name.encode(), bytes(path), st), expected, safeio.sha256_file
        )
    return tally.report(checked)


def compare_trees(statement: Mapping[str, Any], root: Path) -> list[str]:
    """The signed tree digests of ``outputs/`` and its top-level directories against the
    verified files: a directory added, removed or renamed changes a tree, not a file."""
    signed = dig(statement, "predicate", "buildDefinition", "internalParameters", "outputTrees")
    if not isinstance(signed, dict) or not signed:
        return []  # a record made before trees were signed
    digests = {
        s["name"]: s["digest"]["sha256"]
        for s in statement.get("subject", [])
        if isinstance(s, dict) and isinstance(dig(s, "digest", "sha256"), str)
    }
    try:
        found = {f"outputs/{k}": v for k, v in snapshot.trees_of(root, digests).items()}
    except RexecError as exc:
        return [f"outputs tree: {exc.message}"]
    problems = []
    for name in sorted(set(signed) | set(found)):
        if signed.get(name) != found.get(name):
            problems.append(
                f"tree {name}: {found.get(name) or 'absent'}, signed {signed.get(name) or 'absent'}"
            )
    return problems
