"""One job container's life on a Docker-API engine, apart from the engine's face: started
(a missing program named as the spec's error), its logs pumped, let stop with a grace when
rexec is asked to stop, and an engine that went away told apart from the job's timeout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from executor.errors import EngineLost, InputError
from executor.runtime.types import ContainerRequest, LogSink

__all__ = ["engine_lost", "is_connection_trouble", "let_it_stop", "pump_logs", "start"]


def engine_lost(exc: BaseException, title: str) -> EngineLost:
    """The engine went away while the job ran: an infrastructure failure, recorded as one."""
    return EngineLost(
        f"the {title} engine stopped answering while the job ran ({exc})",
        hint="the run is recorded as infrastructure-failed; restart the engine "
        "and run `rexec gc` to remove what it left",
    )


def start(container: Any, request: ContainerRequest) -> None:
    """Start the job; a command the image does not have is the spec's error, not the engine's."""
    import docker.errors

    try:
        container.start()
    except docker.errors.APIError as exc:
        text = str(exc.explanation or exc)
        if "executable file not found" in text or "no such file or directory" in text:
            raise InputError(
                f"run.command[0]: {request.command[0]!r} is not an executable in the image "
                f"(the engine said: {text.strip()})",
                hint="name a program the image has (an absolute path, or one on its PATH), "
                "or a script inside a mounted input or the code mount",
            ) from exc
        raise


def let_it_stop(container: Any, grace_s: float, stop: KeyboardInterrupt) -> None:
    """Pass the signal rexec received (a scheduler's pre-emption warning, SIGTERM, Ctrl-C) on
    to the job and give it ``grace_s`` to end by itself, writing its checkpoint; a second
    signal meanwhile ends the wait. With no grace the container is removed at once."""
    if grace_s <= 0:
        return
    name = getattr(stop, "signal_name", "SIGINT")
    # Best effort: a job that outlives its grace, has already ended, or an engine that does
    # not answer: the container is removed after this either way (a second signal is raised).
    with contextlib.suppress(Exception):
        container.kill(signal=name)
        container.wait(timeout=grace_s)


def pump_logs(stream: Iterator[tuple[bytes | None, bytes | None]], sink: LogSink) -> None:
    """The job's two streams, as the engine sends them, into rexec's log files."""
    for out, err in stream:
        if out:
            sink("stdout", out)
        if err:
            sink("stderr", err)


def is_connection_trouble(exc: BaseException) -> bool:
    """A wait that ended without an answer: the timeout (docker-py reports a read timeout
    on its socket as a ConnectionError), or an engine that went away mid-answer."""
    import requests.exceptions

    return isinstance(exc, requests.exceptions.RequestException)
