"""Turn the spec's ``[image]`` into an image identity the engine holds.

A ``ref`` must already name a digest: it is used when present, pulled when
absent, and checked against that digest either way. A ``build`` is built
through the Engine API and identified by the resulting image id, with the
Dockerfile digest and the build-context tree digest recorded so anyone can
see what it was built from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from executor import snapshot
from executor.canonical import sha256_file
from executor.errors import InputError
from executor.runtime import ContainerRuntime, check_repo_digest
from executor.spec import BuildSpec, ImageSpec


@dataclass(frozen=True)
class ResolvedImage:
    """What runs: ``run_ref`` is handed to the engine, ``digest`` is recorded."""

    run_ref: str
    image_id: str  # sha256:<hex> of the image config, what the engine runs
    digest: str  # the pin: repo digest for pulled images, image id for local builds
    uri: str  # oci://… for registry images, docker-image-id:… for local builds
    build: dict[str, Any] | None = field(default=None)

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
        return entry


def resolve_image(
    image: ImageSpec, *, runtime: ContainerRuntime, spec_name: str, log: Callable[[str], None]
) -> ResolvedImage:
    if image.image_id is not None:
        return _resolve_local_id(image.image_id, runtime=runtime)
    if image.ref is not None:
        return _resolve_ref(image.ref, runtime=runtime, log=log)
    assert image.build is not None  # the spec parser guarantees exactly one
    return _build(image.build, runtime=runtime, spec_name=spec_name, log=log)


def _resolve_ref(
    ref: str, *, runtime: ContainerRuntime, log: Callable[[str], None]
) -> ResolvedImage:
    info = runtime.inspect_image(ref)
    if info is None:
        log(f"pulling {ref}\n")
        info = runtime.pull(ref)
    check_repo_digest(ref, info)
    repository, digest = ref.rsplit("@", 1)
    return ResolvedImage(run_ref=ref, image_id=info.id, digest=digest, uri=f"oci://{repository}")


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


def _build(
    build: BuildSpec, *, runtime: ContainerRuntime, spec_name: str, log: Callable[[str], None]
) -> ResolvedImage:
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
    context = snapshot.hash_tree(build.context)
    dockerfile_sha256 = sha256_file(build.dockerfile)
    tag = f"rexec-build/{spec_name.lower()}:{context.digest.rsplit(':', 1)[1][:16]}"
    log(f"building {build.dockerfile} (context {context.digest})\n")
    info = runtime.build(
        context=build.context,
        dockerfile=build.dockerfile,
        tag=tag,
        args=build.args,
        target=build.target,
        log=log,
    )
    provenance = {
        "dockerfileSha256": dockerfile_sha256,
        "contextDigest": context.digest,
        "args": dict(sorted(build.args.items())),
        "target": build.target,
        "tag": tag,
    }
    return ResolvedImage(
        run_ref=info.id,
        image_id=info.id,
        digest=info.id,
        uri=f"docker-image-id:{info.id}",
        build=provenance,
    )
