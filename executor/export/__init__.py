"""Audit bundles: one run in one tar (the record, its image, its input snapshots, its code),
verified and replayed on a machine that has none of them (``rexec export``, then
``rexec verify run.tar`` and ``rexec replay run.tar``).

Nothing inside the archive is trusted: it is unpacked safely (:mod:`.archive`),
then the record is verified under the caller's trust policy, and the image, each
input and the code are checked against the digests that signed record names.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executor import safeio, snapshot
from executor.code import GIT_EXCLUDE
from executor.errors import InputError, MismatchError
from executor.export.archive import add_tree, unpack
from executor.progress import Say
from executor.record import RunRecord
from executor.runtime import ContainerRuntime

__all__ = [
    "INDEX",
    "Unpacked",
    "check_unpacked",
    "export_run",
    "is_bundle",
    "make_code_repo",
    "unpack_export",
]

INDEX = "rexec-export.json"
SCHEMA = "rexec.export/v1"


def _notes(record: RunRecord, name: str) -> dict[str, Any]:
    return dict((record.dependency(name) or {}).get("annotations") or {})


def export_run(
    record: RunRecord, runtime: ContainerRuntime, target: Path, *, without_inputs: bool, say: Say
) -> dict[str, Any]:
    """Write the bundle to ``target`` (atomically: a ``.partial`` renamed when complete)."""
    image_id = _notes(record, "image").get("imageId")
    if not isinstance(image_id, str):
        raise InputError(f"{record.path}: the record names no image id to export")
    inputs = {
        i["name"]: {"digest": i["digest"], "dir": f"inputs/{i['name']}"}
        for i in record.spec.get("inputs", [])
    }
    code = _notes(record, "code").get("hostPath") if record.dependency("code") else None
    partial = target.with_name(target.name + ".partial")
    sizes: dict[str, int] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="rexec-export-") as tmp:
            image_tar = Path(tmp) / "image.tar"
            say(f"saving image {image_id[:19]}… from the engine")
            runtime.save(image_id, image_tar)
            with tarfile.open(partial, "x") as tar:
                sizes["record"] = add_tree(tar, record.path, "record")
                tar.add(image_tar, arcname="image/image.tar")
                sizes["image"] = image_tar.stat().st_size
                for name, item in [] if without_inputs else sorted(inputs.items()):
                    path = Path(str(_notes(record, f"input:{name}").get("hostPath")))
                    snapshot.verify_tree(path, item["digest"])  # the bytes the record pins
                    say(f"adding input {name} from {path}")
                    sizes[f"input:{name}"] = add_tree(tar, path, item["dir"])
                if code is not None:
                    root = _recorded_code(record, Path(code), Path(tmp), say=say)
                    sizes["code"] = add_tree(
                        tar, root, "code", skip=lambda p: ".git" in p.relative_to(root).parts
                    )
                index = {
                    "schema": SCHEMA,
                    "runId": record.run_id,
                    "statementSha256": record.statement_sha256,
                    "image": {"archive": "image/image.tar", "imageId": image_id},
                    "inputs": {} if without_inputs else inputs,
                    "withoutInputs": sorted(inputs) if without_inputs else [],
                    "code": "code" if code is not None else None,
                    "sizes": sizes,
                }
                data = json.dumps(index, indent=2, sort_keys=True).encode()
                info = tarfile.TarInfo(INDEX)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        os.rename(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return {**index, "file": str(target), "bytes": target.stat().st_size}


def _code_pin(record: RunRecord) -> tuple[str, str | None]:
    """The code tree digest the record pins, and its commit."""
    digest = dict((record.dependency("code") or {}).get("digest") or {})
    commit = digest.pop("gitCommit", None)
    if len(digest) != 1:
        raise MismatchError(f"{record.path}: the record's code pin names no single tree digest")
    algo, hexdigest = next(iter(digest.items()))
    return f"{algo}:{hexdigest}", commit if isinstance(commit, str) else None


def _tree_of(root: Path, pinned: str) -> str:
    algo = pinned.split("-tree-v1:")[0]
    return snapshot.hash_tree(root, algo=algo, exclude=GIT_EXCLUDE, use_cache=False).digest


def _recorded_code(record: RunRecord, path: Path, tmp: Path, *, say: Say) -> Path:
    """The code tree the record pins: the recorded path when it still holds those bytes,
    else the recorded commit checked out of its repository; never other code."""
    pinned, commit = _code_pin(record)
    if path.is_dir() and _tree_of(path, pinned) == pinned:
        say(f"adding the code tree from {path}")
        return path
    if commit is not None and path.is_dir():
        notes = _notes(record, "code")
        sub = str(notes.get("path") or ".")
        checkout = tmp / "code"
        checkout.mkdir()
        tree = commit if sub == "." else f"{commit}:{sub}"
        packed = tmp / "code.tar"
        with open(packed, "wb") as out:
            archive = subprocess.run(
                ["git", "-C", str(path), "archive", "--format=tar", tree],
                stdout=out,
                stderr=subprocess.DEVNULL,
                check=False,
            )
        if archive.returncode == 0:
            unpack(packed, checkout)  # the one safe unpacker: files and directories only
            if _tree_of(checkout, pinned) == pinned:
                say(f"adding the code tree of commit {commit} (the working tree at {path} changed)")
                return checkout
    raise MismatchError(
        f"code: neither {path} nor its commit {commit} holds the code tree the record pins "
        f"({pinned})",
        hint="check out the recorded commit there (and the uncommitted changes the run had, "
        "if it ran with --allow-dirty); nothing was written",
    )


@dataclass(frozen=True)
class Unpacked:
    """An unpacked bundle: where each part is, and what its index claims (unchecked)."""

    root: Path
    index: dict[str, Any]

    @property
    def record_dir(self) -> Path:
        """The run record directory."""
        return self.root / "record"

    @property
    def image_archive(self) -> Path:
        """The image as ``docker save`` wrote it."""
        return self.root / "image" / "image.tar"

    def inputs(self) -> dict[str, Path]:
        """Each input that was exported, by name."""
        return {name: self.root / "inputs" / name for name in self.index.get("inputs", {})}

    @property
    def code_dir(self) -> Path | None:
        """The code tree, when the run had code."""
        return self.root / "code" if self.index.get("code") else None


def unpack_export(archive: Path, dest: Path) -> Unpacked:
    """Unpack ``archive`` safely into ``dest`` and read its index."""
    unpack(archive, dest)
    try:
        index = json.loads(safeio.read_capped(dest / INDEX, cap=1 << 20))
    except (OSError, ValueError, safeio.UnsafeFile) as exc:
        raise InputError(f"{archive}: not a rexec audit bundle (no readable {INDEX})") from exc
    if not isinstance(index, dict) or index.get("schema") != SCHEMA:
        raise InputError(f"{archive}: {INDEX} is not {SCHEMA}")
    return Unpacked(dest, index)


def _image_id_of(archive: Path) -> str:
    """The image id (sha256 of its config) inside a docker-archive tar, which must hold
    exactly one image and name no tag: loading it must not re-point a tag in the engine
    (``docker save`` by id, as ``export`` does, writes none)."""
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        if "repositories" in names:
            raise MismatchError(f"{archive}: it names tags (a 'repositories' file)")
        manifest = tar.extractfile("manifest.json")
        if manifest is None:
            raise MismatchError(f"{archive}: no manifest.json")
        entries = json.loads(manifest.read(1 << 20))
        if not isinstance(entries, list) or len(entries) != 1:
            raise MismatchError(f"{archive}: expected exactly one image")
        (entry,) = entries
        if entry.get("RepoTags"):
            raise MismatchError(
                f"{archive}: the image is tagged {entry['RepoTags']!r}; loading it would "
                "re-point those tags in the engine"
            )
        config = tar.extractfile(entry["Config"])
        if config is None:
            raise MismatchError(f"{archive}: no image config")
        return "sha256:" + hashlib.sha256(config.read(64 << 20)).hexdigest()


def check_unpacked(unpacked: Unpacked, record: RunRecord, *, say: Say) -> dict[str, Any]:
    """The image, inputs and code against the verified ``record``; raise on any mismatch."""
    wanted = _notes(record, "image").get("imageId")
    try:
        found = _image_id_of(unpacked.image_archive)
    except (OSError, KeyError, ValueError, TypeError, AttributeError, tarfile.TarError) as exc:
        raise MismatchError(
            f"{unpacked.image_archive}: not a readable image archive ({exc})"
        ) from exc
    if found != wanted:
        raise MismatchError(f"the bundle's image is {found}, the record names {wanted}")
    say(f"image {found[:19]}… matches the record")
    recorded = {i["name"]: i["digest"] for i in record.spec.get("inputs", [])}
    checked = []
    for name, path in sorted(unpacked.inputs().items()):
        if name not in recorded:
            raise MismatchError(f"the bundle has an input {name!r} the record does not name")
        snapshot.verify_tree(path, recorded[name], use_cache=False)
        checked.append(name)
        say(f"input {name} matches {recorded[name]}")
    code = None
    if unpacked.code_dir is not None:
        if record.dependency("code") is None:
            raise MismatchError("the bundle has a code tree, the record names no code")
        pinned, _ = _code_pin(record)
        code = _tree_of(unpacked.code_dir, pinned)
        if code != pinned:
            raise MismatchError(f"the bundle's code tree is {code}, the record pins {pinned}")
    missing = sorted(set(recorded) - set(checked))
    return {"image": found, "inputs": checked, "notIncluded": missing, "code": code}


def make_code_repo(code_dir: Path) -> None:
    """Replay resolves code through git: the exported tree becomes a one-commit repository
    (its tree digest, which is what the record pins, leaves .git out)."""
    commit = ["-c", "user.name=rexec", "-c", "user.email=rexec@localhost", "commit", "-qm", "x"]
    for args in (["init", "-q"], ["add", "-A"], [*commit, "--allow-empty"]):
        subprocess.run(["git", "-C", str(code_dir), *args], check=True, capture_output=True)


def is_bundle(target: Path) -> bool:
    """Whether ``target`` names an audit bundle (a tar file) rather than a record directory."""
    return target.is_file() and tarfile.is_tarfile(target)
