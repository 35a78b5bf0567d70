"""Podman behind the same contract: its Docker-compatible API, spoken by the Docker client.

Why the API and not the ``podman`` CLI: the compatible API takes the very
create request rexec sends Docker (the same hardening, mounts, labels, limits,
attach-before-start, wait, inspect), so one code path runs both engines and a
difference in behaviour is Podman's, visible, not a second implementation's.
What Podman needs besides lives here: where its socket is, starting
``podman system service`` when nothing answers there (daemonless: the service
exits after ``IDLE_S`` without a client), the global flags these hosts need,
lowered ulimits, and the engine facts the record keeps (rootful or rootless,
the user-namespace mapping, which limits it cannot enforce).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket as socketlib
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from executor import safeio
from executor.errors import InfrastructureError
from executor.paths import cache_dir
from executor.runtime.docker import DockerRuntime
from executor.runtime.types import ContainerRequest

__all__ = ["PodmanRuntime", "global_flags", "seccomp_profile"]

IDLE_S = 600  # the service we start exits after this long without a client
START_TIMEOUT_S = 20.0
# Root without CAP_SYS_RESOURCE (these machines) cannot raise RLIMIT_NOFILE/NPROC to
# Podman's defaults; runc then fails "error setting rlimits". 4096 is ample for a job.
ULIMITS = (
    {"name": "nofile", "soft": 4096, "hard": 4096},
    {"name": "nproc", "soft": 4096, "hard": 4096},
)


# The CDI device kind NVIDIA's container toolkit generates; a GPU is `nvidia.com/gpu=<UUID>`.
CDI_KIND = "nvidia.com/gpu"
# Podman's default seccomp profile (containers-common), which rexec's is derived from.
BASE_SECCOMP = Path("/usr/share/containers/seccomp.json")
CLONE_NEWUSER = 0x10000000
EPERM, ENOSYS = 1, 38
NESTED_USERNS = ("clone", "clone3", "unshare")


def seccomp_profile(base: Path = BASE_SECCOMP) -> Path | None:
    """Podman's default seccomp profile, less what lets a job make a user namespace.

    Podman's profile allows ``unshare`` and ``clone`` with ``CLONE_NEWUSER``, and
    in a new user namespace the job holds every capability again (over what that
    namespace owns): Docker's profile refuses that without ``CAP_SYS_ADMIN``, and so
    does this one (``clone3``, whose flags seccomp cannot read, answers ENOSYS, so
    the C library falls back to ``clone``). Written once into the cache, named by
    its sha256; None where the base profile is not installed (the record says so).
    """
    try:
        doc = json.loads(base.read_bytes())
    except (OSError, ValueError):
        return None
    for rule in doc.get("syscalls", []):
        if rule.get("action") == "SCMP_ACT_ALLOW" and not rule.get("args"):
            rule["names"] = [n for n in rule.get("names", []) if n not in NESTED_USERNS]
    newuser = {"index": 0, "value": CLONE_NEWUSER, "op": "SCMP_CMP_MASKED_EQ"}
    doc["syscalls"] = [
        *doc.get("syscalls", []),
        # EPERM, as Docker answers (the profile's default, ENOSYS, reads as "no such
        # call"); this rule must come before the one that allows the other flags
        {
            "names": ["clone", "unshare"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": EPERM,
            "args": [{**newuser, "valueTwo": CLONE_NEWUSER}],
        },
        {
            "names": ["clone", "unshare"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{**newuser, "valueTwo": 0}],
        },
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
    ]
    data = json.dumps(doc, sort_keys=True).encode()
    path = Path(cache_dir()) / f"podman-seccomp-{hashlib.sha256(data).hexdigest()[:16]}.json"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        safeio.write_atomic(path, data, durable=False)
    return path


def _cgroup_v2() -> bool:
    return Path("/sys/fs/cgroup/cgroup.controllers").exists()


def global_flags(*, rootless: bool) -> list[str]:
    """The ``podman`` flags this host needs, decided from what it has.

    Without systemd as init, the cgroup manager must be cgroupfs. crun refuses
    a hybrid (v1) cgroup hierarchy, so there runc is used. Rootless storage is
    the kernel's overlay (twice as fast here as vfs).
    """
    flags: list[str] = []
    if not Path("/run/systemd/system").is_dir():
        flags += ["--cgroup-manager", "cgroupfs"]
    if not _cgroup_v2() and shutil.which("runc"):
        flags += ["--runtime", "runc"]
    if rootless:
        flags += ["--storage-driver", "overlay"]
    return flags


def default_socket(*, rootless: bool, service: str | None = None) -> Path:
    """Where Podman's API socket lives: ``/run/podman`` as root, the runtime dir rootless;
    a ``service`` of this process's own has its own socket there."""
    directory = runtime_dir() / "podman" if rootless else Path("/run/podman")
    return directory / (f"rexec-{service}.sock" if service else "podman.sock")


def runtime_dir() -> Path:
    """Rootless Podman's runtime dir: ``$XDG_RUNTIME_DIR``, else the login session's
    ``/run/user/<uid>``, else (a batch job on a node gives none) a private one in /tmp."""
    given = os.environ.get("XDG_RUNTIME_DIR")
    if given:
        return Path(given)
    uid = os.geteuid()
    session = Path(f"/run/user/{uid}")
    if _private(session, uid):
        return session
    private = Path(tempfile.gettempdir()) / f"rexec-runtime-{uid}"
    with contextlib.suppress(FileExistsError):
        private.mkdir(mode=0o700)
    if not _private(private, uid):
        raise InfrastructureError(
            f"{private}: not a directory of yours that only you can use, for Podman's "
            "runtime files (another user made it?)",
            hint="remove it, or set XDG_RUNTIME_DIR to a directory of yours (mode 0700)",
        )
    return private


def _private(path: Path, uid: int) -> bool:
    """A directory (not a link) that ``uid`` owns and no one else may enter."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid and stat.S_IMODE(st.st_mode) & 0o077 == 0


def _answers(path: Path) -> bool:
    with contextlib.closing(socketlib.socket(socketlib.AF_UNIX)) as s:
        s.settimeout(2.0)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


class PodmanRuntime(DockerRuntime):
    """:class:`ContainerRuntime` over Podman's Docker-compatible API socket."""

    name = "podman"
    title = "Podman"

    def __init__(
        self, socket: str | os.PathLike[str] | None = None, *, service: str | None = None
    ) -> None:
        self.rootless = os.geteuid() != 0
        given = socket or (None if service else os.environ.get("REXEC_PODMAN_SOCKET"))
        self.socket = (
            Path(given) if given else default_socket(rootless=self.rootless, service=service)
        )
        self.flags = global_flags(rootless=self.rootless)
        self.own = service is not None  # close() stops the service this process started
        self.started: subprocess.Popen[bytes] | None = None
        super().__init__(base_url=f"unix://{self.socket}")

    def close(self) -> None:
        """Stop the service started for this process alone (a batch job's ends with the job;
        a shared one serves the next run until it has been idle for ``IDLE_S``)."""
        super().close()
        if self.own and self.started is not None and self.started.poll() is None:
            self.started.terminate()
            try:
                self.started.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.started.kill()
                self.started.wait()
        with contextlib.suppress(OSError):
            if self.own:
                self.socket.unlink()

    @property
    def client(self) -> Any:
        """The client, after making sure a Podman service answers on the socket."""
        if self._client is None:
            self._ensure_service()
        return DockerRuntime.client.fget(self)  # type: ignore[attr-defined]

    def _ensure_service(self) -> None:
        if _answers(self.socket):
            return
        podman = shutil.which("podman")
        if podman is None:
            raise InfrastructureError(
                "the Podman engine is selected but `podman` is not installed",
                hint="install it (`apt-get install podman`), or use --runtime docker",
            )
        try:
            self.socket.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InfrastructureError(
                f"cannot create {self.socket.parent} for Podman's API socket ({exc.strerror})",
                hint="set XDG_RUNTIME_DIR to a directory of yours (a login session sets it), "
                "or REXEC_PODMAN_SOCKET to a running `podman system service` socket",
            ) from exc
        log = Path(cache_dir()) / "podman-service.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        environment = dict(os.environ)
        if self.rootless:  # where its own runtime files go: the one the socket is in
            environment["XDG_RUNTIME_DIR"] = str(runtime_dir())
        with open(log, "ab") as out:
            self.started = subprocess.Popen(
                [
                    podman,
                    *self.flags,
                    "system",
                    "service",
                    f"--time={IDLE_S}",
                    f"unix://{self.socket}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,  # outlives this rexec, as a daemonless service does
                close_fds=True,
                # Not this rexec's directory: it may be deleted while the service lives on,
                # and conmon and runc would then start containers from a vanished cwd.
                cwd="/",
                env=environment,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(self.socket):
            if time.monotonic() > deadline:
                raise InfrastructureError(
                    f"podman system service did not answer on {self.socket} within "
                    f"{START_TIMEOUT_S:g} s",
                    hint=f"see {log}",
                )
            time.sleep(0.05)

    def libpod_info(self) -> dict[str, Any]:
        """Podman's own ``/libpod/info``: rootless or not, id mappings, cgroups, storage."""
        api = self.client.api
        reply = api.get(f"{api.base_url}/v4.0.0/libpod/info", timeout=30)
        reply.raise_for_status()
        info: dict[str, Any] = reply.json()
        return info

    def engine_info(self) -> dict[str, Any]:
        """The engine facts, from one ``/libpod/info`` (Podman's compatible ``/info`` and
        ``/version`` cost 0.2 and 0.3 s each here), kept while the same service runs.

        The facts describe the service process: they change only when it restarts,
        which recreates its socket, so they are cached under the socket's identity.
        """
        self._ensure_service()
        return self.kept_facts(Path(self.socket), self._facts)

    def _facts(self) -> dict[str, Any]:
        info = self.libpod_info()
        host, store, version = info.get("host", {}), info.get("store", {}), info.get("version", {})
        rootless = bool(host.get("security", {}).get("rootless", self.rootless))
        distribution = host.get("distribution") or {}
        return {
            "name": "podman",
            "version": version.get("Version"),
            "api_version": version.get("APIVersion"),
            "os": distribution.get("distribution") or host.get("os"),
            "kernel": host.get("kernel"),
            "default_runtime": (host.get("ociRuntime") or {}).get("name"),
            "oci_runtime": (host.get("ociRuntime") or {}).get("name"),
            "storage_driver": store.get("graphDriverName"),
            "cgroup_driver": host.get("cgroupManager"),
            "cgroup_version": host.get("cgroupVersion"),
            "mode": "rootless" if rootless else "rootful",
            "id_mappings": host.get("idMappings"),
            "service_flags": list(self.flags),
            "socket": str(self.socket),
            "ulimits": [dict(u) for u in ULIMITS],
            "limits_enforced": not (rootless and host.get("cgroupVersion") == "v1"),
            "nested_user_namespaces": (
                f"refused (seccomp profile {profile.name})"
                if (profile := seccomp_profile()) is not None
                else f"allowed: {BASE_SECCOMP} is missing, so Podman's built-in profile applies"
            ),
        }

    def host_config_extra(self, request: ContainerRequest) -> dict[str, Any]:
        """Lowered ulimits (see ``ULIMITS``), rexec's seccomp profile (no nested user
        namespace, see :func:`seccomp_profile`), and rootless ``UsernsMode: keep-id``.

        Rootless, container uid 0 is the invoking user and every other uid a
        subordinate one, so the job's uid (the invoker's, see
        :func:`executor.runner.container.container_user`) would not own the
        outputs it must write; keep-id maps the invoker to itself. The Docker
        client validates ``userns_mode`` and knows only ``host``, hence raw fields.
        """
        extra: dict[str, Any] = {
            "Ulimits": [{"Name": u["name"], "Soft": u["soft"], "Hard": u["hard"]} for u in ULIMITS]
        }
        profile = seccomp_profile()
        if profile is not None:  # the service is local: it reads the profile from the path
            nnp = ["no-new-privileges:true"] if request.hardening.no_new_privileges else []
            extra["SecurityOpt"] = [*nnp, f"seccomp={profile}"]
        if self.rootless:
            extra["UsernsMode"] = "keep-id"
        if request.gpu_uuids:
            # GPUs by CDI name (nvidia-ctk cdi generate), not Docker's NVIDIA device request.
            extra["DeviceRequests"] = None
            extra["Devices"] = [
                {"PathOnHost": f"{CDI_KIND}={uuid}", "PathInContainer": "", "CgroupPermissions": ""}
                for uuid in request.gpu_uuids
            ]
        return extra

    def registry_digest(self, ref: str) -> str:
        """The digest the registry serves for ``ref``: Podman's compatible API has no
        distribution endpoint, so the tag is pulled and the engine's record of the
        manifest it fetched (its repository digest) is read. Slower than Docker's, once."""
        info = self.pull(ref)
        repository = ref.rsplit("@", 1)[0]
        last = repository.rsplit("/", 1)[-1]
        repository = repository[: len(repository) - len(last)] + last.split(":", 1)[0]
        for entry in info.repo_digests:
            name, _, digest = entry.partition("@")
            if name.removeprefix("docker.io/") == repository.removeprefix("docker.io/"):
                return digest
        raise InfrastructureError(
            f"pulled {ref} but Podman records no digest for {repository} "
            f"(repository digests: {', '.join(info.repo_digests) or 'none'})"
        )

    def unenforced_limits(self, request: ContainerRequest) -> list[str]:
        """Limits in ``request`` this engine cannot hold (rootless on cgroup v1: none)."""
        if not self.rootless or _cgroup_v2():
            return []
        asked = {
            "memory": request.memory_bytes is not None,
            "cpus": request.cpus is not None,
            "pids": bool(request.pids_limit),
        }
        return [name for name, set_ in asked.items() if set_]
