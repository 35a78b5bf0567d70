"""What the container engine seam speaks: the runtime protocol, requests, results, labels.

Below the engines (``docker``) and the face, so an engine imports its types from
here and never the face that chooses it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Protocol

from executor.errors import MismatchError

RUN_LABEL = "dev.rexec.run-id"
# Who owns a job container: `rexec gc` removes those whose rexec process is gone.
OWNER_PID_LABEL = "dev.rexec.owner-pid"
OWNER_HOST_LABEL = "dev.rexec.owner-host"
OWNER_START_LABEL = "dev.rexec.owner-start"
# The spec file a job came from: lets tests and tools find its containers.
SPEC_LABEL = "dev.rexec.spec"
NOBODY = "65534:65534"  # the job's user when rexec itself runs as root


@dataclass(frozen=True)
class Mount:
    """A bind mount: a host path at a container target, read-only unless said."""

    source: Path
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class Hardening:
    """What the container may do. Every field defaults to the locked-down value;
    anything looser is an explicit opt-in that the manifest records."""

    network: str = "none"  # or an opt-in: "bridge", "host"
    read_only_root: bool = True
    tmpfs_size: str = "256m"
    cap_drop_all: bool = True
    no_new_privileges: bool = True
    # Host devices passed in (InfiniBand's verbs and RDMA CM on a multi-node job's node).
    # RDMA also needs locked memory: the engine's default ulimit (docs/cluster.md), since
    # raising it per container fails wherever the engine may not (seen here).
    devices: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        """The hardening as the record states it."""
        return {
            "network": self.network,
            "readOnlyRootFilesystem": self.read_only_root,
            "tmpfs": {"/tmp": f"size={self.tmpfs_size},nosuid,nodev"},
            "capabilities": "drop ALL" if self.cap_drop_all else "engine default",
            "noNewPrivileges": self.no_new_privileges,
            **({"devices": list(self.devices)} if self.devices else {}),
        }


@dataclass(frozen=True)
class ContainerRequest:
    """Everything the engine needs to run the job, hardened, as rexec decided it."""

    image: str
    command: Sequence[str]
    workdir: str
    env: Mapping[str, str]
    mounts: Sequence[Mount]
    user: str
    labels: Mapping[str, str]
    hardening: Hardening = field(default_factory=Hardening)
    cpus: float | None = None
    memory_bytes: int | None = None
    pids_limit: int = 512
    gpu_uuids: Sequence[str] = ()
    timeout_s: float = 3600.0
    # When rexec is asked to stop: 0 removes the container at once; more passes the signal
    # rexec received on to the job and gives it this long to end (to write a checkpoint).
    stop_grace_s: float = 0.0


@dataclass(frozen=True)
class ContainerResult:
    """How the job's container ended."""

    exit_code: int | None
    started_on: datetime
    finished_on: datetime
    timed_out: bool
    oom_killed: bool
    container_id: str


@dataclass(frozen=True)
class ImageInfo:
    """What rexec needs to know of an image: identity, digests, user, and what it would override."""

    id: str  # "sha256:<hex>" of the image config
    repo_digests: tuple[str, ...]
    user: str
    os: str
    architecture: str
    # What the image would do to the command rexec records: an ENTRYPOINT wraps it,
    # a VOLUME gives the job storage outside the outputs. rexec overrides or refuses both.
    entrypoint: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()


LogSink = Callable[[str, bytes], None]  # (stream name "stdout"|"stderr", chunk)


class ContainerRuntime(Protocol):
    """A container engine, as the pipeline sees it; Docker today, fakes in tests."""

    def engine_info(self) -> dict[str, Any]:
        """Facts about the engine for the host capture."""

    def inspect_image(self, ref: str) -> ImageInfo | None:
        """The engine's image for ``ref``, or None."""

    def pull(self, ref: str) -> ImageInfo:
        """Pull ``ref`` and return the pulled image."""

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
        """Build an image from a Dockerfile and return it."""

    def run(self, request: ContainerRequest, sink: LogSink) -> ContainerResult:
        """Run the job's container to its end, streaming its logs to ``sink``."""

    def run_capture(self, image: str, command: Sequence[str], *, user: str) -> str:
        """Run a short hardened helper command and return its stdout."""

    def registry_digest(self, ref: str) -> str:
        """The manifest digest a registry serves for ``ref``."""

    def push(self, image: str, *, repository: str, tag: str) -> str:
        """Push ``image`` as ``repository:tag`` and return the registry's digest."""

    def load(self, archive: Path) -> None:
        """Load an image archive into the engine."""

    def save(self, image_id: str, target: Path) -> None:
        """Write the image as a docker-archive tar (``docker save``) to ``target``."""

    def list_containers(self, label: str) -> list[ContainerInfo]:
        """Every container carrying ``label``, with its labels."""

    def remove_container(self, container_id: str) -> None:
        """Remove a container and its anonymous volumes."""

    def unenforced_limits(self, request: ContainerRequest) -> list[str]:
        """The limits of ``request`` this engine accepts but cannot hold (said and recorded)."""

    def close(self) -> None:
        """Let go of the engine: a service started for this process alone is stopped."""


@dataclass(frozen=True)
class ContainerInfo:
    """A container the engine holds, as ``rexec gc`` judges it."""

    id: str
    labels: Mapping[str, str]
    state: str


def check_repo_digest(ref: str, info: ImageInfo) -> None:
    """The image the engine holds for a pinned ref must carry that exact digest."""
    wanted = ref.rsplit("@", 1)[1]
    if not any(d.endswith("@" + wanted) for d in info.repo_digests):
        raise MismatchError(
            f"image {ref}: the engine's image {info.id} does not carry digest {wanted}",
            details=[f"repo digests present: {', '.join(info.repo_digests) or 'none'}"],
            hint="remove the local image and pull again; the registry may have been tampered with",
        )


@contextlib.contextmanager
def log_files(directory: Path, echo: IO[bytes] | None) -> Iterator[LogSink]:
    """A sink that appends each stream to ``<stream>.log`` and echoes it live."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "stdout.log", "wb") as out, open(directory / "stderr.log", "wb") as err:
        files = {"stdout": out, "stderr": err}

        def sink(name: str, data: bytes) -> None:
            files[name].write(data)
            if echo is not None:
                echo.write(data)
                echo.flush()

        yield sink
