"""Check a ``docker save`` archive against its pin before the engine sees it.

An air-gapped host receives images as tar files. ``docker load`` trusts
whatever it is given and may overwrite tags, so rexec reads the archive first:
the image config's sha256 (the image id) must be the pinned id, and every
layer must hash to the diff id the config lists. Only then is it loaded.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executor.errors import InputError, MismatchError
from executor.safeio import sha256_file

_CHUNK = 1 << 20


@dataclass(frozen=True)
class CheckedArchive:
    """An image archive checked against its pinned id before the engine loads it."""

    path: Path
    image_id: str
    sha256: str  # of the whole tar file, recorded so the archive itself is named
    repo_tags: tuple[str, ...]
    layers: int


def _member_bytes(tar: tarfile.TarFile, name: str, archive: Path) -> bytes:
    try:
        fh = tar.extractfile(name)
    except KeyError:
        fh = None
    if fh is None:
        raise InputError(f"{archive}: the archive has no file {name!r}")
    return fh.read()


def _member_sha256(tar: tarfile.TarFile, name: str, archive: Path) -> str:
    try:
        fh = tar.extractfile(name)
    except KeyError:
        fh = None
    if fh is None:
        raise InputError(f"{archive}: the archive names layer {name!r} but does not hold it")
    h = hashlib.sha256()
    while chunk := fh.read(_CHUNK):
        h.update(chunk)
    return "sha256:" + h.hexdigest()


def check_archive(path: Path, *, image_id: str) -> CheckedArchive:
    """Verify ``path`` holds image ``image_id`` intact; raise MismatchError if not."""
    if not path.is_file():
        raise InputError(
            f"image.archive.path: {path} does not exist",
            hint="the path is relative to the spec file's directory; make it with "
            "`docker save -o FILE IMAGE`",
        )
    try:
        tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by the `with` below
    except (tarfile.TarError, OSError) as exc:
        raise InputError(f"image.archive.path: {path} is not a tar archive: {exc}") from exc
    with tar:
        names = set(tar.getnames())
        if "manifest.json" not in names:
            hint = (
                "an OCI layout without manifest.json cannot be loaded by this engine; "
                "save the image with `docker save -o FILE IMAGE`"
                if "index.json" in names
                else "make it with `docker save -o FILE IMAGE`"
            )
            raise InputError(f"image.archive.path: {path} has no manifest.json", hint=hint)
        manifest: list[dict[str, Any]] = json.loads(_member_bytes(tar, "manifest.json", path))
        found: list[str] = []
        for entry in manifest:
            config = _member_bytes(tar, str(entry["Config"]), path)
            config_id = "sha256:" + hashlib.sha256(config).hexdigest()
            found.append(config_id)
            if config_id != image_id:
                continue
            diff_ids = list(json.loads(config).get("rootfs", {}).get("diff_ids", []))
            layers = [str(x) for x in entry.get("Layers", [])]
            if len(layers) != len(diff_ids):
                raise MismatchError(
                    f"image.archive: {path} lists {len(layers)} layers, its config {len(diff_ids)}",
                    hint="the archive is damaged; save the image again",
                )
            for index, (layer, want) in enumerate(zip(layers, diff_ids, strict=True)):
                got = _member_sha256(tar, layer, path)
                if got != want:
                    raise MismatchError(
                        f"image.archive: layer {index} ({layer}) of {path} hashes to {got}, "
                        f"its config says {want}",
                        hint="the archive was altered or damaged; do not load it",
                    )
            return CheckedArchive(
                path=path,
                image_id=image_id,
                sha256=sha256_file(path, follow_links=True),
                repo_tags=tuple(entry.get("RepoTags") or ()),
                layers=len(layers),
            )
    raise MismatchError(
        f"image.archive: {path} does not hold the pinned image {image_id}",
        details=[f"image ids in the archive: {', '.join(found) or 'none'}"],
        hint="check image.archive.id against `docker inspect --format '{{.Id}}' IMAGE` on the "
        "machine that saved it; an archive that does not match its pin is never loaded",
    )
