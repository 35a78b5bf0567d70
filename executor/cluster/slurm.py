"""The one module that runs Slurm's commands, and the parsers of what they print.

Slurm's CLI is its stable interface: ``scontrol --json`` does not exist in
22.05 and the JSON schemas are tied to the release, so every query asks for
explicit fields in ``-P``/``-o`` text and parses them here (unit-tested with
captured outputs). Polling is what admins complain about, so one call answers
for every tracked job: one ``squeue`` for those in the queue, one ``sacct``
for those that left it. A cluster without accounting (``sacct`` disabled or
missing) is normal, not an error: :meth:`Slurm.accounting` returns ``None``
and the caller reads the job's own record on shared storage instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from executor.errors import InfrastructureError, InputError

__all__ = [
    "JobState",
    "Slurm",
    "parse_sacct",
    "parse_squeue",
    "parse_submitted",
]

TIMEOUT_S = 60.0
# squeue's fields: job id (array tasks as 123_4), state, reason, node list.
SQUEUE_FORMAT = "%i|%T|%r|%N"
SACCT_FIELDS = "JobID,State,ExitCode,Reason,NodeList"
# What Slurm's clients print when the controller does not answer (not a refused job).
UNREACHABLE = ("unable to contact slurm controller", "socket timed out", "connection refused")


@dataclass(frozen=True)
class JobState:
    """One job (or array task) as Slurm reports it."""

    job_id: str  # "123", or "123_4" for an array task
    state: str  # PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, …
    reason: str = ""
    exit_code: int | None = None  # from sacct's "code:signal"
    signal: int | None = None
    nodes: str = ""


def parse_submitted(text: str) -> str:
    """``sbatch --parsable`` prints ``ID`` or ``ID;CLUSTER``."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    job_id = first.split(";", 1)[0].strip()
    if not job_id.isdigit():
        raise InfrastructureError(f"sbatch printed {text.strip()!r}, not a job id")
    return job_id


def parse_squeue(text: str) -> dict[str, JobState]:
    """``squeue -h -o '%i|%T|%r|%N'``: one line per job or array task.

    Pending array tasks come as one line, ``123_[0-5,7%2]`` (``%2``: a
    throttle); they are expanded to one entry per task.
    """
    found: dict[str, JobState] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 4 or not parts[0]:
            continue
        job_id, state, reason, nodes = parts
        for one in _expand_array(job_id):
            found[one] = JobState(one, state, "" if reason == "None" else reason, nodes=nodes)
    return found


def _expand_array(job_id: str) -> list[str]:
    head, sep, rest = job_id.partition("_[")
    if not sep or not rest.endswith("]"):
        return [job_id]
    ids: list[str] = []
    for part in rest[:-1].split("%", 1)[0].split(","):
        low, _, high = part.partition("-")
        if low.isdigit() and (not high or high.isdigit()):
            ids.extend(f"{head}_{i}" for i in range(int(low), int(high or low) + 1))
    return ids


def parse_sacct(text: str) -> dict[str, JobState]:
    """``sacct -n -P -X -o JobID,State,ExitCode,Reason,NodeList``: allocations only.

    ``State`` may read ``CANCELLED by 0``; ``ExitCode`` is ``code:signal``.
    """
    found: dict[str, JobState] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 5 or not parts[0]:
            continue
        job_id, state, exit_code, reason, nodes = parts
        code: int | None = None
        sig: int | None = None
        if ":" in exit_code:
            left, _, right = exit_code.partition(":")
            if left.isdigit() and right.isdigit():
                code, sig = int(left), int(right)
        for one in _expand_array(job_id):  # an array cancelled while pending: 123_[0-5]
            found[one] = JobState(
                one, state.split(" ", 1)[0], "" if reason == "None" else reason, code, sig, nodes
            )
    return found


class Slurm:
    """Slurm's commands, run with a timeout; a controller that does not answer is exit 6."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = dict(os.environ if env is None else env)
        self.calls: list[str] = []  # the commands run, for the polling benchmark

    def _run(
        self, argv: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        if shutil.which(argv[0], path=self.env.get("PATH")) is None:
            raise InfrastructureError(
                f"{argv[0]}: not found; this host has no Slurm client",
                hint="run on a cluster's login node, or start one here: "
                "`bash scripts/slurm-cluster up DIR` (docs/cluster.md)",
            )
        self.calls.append(argv[0])
        try:
            proc = subprocess.run(
                list(argv),
                input=stdin,
                capture_output=True,
                text=True,
                env=self.env,
                timeout=TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise InfrastructureError(
                f"{argv[0]} did not answer within {TIMEOUT_S:g} s",
                hint="the Slurm controller may be down or overloaded; try again later",
            ) from None
        if check and proc.returncode != 0:
            raise _failure(argv[0], proc.stderr or proc.stdout)
        return proc

    def submit(self, script: str | os.PathLike[str]) -> str:
        """``sbatch --parsable SCRIPT`` (its flags are its ``#SBATCH`` lines); the job id."""
        proc = self._run(["sbatch", "--parsable", os.fspath(script)], check=False)
        if proc.returncode != 0:
            reason = (proc.stderr or proc.stdout).strip()
            if any(words in reason.lower() for words in UNREACHABLE):
                raise _failure("sbatch", reason)  # not the job's fault: exit 6
            raise InputError(
                f"sbatch refused the job: {reason}",
                hint="check the site options (--partition, --account, --qos, --time, "
                "--constraint, --sbatch) against `sinfo`; nothing was queued",
            )
        return parse_submitted(proc.stdout)

    def queue(self, user: str | None = None) -> dict[str, JobState]:
        """Every job of ``user`` (default: this user) still known to the controller."""
        argv = ["squeue", "-h", "-t", "all", "-o", SQUEUE_FORMAT]
        argv += ["-u", user] if user else ["--me"]
        return parse_squeue(self._run(argv).stdout)

    def accounting(self, job_ids: Iterable[str]) -> dict[str, JobState] | None:
        """The finished state of ``job_ids`` from ``sacct``; None where accounting is off."""
        ids = sorted(set(job_ids))
        if not ids:
            return {}
        if shutil.which("sacct", path=self.env.get("PATH")) is None:
            return None
        proc = self._run(
            ["sacct", "-n", "-P", "-X", "-o", SACCT_FIELDS, "-j", ",".join(ids)], check=False
        )
        if proc.returncode != 0:
            text = (proc.stderr or proc.stdout).lower()
            if "accounting storage is disabled" in text or "not enabled" in text:
                return None
            raise _failure("sacct", proc.stderr or proc.stdout)
        return parse_sacct(proc.stdout)

    def cancel(self, job_id: str, *, signal: str | None = None) -> None:
        """``scancel`` a job (or one array task, ``123_4``), or send it a signal."""
        argv = ["scancel", *(["--signal", signal, "--batch"] if signal else []), job_id]
        self._run(argv)

    def preempting(self, job_id: str) -> bool:
        """Whether Slurm has chosen to pre-empt the job (its ``PreemptTime`` is set): the
        SIGTERM it sends then is a pre-emption, not a cancel."""
        out = self._run(["scontrol", "-o", "show", "job", job_id], check=False).stdout
        found = re.search(r"\bPreemptTime=(\S+)", out)
        return found is not None and found.group(1) not in ("None", "Unknown", "")

    def hostnames(self, nodelist: str) -> list[str]:
        """``n[1-2]`` → ``["n1", "n2"]``."""
        out = self._run(["scontrol", "show", "hostnames", nodelist]).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def node_address(self, node: str) -> str:
        """The address other nodes reach ``node`` at (its ``NodeAddr``)."""
        out = self._run(["scontrol", "-o", "show", "node", node]).stdout
        for word in out.split():
            if word.startswith("NodeAddr="):
                return word.removeprefix("NodeAddr=")
        return node

    def requeue(self, job_id: str) -> None:
        """``scontrol requeue``: the job runs again from the top, as a new attempt."""
        self._run(["scontrol", "requeue", job_id])

    def release_now(self, job_id: str) -> None:
        """Let a requeued job start now rather than after Slurm's ~2 minute hold-off."""
        self._run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"])


def _failure(command: str, text: str) -> InfrastructureError:
    reason = text.strip() or "no output"
    return InfrastructureError(
        f"{command} failed: {reason}",
        hint="check that the Slurm controller is up (`scontrol ping`) and SLURM_CONF is right",
    )
