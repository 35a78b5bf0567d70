"""Turn the spec's ``[image]`` into an image identity the engine holds.

A ``ref`` must already name a digest: it is used when present, pulled when
absent, and checked against that digest either way. An ``archive`` is checked
against its pinned image id before ``docker load`` (``image_archive``). A
``build`` must name every base by digest (``FROM repo@sha256:…``, usually via
a build argument that ``rexec lock`` pins); its provenance (Dockerfile sha256,
build-context tree digest, base digests, args, target) is recorded, and a
build whose inputs match an earlier one reuses that image instead of
building again: the same inputs must not yield a second, different image id.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from executor import snapshot
from executor.canonical import canonical_json, sha256_hex
from executor.errors import InputError, MismatchError
from executor.images.archive import check_archive
from executor.images.dockerfile import read_from_lines, unpinned_error
from executor.images.inventory import image_inventory
from executor.paths import cache_dir
from executor.progress import Say
from executor.runtime import ContainerRuntime, check_repo_digest
from executor.safeio import sha256_file, write_atomic
from executor.spec import ArchiveSpec, BuildSpec, ImageSpec

__all__ = [
    "ResolvedImage",
    "RunImage",
    "image_for_run",
    "read_from_lines",
    "resolve_image",
]


@dataclass(frozen=True)
class ResolvedImage:
    """What runs: ``run_ref`` is handed to the engine, ``digest`` is recorded."""

    run_ref: str
    image_id: str  # sha256:<hex> of the image config, what the engine runs
    digest: str  # the pin: repo digest for pulled images, image id for local builds
    uri: str  # oci://… for registry images, docker-image-id:… for local builds
    build: dict[str, Any] | None = field(default=None)
    archive: dict[str, Any] | None = field(default=None)
    pushed: str | None = None  # registry/repo@sha256:… after `rexec run --push`

    def dependency(self) -> dict[str, Any]:
        """The SLSA ``resolvedDependencies`` entry for this image."""
        entry: dict[str, Any] = {
            "name": "image",
            "uri": self.uri,
            "digest": {"sha256": self.digest.removeprefix("sha256:")},
            "annotations": {"imageId": self.image_id},
        }
        if self.build:
            entry["annotations"]["build"] = self.build
        if self.archive:
            entry["annotations"]["archive"] = self.archive
        if self.pushed:
            entry["annotations"]["pushed"] = self.pushed
        return entry


@dataclass(frozen=True)
class RunImage:
    """A run's image, ready: resolved against its pin (and pushed if asked), its config
    checked, and the job's view of it (the inventory) read."""

    resolved: ResolvedImage
    entrypoint: tuple[str, ...]  # the image's ENTRYPOINT, which rexec replaces (recorded)
    inventory: Mapping[str, Any]


def image_for_run(
    image: ImageSpec,
    *,
    runtime: ContainerRuntime,
    spec_name: str,
    say: Say,
    allow_unpinned: bool = False,
    push: str | None = None,
) -> RunImage:
    """Everything a run needs of its image, in one call, in the order that fails soonest."""
    log = _lines(say)
    resolved = resolve_image(
        image, runtime=runtime, spec_name=spec_name, log=log, allow_unpinned=allow_unpinned
    )
    if push:
        resolved = push_image(resolved, target=push, runtime=runtime, log=log)
        say(f"pushed {resolved.pushed}")
    say(f"image {resolved.digest}")
    entrypoint = check_image_config(resolved, runtime=runtime)
    inventory = image_inventory(
        resolved.image_id, run_ref=resolved.run_ref, runtime=runtime, say=say
    )
    return RunImage(resolved, entrypoint, inventory)


def _lines(say: Say) -> Say:
    """The engine's build and push output, line by line, blank lines left out."""

    def log(text: str) -> None:
        if text.strip():
            say(text.rstrip("\n"))

    return log


def resolve_image(
    image: ImageSpec,
    *,
    runtime: ContainerRuntime,
    spec_name: str,
    log: Say,
    allow_unpinned: bool = False,
) -> ResolvedImage:
    """Turn the spec's ``[image]`` into an image the engine holds, checked against its pin."""
    if image.image_id is not None:
        return _resolve_local_id(image.image_id, runtime=runtime)
    if image.ref is not None:
        return _resolve_ref(image.ref, runtime=runtime, log=log)
    if image.archive is not None:
        return _load_archive(image.archive, runtime=runtime, log=log)
    assert image.build is not None  # the spec parser guarantees exactly one
    return _build(
        image.build,
        runtime=runtime,
        spec_name=spec_name,
        log=log,
        allow_unpinned=allow_unpinned or image.build.allow_unpinned_from,
    )


def _resolve_ref(ref: str, *, runtime: ContainerRuntime, log: Say) -> ResolvedImage:
    info = runtime.inspect_image(ref)
    if info is None:
        log(f"pulling {ref}\n")
        info = runtime.pull(ref)
    check_repo_digest(ref, info)
    name, digest = ref.rsplit("@", 1)
    return ResolvedImage(
        run_ref=ref, image_id=info.id, digest=digest, uri=f"oci://{_repository(name)}"
    )


def _repository(name: str) -> str:
    """``host:5000/repo:tag`` → ``host:5000/repo``; a port is not a tag."""
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]


def _resolve_local_id(image_id: str, *, runtime: ContainerRuntime) -> ResolvedImage:
    info = runtime.inspect_image(image_id)
    if info is None or info.id != image_id:
        raise InputError(
            f"image {image_id} is not present in this Docker engine",
            hint="rebuild it from the recorded Dockerfile and context, or load it with "
            "`docker load`; a rebuild only matches if the build is reproducible",
        )
    return ResolvedImage(
        run_ref=image_id, image_id=image_id, digest=image_id, uri=f"docker-image-id:{image_id}"
    )


def _load_archive(archive: ArchiveSpec, *, runtime: ContainerRuntime, log: Say) -> ResolvedImage:
    info = runtime.inspect_image(archive.image_id)
    checked = check_archive(archive.path, image_id=archive.image_id)
    if info is None or info.id != archive.image_id:
        log(
            f"loading {archive.path} ({checked.layers} layers, "
            f"checked against {archive.image_id})\n"
        )
        runtime.load(archive.path)
        info = runtime.inspect_image(archive.image_id)
        if info is None or info.id != archive.image_id:
            raise MismatchError(
                f"image.archive: loading {archive.path} did not yield image {archive.image_id}",
                hint="the engine rewrote the image; load it by hand and compare `docker inspect`",
            )
    resolved = _resolve_local_id(archive.image_id, runtime=runtime)
    return dataclasses.replace(
        resolved,
        archive={
            "sha256": checked.sha256,
            "file": archive.path.name,
            "repoTags": sorted(checked.repo_tags),
        },
    )


def _check_paths(build: BuildSpec) -> None:
    if not build.dockerfile.is_file():
        raise InputError(
            f"image.build.dockerfile: {build.dockerfile} does not exist",
            hint="the path is relative to the spec file's directory",
        )
    if not build.context.is_dir():
        raise InputError(
            f"image.build.context: {build.context} is not a directory",
            hint="the path is relative to the spec file's directory",
        )


def base_images(
    build: BuildSpec, *, runtime: ContainerRuntime, allow_unpinned: bool
) -> list[dict[str, Any]]:
    """Each external ``FROM`` with its pin; a tag is refused unless allowed, and
    then pinned to the local image id it stands for right now."""
    lines = read_from_lines(build.dockerfile, args=build.args)
    unpinned = [f for f in lines if not f.pinned]
    if unpinned and not allow_unpinned:
        raise unpinned_error(build.dockerfile, unpinned)
    bases: list[dict[str, Any]] = []
    for f in lines:
        if f.kind != "image":
            continue
        if f.pinned:
            bases.append({"line": f.line, "ref": f.image, "digest": f.image.rsplit("@", 1)[1]})
            continue
        info = runtime.inspect_image(f.image)
        if info is None:
            raise InputError(
                f"{build.dockerfile}:{f.line}: base {f.image!r} is not in this Docker engine",
                hint="an unpinned base is never pulled; build or pull it first, or pin it "
                "by digest with `rexec lock`",
            )
        bases.append({"line": f.line, "ref": f.image, "imageId": info.id, "pinned": False})
    return bases


def build_key(provenance: Mapping[str, Any]) -> str:
    """What decides a build's result: same key, same image (so reuse it)."""
    inputs = {
        "dockerfileSha256": provenance["dockerfileSha256"],
        "contextDigest": provenance["contextDigest"],
        "bases": [b.get("digest") or b["imageId"] for b in provenance["bases"]],
        "args": provenance["args"],
        "target": provenance["target"],
    }
    return "sha256:" + sha256_hex(canonical_json(inputs))


def _cache_file(key: str) -> Path:
    return Path(cache_dir(), "builds", f"{key.removeprefix('sha256:')}.json")


def _reusable(key: str, runtime: ContainerRuntime) -> str | None:
    try:
        image_id = str(json.loads(_cache_file(key).read_bytes())["imageId"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    info = runtime.inspect_image(image_id)
    return image_id if info is not None and info.id == image_id else None


def _remember(key: str, image_id: str) -> None:
    path = _cache_file(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, canonical_json({"buildKey": key, "imageId": image_id}), durable=False)


def _build(
    build: BuildSpec,
    *,
    runtime: ContainerRuntime,
    spec_name: str,
    log: Say,
    allow_unpinned: bool,
) -> ResolvedImage:
    _check_paths(build)
    bases = base_images(build, runtime=runtime, allow_unpinned=allow_unpinned)
    context = snapshot.hash_tree(build.context)
    provenance: dict[str, Any] = {
        "dockerfileSha256": sha256_file(build.dockerfile, follow_links=True),
        "contextDigest": context.digest,
        "bases": bases,
        "args": dict(sorted(build.args.items())),
        "target": build.target,
        "tag": f"rexec-build/{spec_name.lower()}:{context.digest.rsplit(':', 1)[1][:16]}",
    }
    key = build_key(provenance)
    provenance["buildKey"] = key
    image_id = _reusable(key, runtime)
    reused = image_id is not None
    if image_id is not None:
        log(f"reusing image {image_id}: built before from the same inputs ({key})\n")
    else:
        log(f"building {build.dockerfile} (context {context.digest})\n")
        info = runtime.build(
            context=build.context,
            dockerfile=build.dockerfile,
            tag=provenance["tag"],
            args=build.args,
            target=build.target,
            log=log,
        )
        image_id = info.id
        _remember(key, image_id)
    provenance["imageId"] = image_id
    provenance["reused"] = reused
    return ResolvedImage(
        run_ref=image_id,
        image_id=image_id,
        digest=image_id,
        uri=f"docker-image-id:{image_id}",
        build=provenance,
    )


def push_image(
    image: ResolvedImage, *, target: str, runtime: ContainerRuntime, log: Say
) -> ResolvedImage:
    """Push the image to ``REGISTRY/REPO[:TAG]`` and record the repository digest."""
    repository = _repository(target)
    tag = target[len(repository) + 1 :] or f"rexec-{image.image_id.removeprefix('sha256:')[:12]}"
    if "@" in target or not repository or "/" not in repository:
        raise InputError(
            f"--push {target!r}: expected REGISTRY/REPOSITORY[:TAG]",
            hint="for example --push 127.0.0.1:5000/team/trainer",
        )
    log(f"pushing {image.image_id} to {repository}:{tag}\n")
    digest = runtime.push(image.run_ref, repository=repository, tag=tag)
    pinned = f"{repository}@{digest}"
    info = runtime.inspect_image(pinned)
    if info is None or info.id != image.image_id:
        raise MismatchError(
            f"pushed {image.image_id} to {repository}:{tag}, but {pinned} is not that image",
            hint="another push to the same tag may have raced this one; push again",
        )
    return dataclasses.replace(image, pushed=pinned)


def check_image_config(image: ResolvedImage, *, runtime: ContainerRuntime) -> tuple[str, ...]:
    """Refuse an image whose VOLUMEs would give the job unrecorded writable storage, and
    return the ENTRYPOINT rexec overrides (recorded, so a reader knows it never ran)."""
    info = runtime.inspect_image(image.run_ref)
    if info is None:
        raise InputError(f"image {image.run_ref} is not present in the engine")
    if info.volumes:
        raise InputError(
            f"image {image.digest} declares VOLUME {', '.join(info.volumes)}: the job would get "
            "writable storage outside its outputs that no record names",
            hint="remove the VOLUME lines from the Dockerfile (and from its bases); "
            "rexec mounts the inputs and the outputs itself",
        )
    return info.entrypoint
