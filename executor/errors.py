"""One error hierarchy for rexec.

Every failure a user can cause or meet is a :class:`RexecError`. Each subclass
fixes the process exit code, so a pipeline can tell "your input is wrong" from
"the signature does not hold" from "the job failed" without parsing text. The
CLI catches exactly ``RexecError`` in one place and prints ``message``, the
``details`` (one line each) and the ``hint``; anything else is a bug and gets
a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; documented in ``rexec --help`` and the README."""

    OK = 0
    INTERNAL = 1  # a bug in rexec: please report it
    BAD_INPUT = 2  # spec, arguments, files the user named
    SIGNATURE = 3  # signature or trust policy does not hold
    MISMATCH = 4  # content differs from its pin (snapshot, image, artifact)
    JOB_FAILED = 5  # the job ran and failed (non-zero exit, timeout, OOM)
    INFRASTRUCTURE = 6  # engine, registry, cluster or signing service unreachable
    NOT_REPRODUCED = 7  # replay ran, outputs differ


class RexecError(Exception):
    """Base of every error rexec reports to a user."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        details: Iterable[str] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = tuple(details)

    def render(self) -> str:
        """The full text the CLI prints: message, details, then the hint."""
        lines = [f"error: {self.message}"]
        lines += [f"  {d}" for d in self.details]
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


class InputError(RexecError):
    """Something the user gave us is malformed or inconsistent."""

    exit_code = ExitCode.BAD_INPUT


class SpecError(InputError):
    """The run spec is invalid; the message names the file and key path."""


class VerificationError(RexecError):
    """A signature, certificate or trust policy check failed."""

    exit_code = ExitCode.SIGNATURE


class MismatchError(RexecError):
    """Content does not match the digest it was pinned to or signed as."""

    exit_code = ExitCode.MISMATCH


class SnapshotError(InputError):
    """A snapshot cannot be hashed (unreadable file, special file, bad link)."""


class JobFailed(RexecError):
    """The job ran in its container and did not succeed."""

    exit_code = ExitCode.JOB_FAILED


class InfrastructureError(RexecError):
    """A system rexec depends on is unreachable or misbehaving."""

    exit_code = ExitCode.INFRASTRUCTURE


class EngineLost(InfrastructureError):
    """The container engine went away while the job ran (not a timeout, not the job)."""


class Interrupted(KeyboardInterrupt):
    """rexec was asked to stop (SIGINT, SIGTERM, SIGHUP): the job is stopped and recorded.
    ``preempted_by``: the scheduler said it is pre-empting the job (its SIGTERM)."""

    def __init__(self, signal_name: str = "SIGINT", *, preempted_by: str | None = None) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.preempted_by = preempted_by


class NotReproduced(RexecError):
    """A replay finished and its outputs differ from the original run."""

    exit_code = ExitCode.NOT_REPRODUCED
