"""Running specs on a Slurm cluster: submit, the node's part, status (the face of ``cluster/``).

``submission`` is what ``rexec submit`` decides and keeps on shared storage;
``submit`` checks, renders and queues it; ``node`` is what the batch script
runs; ``status`` reads Slurm and the records; ``identity`` reads the job from
Slurm's variables; ``rerun`` makes a regeneration step a job; ``slurm`` is the only
module that runs Slurm's commands.
docs/cluster.md is the user's guide.
"""

from __future__ import annotations

from executor.cluster.node import run_on_node
from executor.cluster.rerun import Change, submit_rerun
from executor.cluster.slurm import JobState, Slurm
from executor.cluster.status import TaskStatus, find_submission, poll, tracked, wait
from executor.cluster.submission import (
    FromLinks,
    SiteOptions,
    Submission,
    SweepTask,
    load_submission,
    site_defaults,
    sweep_tasks,
)
from executor.cluster.submit import node_signing, render_script, submit

__all__ = [
    "Change",
    "FromLinks",
    "JobState",
    "SiteOptions",
    "Slurm",
    "Submission",
    "SweepTask",
    "TaskStatus",
    "find_submission",
    "load_submission",
    "node_signing",
    "poll",
    "render_script",
    "run_on_node",
    "site_defaults",
    "submit",
    "submit_rerun",
    "sweep_tasks",
    "tracked",
    "wait",
]
