"""Images end to end: lock against the local registry, pull by digest, push, archives.

Each test makes its own images (a file copied onto the pinned base, so they
are tiny and differ in what the job can observe) under a repository name of
its own, so tests never see each other's tags. Digests expected here come
from the registry's HTTP API or from `docker save`, never from rexec.
"""

from __future__ import annotations

import base64
import json
import subprocess
import tomllib
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from executor.errors import ExitCode
from tests.e2e.conftest import BASE_IMAGE, Rexec, gen, spec

pytestmark = [pytest.mark.docker, pytest.mark.registry, pytest.mark.usefixtures("engine")]

MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    )
)


_made: list[str] = []  # image ids and tags this module created, removed after each test


@pytest.fixture(autouse=True)
def _remove_made_images() -> Iterator[None]:
    yield
    while _made:
        subprocess.run(["docker", "rmi", "-f", _made.pop()], capture_output=True, check=False)


def registry_tag_digest(registry: str, repo: str, tag: str) -> str:
    request = urllib.request.Request(
        f"http://{registry}/v2/{repo}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": MANIFEST_TYPES},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.headers["Docker-Content-Digest"])


def make_image(tmp_path: Path, content: str) -> str:
    """An image whose /which.txt says `content`; returns its image id."""
    ctx = tmp_path / f"ctx-{uuid.uuid4().hex[:8]}"
    ctx.mkdir()
    (ctx / "which.txt").write_text(content)
    (ctx / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY which.txt /which.txt\n")
    out = subprocess.run(
        ["docker", "build", "-q", str(ctx)],
        capture_output=True,
        text=True,
        check=True,
        env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/local/bin:/usr/bin:/bin"},
    )
    _made.append(out.stdout.strip())
    return out.stdout.strip()


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def push(image_id: str, ref: str) -> None:
    docker("tag", image_id, ref)
    _made.append(ref)
    docker("push", "-q", ref)


def job(image: dict[str, Any]) -> dict[str, Any]:
    """A spec that copies the image's /which.txt to its outputs."""
    command = ["sh", "-c", "cp /which.txt $REXEC_OUTPUTS/which.txt"]
    return spec("img", command, image=image, run={"timeout": "1m"})


def statement(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "statement.json").read_bytes())
    return data


def image_dependency(run_dir: Path) -> dict[str, Any]:
    deps = statement(run_dir)["predicate"]["buildDefinition"]["resolvedDependencies"]
    found: dict[str, Any] = next(d for d in deps if d["name"] == "image")
    return found


@pytest.fixture
def other_registry_auth(rexec: Rexec, tmp_path: Path) -> None:
    """A Docker config with credentials for some other registry: it must not
    get in the way of the unauthenticated local one."""
    config = tmp_path / "docker-config"
    config.mkdir()
    auth = base64.b64encode(b"someone:secret").decode()
    (config / "config.json").write_text(
        json.dumps({"auths": {"other.invalid:5000": {"auth": auth}}})
    )
    rexec.env["DOCKER_CONFIG"] = str(config)


def test_lock_pins_the_tag_and_the_run_pulls_exactly_that_digest(
    rexec: Rexec, registry: str, tmp_path: Path, other_registry_auth: None
) -> None:
    repo = f"e2e-{uuid.uuid4().hex[:10]}/img"
    tag_ref = f"{registry}/{repo}:latest"
    first = make_image(tmp_path, "first\n")
    push(first, tag_ref)
    first_digest = registry_tag_digest(registry, repo, "latest")

    spec = tmp_path / "spec.toml"
    gen(spec, job({"ref": tag_ref}))
    refused = rexec("run", spec, "--sign", "none", check=int(ExitCode.BAD_INPUT))
    assert "is not pinned" in refused.stderr and "rexec lock" in refused.stderr

    locked = tmp_path / "locked" / "spec.lock.toml"
    rexec("lock", spec, "-o", locked)
    assert tomllib.loads(locked.read_text())["image"]["ref"] == f"{tag_ref}@{first_digest}"

    # Re-tag: the tag now names another image, and the engine forgets the first.
    second = make_image(tmp_path, "second\n")
    push(second, tag_ref)
    assert registry_tag_digest(registry, repo, "latest") != first_digest
    docker("rmi", "-f", first)

    run_dir = rexec.run(locked, None, tmp_path / "runs", "-q")
    assert (run_dir / "outputs" / "which.txt").read_text() == "first\n"
    dep = image_dependency(run_dir)
    assert dep["digest"]["sha256"] == first_digest.removeprefix("sha256:")
    assert dep["uri"] == f"oci://{registry}/{repo}"
    assert dep["annotations"]["imageId"] == first

    # --allow-unpinned resolves the tag now (to the second image) and says so.
    run_dir = rexec.run(spec, None, tmp_path / "runs", "-q", "--allow-unpinned")
    assert (run_dir / "outputs" / "which.txt").read_text() == "second\n"
    internal = statement(run_dir)["predicate"]["buildDefinition"]["internalParameters"]
    assert internal["optIns"]["allowUnpinned"] is True
    second_digest = registry_tag_digest(registry, repo, "latest")
    assert internal["pinnedAtRunTime"]["pins"] == [
        {"key": "image.ref", "old": tag_ref, "new": f"{tag_ref}@{second_digest}"}
    ]


def test_pulled_image_with_another_digest_is_refused(
    rexec: Rexec, registry: str, tmp_path: Path
) -> None:
    repo = f"e2e-{uuid.uuid4().hex[:10]}/img"
    image = make_image(tmp_path, "x\n")
    push(image, f"{registry}/{repo}:v1")
    wrong = "sha256:" + "0" * 64
    spec = tmp_path / "spec.toml"
    gen(spec, job({"ref": f"{registry}/{repo}@{wrong}"}))
    # The registry has no such manifest: nothing is pulled, nothing runs.
    out = rexec("run", spec, "--sign", "none", check=int(ExitCode.INFRASTRUCTURE))
    assert f"cannot pull {registry}/{repo}@{wrong}" in out.stderr


def test_unpinned_from_fails_with_the_line_number(rexec: Rexec, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("# a job image\n\nFROM rexec/base:bookworm\n")
    spec = tmp_path / "spec.toml"
    gen(spec, job({"build": {"dockerfile": f"{ctx}/Dockerfile", "context": str(ctx)}}))
    out = rexec("run", spec, "--sign", "none", check=int(ExitCode.BAD_INPUT))
    assert f"{ctx}/Dockerfile:3: FROM rexec/base:bookworm" in out.stderr
    assert "@sha256:" in out.stderr  # says how to pin it


def test_build_twice_reuses_and_push_records_the_repo_digest(
    rexec: Rexec, registry: str, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "which.txt").write_text(f"{uuid.uuid4()}\n")
    (ctx / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nCOPY which.txt /which.txt\n")
    spec = tmp_path / "spec.toml"
    build = {"dockerfile": f"{ctx}/Dockerfile", "context": str(ctx), "args": {"BASE": BASE_IMAGE}}
    gen(spec, job({"build": build}))
    first = image_dependency(rexec.run(spec, None, tmp_path / "runs", "-q"))["annotations"]["build"]
    repo = f"e2e-{uuid.uuid4().hex[:10]}/pushed"
    run_dir = rexec.run(spec, None, tmp_path / "runs", "-q", "--push", f"{registry}/{repo}:v1")
    dep = image_dependency(run_dir)
    second = dep["annotations"]["build"]
    assert (first["reused"], second["reused"]) == (False, True)
    assert {k: v for k, v in first.items() if k != "reused"} == {
        k: v for k, v in second.items() if k != "reused"
    }
    assert first["bases"] == [
        {"line": 2, "ref": BASE_IMAGE, "digest": BASE_IMAGE.rsplit("@", 1)[1]}
    ]
    assert dep["annotations"]["pushed"] == f"{registry}/{repo}@" + registry_tag_digest(
        registry, repo, "v1"
    )


def test_archive_is_checked_before_it_is_loaded(rexec: Rexec, tmp_path: Path) -> None:
    image = make_image(tmp_path, "archived\n")
    archive = tmp_path / "img.tar"
    docker("save", "-o", str(archive), image)
    spec = tmp_path / "spec.toml"
    wrong = "sha256:" + "e" * 64
    gen(spec, job({"archive": {"path": "img.tar", "id": wrong}}))
    out = rexec("run", spec, "--sign", "none", check=int(ExitCode.MISMATCH))
    assert image in out.stderr  # names what the archive does hold

    docker("rmi", "-f", image)
    gen(spec, job({"archive": {"path": "img.tar", "id": image}}))
    run_dir = rexec.run(spec, None, tmp_path / "runs", "-q")
    assert (run_dir / "outputs" / "which.txt").read_text() == "archived\n"
    dep = image_dependency(run_dir)
    assert dep["digest"]["sha256"] == image.removeprefix("sha256:")
    assert (
        dep["annotations"]["archive"]["sha256"]
        == (
            subprocess.run(
                ["sha256sum", str(archive)], capture_output=True, text=True, check=True
            ).stdout.split()[0]
        )
    )
