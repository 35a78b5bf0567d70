"""Whether the submitting user can use the job's engine on the nodes, checked on the
submit host before anything is queued (the nodes share its users and groups)."""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

from executor.errors import InputError
from executor.progress import Say

__all__ = ["engine_check"]


def engine_check(
    engine: str, *, say: Say, etc: Path = Path("/etc"), uid: int | None = None
) -> None:
    """Whether the submitting user can use ``engine`` on the nodes, as far as the submit
    host can tell (the same users and groups): Docker needs root or the docker group,
    rootless Podman subordinate ids. What cannot be told is said, not refused."""
    uid = os.geteuid() if uid is None else uid
    if uid == 0:
        return
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        say(f"uid {uid} has no name here: the engine on the nodes is not checked")
        return
    if engine == "docker":
        _check_docker(user, uid, say)
    else:
        _check_subordinate_ids(user, uid, etc)


def _check_docker(user: str, uid: int, say: Say) -> None:
    if os.environ.get("DOCKER_HOST"):  # a rootless or remote dockerd: its socket decides
        say("DOCKER_HOST is set: whether its engine answers on the nodes is not checked")
        return
    try:
        group = grp.getgrnam("docker")
    except KeyError:
        say("no docker group here: whether you may use Docker on the nodes is not checked")
        return
    if user in group.gr_mem or group.gr_gid in os.getgrouplist(user, pwd.getpwuid(uid).pw_gid):
        return
    raise InputError(
        f"the job would run under Docker on the nodes, which {user} may not use (neither root "
        "nor in the docker group)",
        hint="submit with --runtime podman (rootless; your subordinate ids in /etc/subuid), or "
        "ask an admin for the docker group (root-equivalent on the nodes); nothing was queued",
    )


def _check_subordinate_ids(user: str, uid: int, etc: Path) -> None:
    for table in ("subuid", "subgid"):
        try:
            lines = (etc / table).read_text().splitlines()
        except OSError:
            lines = []
        if not any(line.split(":", 1)[0] in (user, str(uid)) for line in lines):
            raise InputError(
                f"rootless Podman on the nodes needs subordinate ids for {user}: "
                f"{etc / table} has none",
                hint=f"ask an admin to add `{user}:100000:65536` to /etc/subuid and /etc/subgid "
                "on the nodes (`usermod --add-subuids`); nothing was queued",
            )
