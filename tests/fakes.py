"""Fakes at the container-engine seam, shared by every test that needs one.

The real engine is exercised end to end in tests/e2e; these stand in for it
where a test asks what the pipeline hands the engine, or runs a hostile "job"
against the very directories rexec mounts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from executor.runtime import ContainerRequest, ContainerResult, ImageInfo, LogSink

IMAGE_ID = "sha256:" + "ab" * 32
Job = Callable[[Path, Path], None]  # (outputs, reports) as the job would see them


def _train(outputs: Path, reports: Path) -> None:
    (outputs / "model.bin").write_bytes(b"weights")


class FakeRuntime:
    """Answers like an engine; records every request; runs ``job`` on the host against
    the outputs and reports directories the request mounts."""

    def __init__(
        self,
        job: Job = _train,
        *,
        exit_code: int = 0,
        stdout: Callable[[ContainerRequest], bytes] = lambda request: b"trained\n",
    ) -> None:
        self.job = job
        self.exit_code = exit_code
        self.stdout = stdout  # what the job prints, from its request (its seed, say)
        self.requests: list[ContainerRequest] = []
        self.builds = 0

    def engine_info(self) -> dict[str, Any]:
        return {"name": "docker", "version": "20.10-fake"}

    def inspect_image(self, ref: str) -> ImageInfo | None:
        return ImageInfo(IMAGE_ID, (), "", "linux", "amd64")

    def build(self, **kwargs: Any) -> ImageInfo:
        self.builds += 1
        return ImageInfo(IMAGE_ID, (), "", "linux", "amd64")

    def run(self, request: ContainerRequest, sink: LogSink) -> ContainerResult:
        self.requests.append(request)
        by_target = {m.target: m.source for m in request.mounts}
        self.job(by_target[request.env["REXEC_OUTPUTS"]], by_target[request.env["REXEC_REPORTS"]])
        sink("stdout", self.stdout(request))
        now = datetime.now(UTC)
        return ContainerResult(self.exit_code, now, now, False, False, "fake")

    def run_capture(self, image: str, command: Sequence[str], *, user: str) -> str:
        return json.dumps({"schema": "rexec.inventory/v1", "python": {"version": "3.11.2"}}) + "\n"

    def unenforced_limits(self, request: ContainerRequest) -> list[str]:
        return []

    def close(self) -> None:
        self.closed = True

    def __getattr__(self, name: str) -> Callable[..., Any]:
        raise AssertionError(f"the pipeline called runtime.{name}, which this fake does not expect")


class FakeImageEngine:
    """Holds images by ref; ``build`` mints a new id each call, like a real rebuild
    whose output is not reproducible would."""

    def __init__(self) -> None:
        self.images: dict[str, ImageInfo] = {}
        self.builds = 0
        self.loaded: list[Path] = []

    def add(self, ref: str, image_id: str) -> None:
        info = ImageInfo(image_id, (), "", "linux", "amd64")
        self.images[ref] = info
        self.images[image_id] = info

    def inspect_image(self, ref: str) -> ImageInfo | None:
        return self.images.get(ref)

    def build(
        self,
        *,
        context: Path,
        dockerfile: Path,
        tag: str,
        args: Mapping[str, str],
        target: str | None,
        log: Callable[[str], None],
    ) -> ImageInfo:
        self.builds += 1
        image_id = "sha256:" + hashlib.sha256(f"build {self.builds}".encode()).hexdigest()
        self.add(tag, image_id)
        return self.images[image_id]

    def load(self, archive: Path) -> None:
        self.loaded.append(archive)

    def save(self, image_id: str, target: Path) -> None:
        raise AssertionError("the fake engine saves no images")
