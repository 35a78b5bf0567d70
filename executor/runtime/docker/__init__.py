"""The Docker implementation of the container runtime seam: the only module that imports
``docker`` (and ``requests``, its transport). Connecting is lazy: nothing touches the
Docker socket until a method needs it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from executor.errors import EngineLost, InfrastructureError, InputError
from executor.runtime.docker.facts import kept
from executor.runtime.docker.lifecycle import (
    engine_lost,
    is_connection_trouble,
    let_it_stop,
    pump_logs,
    start,
)
from executor.runtime.types import (
    ContainerInfo,
    ContainerRequest,
    ContainerResult,
    ImageInfo,
    LogSink,
)

__all__ = ["DockerRuntime"]


def _now() -> datetime:
    return datetime.now(UTC)


# The Engine API version rexec speaks: Docker 20.10's, which every later Docker
# and Podman's compatible API (4.x) still serve. Naming it saves the client's
# version negotiation, a round trip on every command that talks to the engine.
API_VERSION = "1.41"


class DockerRuntime:
    """:class:`ContainerRuntime` over the Docker Engine API (docker-py).

    Also the transport of :class:`executor.runtime.podman.PodmanRuntime`, which
    speaks to Podman's Docker-compatible API: the subclass only says where the
    socket is, what the engine is, and what Podman needs besides (ulimits).
    """

    name = "docker"
    title = "Docker"

    def __init__(self, base_url: str | None = None) -> None:
        self._base_url = base_url
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The Docker client, connected on first use and pinged, or a clear error."""
        if self._client is None:
            import docker
            import docker.errors

            try:
                client = (
                    docker.DockerClient(base_url=self._base_url, version=API_VERSION)
                    if self._base_url
                    else docker.from_env(version=API_VERSION)
                )
                client.ping()
            # With the API version named, the ping is the first request: a missing
            # socket is requests' ConnectionError (an OSError), not a DockerException.
            except (docker.errors.DockerException, OSError) as exc:
                raise InfrastructureError(
                    f"cannot reach the {self.title} engine: {exc}",
                    hint="start it (`bash scripts/setup` starts Docker) or set DOCKER_HOST"
                    if self.name == "docker"
                    else f"check its socket ({self._base_url}) and `podman info`",
                ) from exc
            self._client = client  # kept only once it answered
        return self._client

    def engine_info(self) -> dict[str, Any]:
        """Engine facts for the record (version, API, storage and cgroup drivers), kept
        while the same daemon runs (:meth:`kept_facts`): two round trips fewer a run."""
        return self.kept_facts(self.socket_path(), self._facts)

    def socket_path(self) -> Path | None:
        """The engine's local socket (``DOCKER_HOST`` or the default), None over TCP/SSH."""
        url = self._base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        return Path(url.removeprefix("unix://")) if url.startswith("unix://") else None

    def kept_facts(
        self, socket: Path | None, compute: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """The engine's facts, computed once per daemon (:func:`.facts.kept`)."""
        return kept(self.name, socket, compute)

    def _facts(self) -> dict[str, Any]:
        info = self.client.info()
        version = self.client.version()
        return {
            "name": self.name,
            "version": version.get("Version"),
            "api_version": version.get("ApiVersion"),
            "os": info.get("OperatingSystem"),
            "kernel": info.get("KernelVersion"),
            "runtimes": sorted(info.get("Runtimes", {})),
            "default_runtime": info.get("DefaultRuntime"),
            "storage_driver": info.get("Driver"),
            "cgroup_driver": info.get("CgroupDriver"),
            "cgroup_version": info.get("CgroupVersion"),
        }

    def inspect_image(self, ref: str) -> ImageInfo | None:
        """The engine's image for ``ref``, or None when it does not hold one."""
        import docker.errors

        try:
            image = self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            raise InfrastructureError(f"cannot inspect image {ref}: {exc}") from exc
        return _image_info(image.attrs)

    def pull(self, ref: str) -> ImageInfo:
        """Pull ``ref`` (by digest) and return what the engine now holds."""
        import docker.errors

        try:
            self.client.api.pull(ref)
        except docker.errors.APIError as exc:
            raise InfrastructureError(
                f"cannot pull {ref}: {exc.explanation or exc}",
                hint="check the registry is reachable and you are logged in (docker login)",
            ) from exc
        info = self.inspect_image(ref)
        if info is None:
            raise InfrastructureError(f"pulled {ref} but the engine does not list it")
        return info

    def registry_digest(self, ref: str) -> str:
        """The manifest digest a registry serves for ``ref``, without pulling layers.

        Uses the Engine's distribution endpoint, so credentials come from the
        user's Docker config exactly as for a pull."""
        import docker.errors

        try:
            data = self.client.images.get_registry_data(ref)
        except docker.errors.APIError as exc:
            raise InfrastructureError(
                f"cannot resolve {ref} in its registry: {exc.explanation or exc}",
                hint="check the tag exists (docker push it first) and the registry is reachable; "
                "credentials are read from ~/.docker/config.json (docker login)",
            ) from exc
        digest = str(data.id)
        if not digest.startswith("sha256:"):
            raise InfrastructureError(f"the registry answered {ref} with digest {digest!r}")
        return digest

    def push(self, image: str, *, repository: str, tag: str) -> str:
        """Tag ``image`` as ``repository:tag``, push it, return the registry's digest."""
        import docker.errors

        try:
            self.client.api.tag(image, repository, tag)
            digest = None
            for chunk in self.client.api.push(repository, tag=tag, stream=True, decode=True):
                if "error" in chunk:
                    raise InfrastructureError(
                        f"cannot push {repository}:{tag}: {chunk['error'].strip()}",
                        hint="check the registry is reachable and you are logged in (docker login)",
                    )
                aux = chunk.get("aux") or {}
                if aux.get("Digest"):
                    digest = str(aux["Digest"])
        except docker.errors.APIError as exc:
            raise InfrastructureError(
                f"cannot push {repository}:{tag}: {exc.explanation or exc}",
                hint="check the registry is reachable and you are logged in (docker login)",
            ) from exc
        if digest is None:
            raise InfrastructureError(f"pushed {repository}:{tag} but the registry sent no digest")
        return digest

    def load(self, archive: Path) -> None:
        """``docker load`` a tar archive (docker-archive or OCI layout)."""
        from executor.runtime.docker import archives

        archives.load(self.client, archive)

    def save(self, image_id: str, target: Path) -> None:
        """``docker save`` the image (by id) into ``target``, streamed."""
        from executor.runtime.docker import archives

        archives.save(self.client, image_id, target)

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
        """Build a Dockerfile, streaming the log, and return the built image."""
        import docker.errors

        try:
            rel = dockerfile.relative_to(context)
        except ValueError:
            raise InputError(
                f"image.build.dockerfile {dockerfile} is outside the build context {context}",
                hint="put the Dockerfile inside the context directory",
            ) from None
        try:
            stream = self.client.api.build(
                path=str(context),
                dockerfile=str(rel),
                tag=tag,
                buildargs=dict(args),
                target=target,
                rm=True,
                forcerm=True,
                decode=True,
                pull=False,
            )
            image_id = None
            for chunk in stream:
                if "stream" in chunk:
                    log(chunk["stream"])
                if "error" in chunk:
                    raise InputError(
                        f"building {dockerfile} failed: {chunk['error'].strip()}",
                        hint="the build log above shows the failing step",
                    )
                if "aux" in chunk and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
        except docker.errors.APIError as exc:
            raise InfrastructureError(f"cannot build {dockerfile}: {exc}") from exc
        info = self.inspect_image(image_id or tag)
        if info is None:
            raise InfrastructureError(f"built {tag} but the engine does not list it")
        return info

    def run(self, request: ContainerRequest, sink: LogSink) -> ContainerResult:
        """Run the job's container to its end (or its timeout), streaming its logs."""
        import docker.errors

        container = self._create(request)
        # Attach before start, as `docker run` does: a job that exits at once
        # would otherwise be gone before a late attach, and its output lost.
        stream = container.attach(stdout=True, stderr=True, stream=True, logs=True, demux=True)
        reader = threading.Thread(target=pump_logs, args=(stream, sink), daemon=True)
        timed_out = False
        started = _now()
        try:
            start(container, request)
            started = _now()
            reader.start()
            try:
                status = container.wait(timeout=request.timeout_s)
                exit_code: int | None = int(status.get("StatusCode", -1))
            except KeyboardInterrupt as stop:
                let_it_stop(container, request.stop_grace_s, stop)
                raise
            except Exception as exc:  # requests' ReadTimeout: the job ran past its timeout
                if not is_connection_trouble(exc):
                    raise
                if (_now() - started).total_seconds() < request.timeout_s * 0.99:
                    # The wait broke off early: the engine went away, not the clock.
                    raise engine_lost(exc, self.title) from exc
                timed_out = True
                exit_code = None
                with contextlib.suppress(docker.errors.APIError):
                    container.kill()
                container.wait(timeout=60)
            finished = _now()
            reader.join(timeout=30)
            container.reload()
            oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
            return ContainerResult(
                exit_code=exit_code,
                started_on=started,
                finished_on=finished,
                timed_out=timed_out,
                oom_killed=oom,
                container_id=container.id,
            )
        except docker.errors.APIError as exc:
            raise InfrastructureError(f"the engine failed running the job: {exc}") from exc
        except EngineLost:
            raise
        except Exception as exc:
            if not is_connection_trouble(exc):
                raise
            # The engine went away at another step than the wait (its answer to
            # start, the reload after the job): the same failure, recorded as such.
            raise engine_lost(exc, self.title) from exc
        finally:
            # Best effort: with the engine gone this fails too, and `rexec gc` finds the
            # container by its labels later.
            with contextlib.suppress(Exception):
                container.remove(force=True, v=True)  # and any anonymous volume with it

    def _create(self, request: ContainerRequest) -> Any:
        """Create the job's container from the low-level API, so an engine may add host
        settings the client does not know (Podman's ``keep-id`` user namespace)."""
        import docker.errors
        from docker.types import DeviceRequest
        from docker.types import Mount as DockerMount

        h = request.hardening
        host: dict[str, Any] = {
            "mounts": [
                DockerMount(m.target, str(m.source), type="bind", read_only=m.read_only)
                for m in request.mounts
            ],
            "network_mode": h.network,
            "read_only": h.read_only_root,
            "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={h.tmpfs_size}"},
            "cap_drop": ["ALL"] if h.cap_drop_all else None,
            "security_opt": ["no-new-privileges:true"] if h.no_new_privileges else None,
            "pids_limit": request.pids_limit,
        }
        if h.devices:
            host["devices"] = [f"{d}:{d}:rwm" for d in h.devices]
        if request.cpus:
            host["nano_cpus"] = int(request.cpus * 1e9)
        if request.memory_bytes:
            host["mem_limit"] = request.memory_bytes
            host["memswap_limit"] = request.memory_bytes  # no swap: OOM is visible, not slow
        if request.gpu_uuids:
            host["device_requests"] = [
                DeviceRequest(
                    driver="nvidia",
                    device_ids=list(request.gpu_uuids),
                    capabilities=[["gpu"]],
                )
            ]
        api = self.client.api
        try:
            host_config = api.create_host_config(**host)
            host_config.update(self.host_config_extra(request))
            created = api.create_container(
                image=request.image,
                # Exactly the recorded argv: the image's ENTRYPOINT must not wrap it.
                entrypoint=list(request.command[:1]),
                command=list(request.command[1:]),
                working_dir=request.workdir,
                environment=dict(request.env),
                user=request.user,
                labels=dict(request.labels),
                detach=True,
                stdin_open=False,
                tty=False,
                host_config=host_config,
            )
            return self.client.containers.prepare_model({"Id": created["Id"]})
        except docker.errors.ImageNotFound as exc:
            raise InputError(f"image {request.image} is not present in the engine") from exc
        except docker.errors.APIError as exc:
            raise InfrastructureError(f"cannot create the job container: {exc}") from exc

    def host_config_extra(self, request: ContainerRequest) -> dict[str, Any]:
        """What this engine needs in HostConfig besides the hardening, as its API spells
        it (Docker: nothing; Podman: ulimits, and keep-id rootless)."""
        return {}

    def unenforced_limits(self, request: ContainerRequest) -> list[str]:
        """Docker enforces every limit it accepts."""
        return []

    def run_capture(self, image: str, command: Sequence[str], *, user: str) -> str:
        """Run a short hardened helper command in ``image`` and return its stdout."""
        chunks: list[bytes] = []
        request = ContainerRequest(
            image=image,
            command=command,
            workdir="/",
            env={},
            mounts=(),
            user=user,
            labels={"dev.rexec.helper": "1"},
            timeout_s=120,
        )
        result = self.run(
            request, lambda name, data: chunks.append(data) if name == "stdout" else None
        )
        if result.exit_code != 0:
            raise InfrastructureError(f"helper command in {image} exited {result.exit_code}")
        return b"".join(chunks).decode("utf-8", "replace")

    def list_containers(self, label: str) -> list[ContainerInfo]:
        """Every container (any state) carrying ``label``, with its labels."""
        import docker.errors

        try:
            found = self.client.containers.list(all=True, filters={"label": label})
        except docker.errors.APIError as exc:
            raise InfrastructureError(f"cannot list containers: {exc}") from exc
        return [ContainerInfo(c.id, dict(c.labels or {}), str(c.status)) for c in found]

    def close(self) -> None:
        """Close the client's connections (dockerd is the host's, never stopped)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def remove_container(self, container_id: str) -> None:
        """Remove a container and its anonymous volumes; one already gone is fine."""
        import docker.errors

        try:
            self.client.api.remove_container(container_id, force=True, v=True)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            raise InfrastructureError(f"cannot remove container {container_id}: {exc}") from exc


def _image_info(attrs: Mapping[str, Any]) -> ImageInfo:
    config = attrs.get("Config") or {}
    return ImageInfo(
        id=attrs["Id"],
        repo_digests=tuple(attrs.get("RepoDigests") or ()),
        user=config.get("User") or "",
        os=attrs.get("Os", ""),
        architecture=attrs.get("Architecture", ""),
        entrypoint=tuple(config.get("Entrypoint") or ()),
        volumes=tuple(sorted(config.get("Volumes") or {})),
    )
