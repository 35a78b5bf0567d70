"""`rexec submit` against real Slurm clusters and a real Docker engine.

scripts/test starts two throwaway clusters (scripts/slurm-cluster): one with
accounting (MariaDB + slurmdbd, so sacct answers) and one without, and names
their configs in REXEC_TEST_SLURM_CONF and REXEC_TEST_SLURM_CONF_NOACCT.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from executor import owner
from executor.errors import ExitCode
from tests.e2e.conftest import (
    BASE_IMAGE,
    NO_FRAMEWORKS,
    REPO,
    Project,
    Rexec,
    build_definition,
    exit_status,
    gen,
    spec,
)

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]


def _conf(name: str) -> str:
    conf = os.environ.get(name)
    if conf and Path(conf).is_file():
        return conf
    problem = f"{name} names no Slurm config: scripts/test starts the test clusters"
    if os.environ.get("CI") == "true":
        pytest.fail(problem)
    pytest.skip(problem)


@pytest.fixture
def slurm(rexec: Rexec) -> Rexec:
    """rexec talking to the cluster with accounting."""
    rexec.env["SLURM_CONF"] = _conf("REXEC_TEST_SLURM_CONF")
    return rexec


def sh(env: dict[str, str], *argv: str) -> str:
    return subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout


def submit(
    rexec: Rexec, spec: Path, key: Path, runs: Path, *more: str, check: int | None = 0
) -> dict[str, Any]:
    out = rexec(
        "submit", spec, "--signing-key", key, "--runs-dir", runs, "--json", *more, check=check
    )
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def status(rexec: Rexec, ref: str, runs: Path, *more: str, check: int | None = 0) -> dict[str, Any]:
    out = rexec("status", ref, "--runs-dir", runs, "--json", *more, check=check)
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def job_state(slurm: Rexec, job_id: str) -> str:
    shown = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id],
        env=slurm.env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    found = re.search(r"JobState=(\S+)", shown.stdout)
    return found.group(1) if found else "UNKNOWN"


def release_requeued(slurm: Rexec, job_id: str) -> None:
    """Slurm holds a requeued job back ~2 minutes (BeginTime): once it is back in the
    queue, let it go in a few seconds. Not at once: a launch in the same second as the last
    attempt's end finds its job credential revoked, and Slurm ends the job FAILED ("Killing
    non-startable batch job"), which the hold exists to prevent."""
    until("the job back in the queue", lambda: job_state(slurm, job_id) == "PENDING")
    sh(slurm.env, "scontrol", "update", f"JobId={job_id}", "StartTime=now+3")


def until(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def log_of(runs: Path, sub: dict[str, Any]) -> Path:
    return runs / ".rexec-jobs" / sub["run_id"] / f"slurm-{sub['job_id']}.out"


def started(runs: Path, sub: dict[str, Any]) -> Callable[[], bool]:
    return lambda: log_of(runs, sub).is_file() and "started" in log_of(runs, sub).read_text()


# The ranks of a multi-node job reach each other on the host's network (a recorded opt-in).
HOST_NETWORK = {"allow_host_network": True}
SLEEPER = ["sh", "-c", "echo started; sleep 8; echo done > $REXEC_OUTPUTS/done.txt"]


def test_submit_and_wait_signs_the_job_identity(
    slurm: Rexec, project: Project, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    spec = project.spec(["python3", "-c", "open('/outputs/x.txt','w').write('hi')"])
    sub = submit(slurm, spec, keys[0], runs, "--wait")
    doc = status(slurm, sub["run_id"], runs)
    (task,) = doc["tasks"]
    assert (task["state"], task["recordStatus"]) == ("COMPLETED", "succeeded")
    record = Path(task["record"])
    assert record.name == sub["run_id"]
    ident = build_definition(record)["internalParameters"]["scheduler"]
    assert ident["kind"] == "slurm" and ident["cluster"] == "rexec"
    assert ident["jobId"] == sub["job_id"] and ident["partition"] == "debug"
    assert ident["nodes"] == [ident["node"]] and ident["restartCount"] == 0
    assert ident["account"] and ident["qos"]  # with accounting
    assert (record / "outputs" / "x.txt").read_text() == "hi"
    slurm("verify", record, "--key", keys[1])
    script = (runs / ".rexec-jobs" / sub["run_id"] / "job.sbatch").read_text()
    assert "#SBATCH --export=NONE," in script  # only named variables travel
    logs = slurm("logs", sub["job_id"], "--runs-dir", runs).stdout
    assert "signing the statement" in logs
    assert status(slurm, sub["job_id"], runs)["runId"] == sub["run_id"]  # by job id too


def test_a_failing_job_is_state_failed_and_exit_5(
    slurm: Rexec, project: Project, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    spec = project.spec(["sh", "-c", "echo going down >&2; exit 3"])
    sub = submit(slurm, spec, keys[0], runs)
    followed = slurm("logs", sub["run_id"], "--runs-dir", runs, "--follow").stdout  # to the end
    assert "going down" in followed and "signing the statement" in followed
    out = slurm("status", sub["run_id"], "--runs-dir", runs, "--wait", check=ExitCode.JOB_FAILED)
    assert "FAILED" in out.stdout and "record: failed  exit 3" in out.stdout
    assert "last error: going down" in out.stdout  # the job's own last line of stderr
    doc = status(slurm, sub["run_id"], runs, check=ExitCode.JOB_FAILED)
    (task,) = doc["tasks"]
    assert (task["state"], task["exitCode"], task["lastError"]) == ("FAILED", 3, "going down")
    assert "going down" in log_of(runs, sub).read_text()


def test_status_without_a_run_waits_for_every_tracked_run(
    slurm: Rexec, project: Project, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    codes = {0: 0, 1: 4, 2: 0}
    subs = [
        submit(slurm, project.spec(["sh", "-c", f"sleep {n}; exit {code}"]), keys[0], runs)
        for n, code in codes.items()
    ]
    out = slurm("status", "--runs-dir", runs, "--wait", "--json", check=ExitCode.JOB_FAILED)
    doc = json.loads(out.stdout)
    assert doc["schema"] == "rexec.status-list/v1" and doc["controller"] is None
    found = {run["runId"]: run["tasks"][0] for run in doc["runs"]}
    assert sorted(found) == sorted(s["run_id"] for s in subs)
    for n, sub in enumerate(subs):
        task = found[sub["run_id"]]
        assert task["finished"] and task["exitCode"] == codes[n]
        assert task["recordStatus"] == ("succeeded" if codes[n] == 0 else "failed")


def test_nodes_check_inputs_by_lstat_and_hash_only_what_changed(
    slurm: Rexec, project: Project, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    spec = project.spec(["true"])

    def checks(sub: dict[str, Any], check: int = 0) -> dict[str, str]:
        slurm("status", sub["run_id"], "--runs-dir", runs, "--wait", check=check)
        found: dict[str, str] = build_definition(runs / sub["run_id"])["internalParameters"][
            "inputChecks"
        ]
        return found

    assert checks(submit(slurm, spec, keys[0], runs, "--rehash-inputs")) == {"data": "hash"}
    held = [submit(slurm, spec, keys[0], runs, "--sbatch=--hold") for _ in range(2)]
    os.utime(project.data / "numbers.txt")  # touched, not changed: hashed again, and it holds
    sh(slurm.env, "scontrol", "release", held[0]["job_id"])
    assert checks(held[0]) == {"data": "hash"}
    (project.data / "numbers.txt").write_text("changed after submitting\n")
    sh(slurm.env, "scontrol", "release", held[1]["job_id"])
    slurm("status", held[1]["run_id"], "--runs-dir", runs, "--wait", check=ExitCode.JOB_FAILED)
    assert "numbers.txt" in log_of(runs, held[1]).read_text()  # named, and nothing ran


def test_cancel_stops_the_container_and_signs_interrupted(
    slurm: Rexec, project: Project, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    spec = project.spec(SLEEPER, extra='[run.env]\nPLAIN = "1"\n')
    env = slurm.env | {"SECRET_TOKEN": "do-not-copy-me"}
    sub = json.loads(
        subprocess.run(
            [*slurm.argv("submit", spec, "--signing-key", keys[0], "--runs-dir", runs, "--json")],
            env=env, cwd=slurm.cwd, check=True, capture_output=True, text=True,
        ).stdout
    )  # fmt: skip
    until("the job to start", started(runs, sub))
    # The batch step's own environment: the submit shell's secret was not copied into it.
    pids = sh(slurm.env, "pgrep", "-f", f"slurm-node {runs}/.rexec-jobs/{sub['run_id']}").split()
    environ = Path(f"/proc/{pids[0]}/environ").read_bytes()
    assert b"SECRET_TOKEN" not in environ and b"SLURM_JOB_ID=" + sub["job_id"].encode() in environ
    label = f"label=dev.rexec.slurm-job={sub['job_id']}"
    assert sh(slurm.env, "docker", "ps", "-q", "--filter", label).strip()
    slurm("cancel", sub["run_id"], "--runs-dir", runs)
    doc = status(slurm, sub["run_id"], runs, "--wait", check=ExitCode.JOB_FAILED)
    assert doc["tasks"][0]["state"] == "CANCELLED"
    assert doc["tasks"][0]["recordStatus"] == "interrupted"
    assert sh(slurm.env, "docker", "ps", "-aq", "--filter", label).strip() == ""


def test_the_preemption_signal_signs_preempted(
    slurm: Rexec, project: Project, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    sub = submit(slurm, project.spec(SLEEPER), keys[0], runs, "--signal", "USR2@60")
    script = (runs / ".rexec-jobs" / sub["run_id"] / "job.sbatch").read_text()
    assert "#SBATCH --signal=B:USR2@60" in script
    until("the job to start", started(runs, sub))
    # What Slurm does 60 s before the time limit, sent now: to the batch shell (rexec).
    sh(slurm.env, "scancel", "--signal=USR2", "--batch", sub["job_id"])
    doc = status(slurm, sub["run_id"], runs, "--wait", check=None)
    assert doc["tasks"][0]["recordStatus"] == "preempted"
    record = Path(doc["tasks"][0]["record"])
    annotations = json.loads((record / "record.json").read_text())
    assert annotations["status"] == "preempted"


def test_a_partition_preemption_is_recorded_preempted(
    slurm: Rexec, project: Project, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """A job of a higher-tier partition takes the node: Slurm sends SIGTERM, as for a
    cancel, and rexec asks it which this is; the record says `preempted`, not
    `interrupted`."""
    runs = tmp_path / "runs"
    long = ["sh", "-c", "echo started; sleep 120"]
    sub = submit(slurm, project.spec(long), keys[0], runs, "--sbatch=--nodelist=n1")
    until("the job to start", started(runs, sub))
    sh(
        slurm.env, "sbatch", "--partition=urgent", "--nodelist=n1", "--exclusive",
        "--output=/dev/null", "--wrap", "true",
    )  # fmt: skip
    until("the pre-empted attempt's record", (runs / sub["run_id"] / "record.json").is_file)
    ended = exit_status(runs / sub["run_id"])  # signed
    assert ended["status"] == "preempted", ended
    assert ended["reason"] == "rexec received SIGTERM: Slurm is pre-empting the job"
    slurm("cancel", sub["run_id"], "--runs-dir", runs, check=None)  # requeued: not again


def test_a_requeued_job_is_a_second_attempt_with_its_own_record(
    slurm: Rexec, project: Project, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    sub = submit(slurm, project.spec(SLEEPER), keys[0], runs, "--requeue")
    until("the job to start", started(runs, sub))
    sh(slurm.env, "scontrol", "requeue", sub["job_id"])
    first = runs / sub["run_id"]
    until("the first attempt's record", first.is_dir)
    assert json.loads((first / "record.json").read_text())["status"] == "interrupted"

    def later_attempts() -> list[Path]:
        return sorted(runs.glob(f"{sub['run_id']}-r*"))

    release_requeued(slurm, sub["job_id"])
    try:
        until(
            "a later attempt's record",
            lambda: any((d / "record.json").is_file() for d in later_attempts()),
        )
    except AssertionError as exc:  # say what Slurm thought of the job
        shown = subprocess.run(
            ["scontrol", "show", "job", sub["job_id"]],
            env=slurm.env,
            capture_output=True,
            text=True,
        )
        raise AssertionError(f"{exc}\n{shown.stdout}{shown.stderr}") from None
    (second,) = later_attempts()  # one later attempt, with its own record
    restart = int(second.name.rsplit("-r", 1)[1])
    assert json.loads((second / "record.json").read_text())["status"] == "succeeded"
    ident = build_definition(second)["internalParameters"]["scheduler"]
    assert ident["restartCount"] == restart >= 1 and ident["submission"]["attempt"] == restart
    doc = status(slurm, sub["run_id"], runs)
    assert doc["tasks"][0]["record"] == str(second)
    # each attempt kept its own log: the requeue truncated nothing
    again = log_of(runs, sub).with_name(f"slurm-{sub['job_id']}-r{restart}.out")
    assert "started" in log_of(runs, sub).read_text() and "started" in again.read_text()
    assert slurm("logs", sub["run_id"], "--runs-dir", runs).stdout.count("started") == 2


def test_two_nodes_one_record_with_both_host_captures(
    slurm: Rexec, project: Project, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    spec = project.spec(
        ["sh", "-c", "echo $NODE_RANK/$WORLD_SIZE@$MASTER_ADDR > $REXEC_OUTPUTS/rank.txt"],
        security=HOST_NETWORK,
    )
    sub = submit(slurm, spec, keys[0], runs, "--nodes", "2", "--wait")
    record = runs / sub["run_id"]
    internal = build_definition(record)["internalParameters"]
    assert internal["scheduler"]["nodes"] == ["n1", "n2"]
    (peer,) = internal["nodes"]
    assert peer["rank"] == 1 and peer["status"] == "succeeded" and peer["node"] == "n2"
    assert peer["host"]["schema"] == "rexec.host/v1"
    assert (record / "outputs" / "rank.txt").read_text().strip() == "0/2@127.0.0.1"
    slurm("verify", record, "--key", keys[1])
    # Rank 1 ran with the submitter's environment (here: its cache dir, so its catalog):
    # srun inside an --export=NONE job passes none unless told to.
    logged = json.loads(slurm("log", "--json").stdout)["runs"]
    assert {r["run_id"] for r in logged} >= {sub["run_id"], f"{sub['run_id']}-node1"}


def test_a_sweep_is_one_array_and_six_signed_runs(
    slurm: Rexec, project: Project, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    spec = project.spec(["sh", "-c", "cp $REXEC_PARAMS $REXEC_OUTPUTS/params.json"])
    sub = submit(
        slurm, spec, keys[0], runs, "--sweep", "scale=1,2,3", "--sweep", "seed=5,6", "--wait"
    )
    doc = status(slurm, sub["job_id"], runs)
    assert len(doc["tasks"]) == 6
    seen = set()
    for task in doc["tasks"]:
        assert (
            task["recordStatus"] == "succeeded"
            and task["jobId"] == f"{sub['job_id']}_{task['task']}"
        )
        record = Path(task["record"])
        scale = json.loads((record / "outputs" / "params.json").read_text())["scale"]
        spec_view = build_definition(record)["externalParameters"]["spec"]
        seen.add((scale, spec_view["seed"]))
        internal = build_definition(record)["internalParameters"]
        assert internal["scheduler"]["sweep"]["tasks"] == 6
        assert internal["scheduler"]["sweep"]["runId"] == sub["run_id"]
        assert internal["inputChecks"] == {"data": "stat"}  # hashed once, on the submit host
    assert seen == {(s, seed) for s in (1, 2, 3) for seed in (5, 6)}
    table = slurm("status", sub["run_id"], "--runs-dir", runs).stdout
    assert table.count("record: succeeded") == 6


def test_status_without_accounting_reads_the_records(
    rexec: Rexec, project: Project, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    rexec.env["SLURM_CONF"] = _conf("REXEC_TEST_SLURM_CONF_NOACCT")
    runs = tmp_path / "runs"
    sacct = subprocess.run(["sacct", "-n"], env=rexec.env, capture_output=True, text=True)
    assert sacct.returncode != 0 and "accounting storage is disabled" in sacct.stderr.lower()
    sub = submit(rexec, project.spec(["true"]), keys[0], runs, "--wait")
    doc = status(rexec, sub["run_id"], runs)
    assert doc["tasks"][0]["recordStatus"] == "succeeded"
    ident = build_definition(runs / sub["run_id"])["internalParameters"]["scheduler"]
    assert ident["cluster"] == "noacct" and "qos" not in ident  # no accounting, no qos


def test_bad_submit_input_queues_nothing(
    slurm: Rexec, project: Project, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    spec = project.spec(["true"])
    before = sh(slurm.env, "squeue", "-h", "-t", "all", "-o", "%i")
    out = slurm(
        "submit", spec, "--signing-key", keys[0], "--runs-dir", runs, "--partition", "nope",
        check=ExitCode.BAD_INPUT,
    )  # fmt: skip
    assert "sbatch refused the job" in out.stderr and "invalid partition" in out.stderr.lower()
    assert sh(slurm.env, "squeue", "-h", "-t", "all", "-o", "%i") == before
    assert not list((runs / ".rexec-jobs").glob("2*"))  # the submission directory is gone
    bad = slurm("submit", spec, "--runs-dir", runs, "--sweep", "nope=1,2", check=ExitCode.BAD_INPUT)
    assert "no such parameter" in bad.stderr
    apart = slurm(
        "submit", spec, "--signing-key", keys[0], "--runs-dir", runs, "--nodes", "2",
        check=ExitCode.BAD_INPUT,
    )  # fmt: skip
    assert "could not reach each other" in apart.stderr and "allow_host_network" in apart.stderr
    (project.data / "numbers.txt").write_text("changed\n")
    changed = slurm(
        "submit", spec, "--signing-key", keys[0], "--runs-dir", runs, check=ExitCode.MISMATCH
    )
    assert "numbers.txt" in changed.stderr
    assert sh(slurm.env, "squeue", "-h", "-t", "all", "-o", "%i") == before


def test_a_failure_on_any_node_fails_the_run(
    slurm: Rexec, project: Project, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    spec = project.spec(
        ["sh", "-c", "if [ $NODE_RANK = 1 ]; then exit 4; fi; true"], security=HOST_NETWORK
    )
    sub = submit(slurm, spec, keys[0], runs, "--nodes", "2")
    slurm("status", sub["run_id"], "--runs-dir", runs, "--wait", check=ExitCode.JOB_FAILED)
    record = runs / sub["run_id"]
    annotations = json.loads((record / "record.json").read_text())
    assert annotations["status"] == "failed" and "rank(s) 1" in annotations["reason"]
    (peer,) = build_definition(record)["internalParameters"]["nodes"]
    assert peer["status"] == "failed" and peer["exitCode"] == 4


def test_the_epilog_removes_what_a_job_left_behind(slurm: Rexec) -> None:
    """The admins' backstop for SIGKILL, OOM and node failure: containers by job label."""
    label = "dev.rexec.slurm-job=999999"
    other = "dev.rexec.slurm-job=999998"
    for lab in (label, other):
        sh(
            slurm.env,
            "docker",
            "run",
            "-d",
            "--network",
            "none",
            "--label",
            lab,
            BASE_IMAGE,
            "sleep",
            "60",
        )
    subprocess.run(
        ["sh", str(REPO / "scripts" / "slurm-epilog")],
        env=slurm.env | {"SLURM_JOB_ID": "999999"}, check=True,
    )  # fmt: skip
    assert sh(slurm.env, "docker", "ps", "-aq", "--filter", f"label={label}").strip() == ""
    left = sh(slurm.env, "docker", "ps", "-aq", "--filter", f"label={other}").split()
    assert len(left) == 1  # another job's container is not touched
    sh(slurm.env, "docker", "rm", "-f", *left)


def test_the_epilog_removes_a_killed_jobs_container_and_partial_record(
    slurm: Rexec, project: Project, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """rexec SIGKILLed (an OOM kill, a dying step daemon): nothing of it can clean up, so
    the epilog removes its container and, as the job's user, its half-assembled record."""
    runs = tmp_path / "runs"
    sub = submit(slurm, project.spec(["sh", "-c", "echo started; sleep 120"]), keys[0], runs)
    until("the job to start", started(runs, sub))
    (partial,) = runs.glob(".*.partial")
    os.kill(int(json.loads((partial / ".owner").read_text())["pid"]), signal.SIGKILL)
    label = f"label=dev.rexec.slurm-job={sub['job_id']}"
    assert sh(slurm.env, "docker", "ps", "-q", "--filter", label).strip()  # it outlived rexec
    alive = runs / ".20261201T000000Z-alive-000000.partial"  # a run in progress on this host
    alive.mkdir()
    (alive / ".owner").write_text(json.dumps(owner.me().to_json()))
    epilog = {
        "SLURM_JOB_ID": sub["job_id"],
        "SLURM_JOB_USER": getpass.getuser(),
        "REXEC": str(Path(sys.executable).parent / "rexec"),
    }
    subprocess.run(
        ["sh", str(REPO / "scripts" / "slurm-epilog")], env=slurm.env | epilog, check=True
    )
    assert sh(slurm.env, "docker", "ps", "-aq", "--filter", label).strip() == ""
    assert not partial.exists() and alive.is_dir()


def test_an_unreachable_controller_is_exit_6_and_the_records_on_disk_are_still_shown(
    slurm: Rexec, project: Project, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    conf = Path(slurm.env["SLURM_CONF"]).read_text()
    dead = tmp_path / "etc" / "slurm.conf"
    dead.parent.mkdir()
    port = next(x for x in conf.splitlines() if x.startswith("SlurmctldPort="))
    dead.write_text(conf.replace(port, "SlurmctldPort=1"))
    runs = tmp_path / "runs"
    (runs / ".rexec-jobs" / "by-job").mkdir(parents=True)
    job = runs / ".rexec-jobs" / "20261201T000000Z-x-000000"
    job.mkdir()
    (job / "submission.json").write_text(
        json.dumps(
            {
                "schema": "rexec.submission/v2", "run_id": job.name, "spec_path": "-",
                "spec_sha256": "-", "runs_dir": str(runs), "site": {}, "sign": {},
                "tasks": [{"params": [], "seed": None}], "spec_text": "",
            }
        )
    )  # fmt: skip
    (job / "job-id").write_text("1\n")
    (runs / job.name).mkdir()  # the run's record, as the node left it
    (runs / job.name / "record.json").write_text('{"status": "failed", "exitCode": 3}')
    slurm.env["SLURM_CONF"] = str(dead)
    out = slurm("status", job.name, "--runs-dir", runs, check=ExitCode.INFRASTRUCTURE)
    assert "squeue failed" in out.stderr and "scontrol ping" in out.stderr
    assert "record: failed  exit 3" in out.stdout
    out = slurm("status", "--runs-dir", runs, "--json", check=ExitCode.INFRASTRUCTURE)
    doc = json.loads(out.stdout)
    assert "squeue failed" in doc["controller"]
    ((task,),) = [run["tasks"] for run in doc["runs"] if run["runId"] == job.name]
    assert (task["recordStatus"], task["exitCode"]) == ("failed", 3)
    before = sorted((runs / ".rexec-jobs").iterdir())
    out = slurm(
        "submit", project.spec(["true"]), "--signing-key", keys[0], "--runs-dir", runs,
        check=ExitCode.INFRASTRUCTURE,
    )  # fmt: skip
    assert "sbatch failed" in out.stderr and "scontrol ping" in out.stderr
    assert sorted((runs / ".rexec-jobs").iterdir()) == before  # nothing left half-written


@pytest.mark.skipif(
    shutil.which("podman") is None, reason="podman is not installed (setup installs it)"
)
def test_a_podman_container_dies_with_its_cancelled_job(
    slurm: Rexec, project: Project, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """conmon escapes the job's cgroup as dockerd's containers do: rexec's trap stops it."""
    runs = tmp_path / "runs"
    spec = project.spec(SLEEPER, extra='[runtime]\nengine = "podman"\n')
    sub = submit(slurm, spec, keys[0], runs)
    until("the job to start", started(runs, sub))
    label = f"label=dev.rexec.slurm-job={sub['job_id']}"
    assert sh(slurm.env, "podman", "ps", "-q", "--filter", label).strip()
    slurm("cancel", sub["run_id"], "--runs-dir", runs)
    doc = status(slurm, sub["run_id"], runs, "--wait", check=ExitCode.JOB_FAILED)
    assert doc["tasks"][0]["recordStatus"] == "interrupted"
    assert sh(slurm.env, "podman", "ps", "-aq", "--filter", label).strip() == ""
    record = Path(doc["tasks"][0]["record"])
    assert json.loads((record / "host.json").read_text())["engine"]["name"] == "podman"


@pytest.mark.skipif(
    shutil.which("podman") is None, reason="podman is not installed (setup installs it)"
)
def test_the_podman_service_a_job_starts_ends_with_the_job(
    slurm: Rexec, project: Project, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """Each job (and node) starts a service of its own, on its own socket, and stops it: it
    no longer outlives the job by up to 10 minutes, nor ends under another job's feet."""
    runs = tmp_path / "runs"
    spec = project.spec(["true"], extra='[runtime]\nengine = "podman"\n')
    sub = submit(slurm, spec, keys[0], runs, "--wait")
    socket = f"/run/podman/rexec-slurm-{sub['job_id']}-0.sock"
    assert (
        "podman" in json.loads((runs / sub["run_id"] / "host.json").read_text())["engine"]["name"]
    )
    left = subprocess.run(["pgrep", "-f", socket], capture_output=True, text=True, check=False)
    assert left.stdout.strip() == "" and not Path(socket).exists()


def test_a_submission_edited_while_queued_is_refused_and_nothing_runs(
    slurm: Rexec, project: Project, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """submission.json sits on shared storage while the job waits: it used to be edited
    (another seed, allow_dirty, another spec) and run, signed under the submitted run id."""
    runs = tmp_path / "runs"
    spec = project.spec(["sh", "-c", "echo ran > $REXEC_OUTPUTS/ran.txt"])
    sub = submit(slurm, spec, keys[0], runs, "--sbatch=--hold")
    path = runs / ".rexec-jobs" / sub["run_id"] / "submission.json"
    doc = json.loads(path.read_text())
    doc["tasks"][0]["seed"], doc["allow_dirty"] = 99, True
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    assert (
        f"--submission-sha256 {hashlib.sha256(path.read_bytes()).hexdigest()}"
        not in (path.parent / "job.sbatch").read_text()
    )
    sh(slurm.env, "scontrol", "release", sub["job_id"])
    until("the node's refusal", (path.parent / "refused.json").is_file, timeout=120)
    done = status(slurm, sub["run_id"], runs, "--wait", check=ExitCode.JOB_FAILED)
    (task,) = done["tasks"]
    assert task["recordStatus"] == "refused" and task["record"] is None
    refused = json.loads((path.parent / "refused.json").read_text())
    assert "changed after it was submitted" in refused["reason"]
    assert refused["jobId"] == sub["job_id"]
    assert not list(runs.glob(f"{sub['run_id']}*"))  # nothing ran, nothing signed
    assert "changed after it was submitted" in log_of(runs, sub).read_text()


def test_the_spec_edited_after_submitting_changes_nothing_that_runs(
    slurm: Rexec, project: Project, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """The node used to re-read the spec from its path: an edit lost the job."""
    runs = tmp_path / "runs"
    job = "import os; open('/outputs/seed.txt', 'w').write(os.environ['REXEC_SEED'])"
    spec = project.spec(["python3", "-c", job])
    sub = submit(slurm, spec, keys[0], runs, "--sbatch=--hold")
    project.spec(["python3", "-c", job], run={"seed": 666})  # the same file, edited
    sh(slurm.env, "scontrol", "release", sub["job_id"])
    done = status(slurm, sub["run_id"], runs, "--wait")
    record = Path(done["tasks"][0]["record"])
    assert (record / "outputs" / "seed.txt").read_text() == "7"  # the spec as submitted
    slurm("verify", record, "--key", keys[1])


TRAINER = """\
import json, os, signal, sys, time
ckpt = "/checkpoint/state.json"
state = json.load(open(ckpt)) if os.path.exists(ckpt) else {"step": 0, "w": 1, "attempts": 0}
state["attempts"] += 1
stop = []
signal.signal(signal.SIGUSR2, lambda signum, frame: stop.append(signum))
print("started", flush=True)
while state["step"] < 40:
    state["w"] = (state["w"] * 48271 + state["step"]) % 2147483647  # one deterministic step
    state["step"] += 1
    with open(ckpt + ".tmp", "w") as f:
        json.dump(state, f)
    os.replace(ckpt + ".tmp", ckpt)
    if stop:
        sys.exit(0)  # the checkpoint holds every step taken: the next attempt resumes it
    time.sleep(0.25)
with open(os.path.join(os.environ["REXEC_OUTPUTS"], "model.json"), "w") as f:
    json.dump({"step": state["step"], "w": state["w"]}, f)
"""


def test_a_preempted_job_resumes_from_its_checkpoint_to_the_uninterrupted_model(
    slurm: Rexec, project: Project, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """The warning before pre-emption reaches the job, which checkpoints and stops; the
    attempt is signed `preempted` and requeued; the next resumes from the checkpoint, and
    the model is bitwise the one an uninterrupted run makes."""
    project.write_code("trainer.py", TRAINER)
    spec = project.spec(["python3", "/code/trainer.py"], checkpoint={"mount": "/checkpoint"})
    runs = tmp_path / "runs"
    alone = slurm.run(spec, keys[0], tmp_path / "alone", "-q")  # no scheduler, no stop
    sub = submit(slurm, spec, keys[0], runs, "--requeue", "--signal", "USR2@60")
    until(
        "a few steps",
        lambda: log_of(runs, sub).is_file() and "started" in log_of(runs, sub).read_text(),
    )
    time.sleep(2)
    sh(slurm.env, "scancel", "--signal=USR2", "--batch", sub["job_id"])  # Slurm's warning, now
    first = runs / sub["run_id"]
    until("the preempted attempt's record", lambda: (first / "record.json").is_file())
    assert json.loads((first / "record.json").read_text())["status"] == "preempted"

    def later() -> list[Path]:
        return sorted(d for d in runs.glob(f"{sub['run_id']}-r*") if (d / "record.json").is_file())

    release_requeued(slurm, sub["job_id"])
    until("the resumed attempt's record", lambda: bool(later()))
    (second,) = later()
    assert json.loads((second / "record.json").read_text())["status"] == "succeeded"
    model = (second / "outputs" / "model.json").read_bytes()
    assert model == (alone / "outputs" / "model.json").read_bytes()  # bitwise
    marks = [build_definition(r)["internalParameters"]["checkpoint"] for r in (first, second)]
    assert marks[0]["end"] == marks[1]["start"] != marks[0]["start"]  # the chain of attempts
    assert marks[0]["kept"] is True
    state = json.loads(
        (runs / ".rexec-jobs" / sub["run_id"] / "checkpoint-0" / "state.json").read_text()
    )
    assert state["attempts"] == 2 and state["step"] == 40
    for record in (first, second):
        slurm("verify", record, "--key", keys[1], "--allow-failed")


DDP = """\
import json, os, subprocess, sys
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def train(rank, world):
    dist.init_process_group("gloo", rank=rank, world_size=world)  # MASTER_ADDR, MASTER_PORT
    total = torch.tensor([float(rank + 1)])
    dist.all_reduce(total)  # every rank's number, summed across nodes
    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Linear(4, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    data = torch.Generator().manual_seed(100 + rank)  # each rank its own shard
    for _ in range(5):
        x = torch.randn(16, 4, generator=data)
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), x.sum(1, keepdim=True)).backward()
        optimizer.step()  # gradients all-reduced by DDP
    if rank == 0:
        out = os.environ["REXEC_OUTPUTS"]
        with open(out + "/model.bin", "wb") as f:
            for p in model.module.parameters():
                f.write(p.detach().numpy().tobytes())
        with open(out + "/metrics.json", "w") as f:
            json.dump({"allreduce": total.item(), "world": world}, f)
    dist.destroy_process_group()


if "RANK" in os.environ:  # one rank per node, as rexec submit --nodes starts them
    train(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]))
else:  # the same job as two processes on one node
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT="29400", WORLD_SIZE="2")
    ranks = [subprocess.Popen([sys.executable, __file__], env=dict(env, RANK=str(r))) for r in (0, 1)]
    sys.exit(max(p.wait() for p in ranks))
"""
TORCH_IMAGE = {
    "build": {
        "dockerfile": f"{REPO}/images/torch/Dockerfile",
        "context": f"{REPO}/images/torch",
        "args": {"BASE_IMAGE": BASE_IMAGE},
    }
}


def test_two_nodes_train_with_torch_distributed_to_the_model_one_node_makes(
    slurm: Rexec, project: Project, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """Nodes that talk: gloo's all-reduce and DDP steps across the two Slurm nodes, one
    signed record naming both, and bitwise the model of the same job as two processes on
    one node."""
    project.write_code("ddp.py", DDP)
    spec = project.spec(
        ["python3", "/code/ddp.py"],
        image=TORCH_IMAGE,
        resources={"memory": "2g"},
        determinism={"frameworks": ["torch"]},
        security=HOST_NETWORK,
        run={"timeout": "5m"},
    )
    one_node = slurm.run(spec, keys[0], tmp_path / "one-node", "-q")
    runs = tmp_path / "runs"
    sub = submit(slurm, spec, keys[0], runs, "--nodes", "2", "--wait")
    record = runs / sub["run_id"]
    assert json.loads((record / "outputs" / "metrics.json").read_text()) == {
        "allreduce": 3.0,  # 1 + 2: rank 1's number crossed to node n1
        "world": 2,
    }
    model = (record / "outputs" / "model.bin").read_bytes()
    assert model == (one_node / "outputs" / "model.bin").read_bytes()
    internal = build_definition(record)["internalParameters"]
    assert internal["scheduler"]["nodes"] == ["n1", "n2"]
    assert internal["hardening"]["network"] == "host" and internal["optIns"]["allowHostNetwork"]
    rendezvous = internal["scheduler"]["rendezvous"]
    assert rendezvous["WORLD_SIZE"] == "2" and rendezvous["LOCAL_RANK"] == "0"
    assert int(rendezvous["MASTER_PORT"]) == 29500 + int(sub["job_id"]) % 1000
    (peer,) = internal["nodes"]
    assert (peer["rank"], peer["node"], peer["status"]) == (1, "n2", "succeeded")
    slurm("verify", record, "--key", keys[1])


def test_a_pipeline_is_submitted_as_a_graph_of_dependent_jobs(
    slurm: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """Each stage a job after the jobs of the stages it reads (the two branches in
    parallel), reuse decided on the submit host, every record with its job identity and
    its inputs read from the upstream records the node verified; then all reused."""
    from tests.e2e.test_pipeline_e2e import READS, Project, decisions

    project = Project(slurm, tmp_path / "p", keys)
    doc = project.pipeline("--submit")
    assert set(decisions(doc).values()) == {"submitted"}
    stages = {s["stage"]: s for s in doc["stages"]}
    jobs = project.runs / ".rexec-jobs"
    for stage, (upstream, _) in READS.items():  # afterok on its upstream's job alone
        script = (jobs / stages[stage]["runId"] / "job.sbatch").read_text()
        assert f"#SBATCH --dependency=afterok:{stages[upstream]['jobId']}\n" in script
    assert "--dependency" not in (jobs / stages["extract"]["runId"] / "job.sbatch").read_text()
    slurm("status", "--runs-dir", project.runs, "--wait")
    for stage, (upstream, _) in READS.items():
        record = project.runs / stages[stage]["runId"]
        internal = build_definition(record)["internalParameters"]
        assert internal["scheduler"]["jobId"] == stages[stage]["jobId"]
        (data,) = [
            d for d in build_definition(record)["resolvedDependencies"] if d["name"] == "input:data"
        ]
        assert data["annotations"]["fromRun"] == stages[upstream]["runId"], data
        slurm("verify", record, "--key", keys[1])
    again = project.pipeline("--submit")
    assert set(decisions(again).values()) == {"reused"}  # decided here: nothing queued


def test_submit_resolves_and_pins_from_inputs_before_queueing(
    slurm: Rexec, project: Project, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """A `from` input is resolved on the submit host, its record verified under the
    caller's trust and its digest pinned in the submission: the node reads that."""
    runs = tmp_path / "runs"
    make = project.spec(
        ["sh", "-c", "mkdir $REXEC_OUTPUTS/table && echo 42 > $REXEC_OUTPUTS/table/x"]
    )
    made = slurm.run(make, keys[0], runs, "-q")
    reader = gen(
        tmp_path / "reader.toml",
        spec(
            "reader",
            ["sh", "-c", "cp /data/x $REXEC_OUTPUTS/x"],
            inputs=[{"name": "data", "from": "latest:e2e:table", "mount": "/data"}],
            determinism=NO_FRAMEWORKS,
        ),
    )
    refused = slurm(
        "submit", reader, "--signing-key", keys[0], "--runs-dir", runs, check=ExitCode.BAD_INPUT
    )
    assert "trust" in refused.stderr  # no policy: no record is read, nothing queued
    sub = submit(slurm, reader, keys[0], runs, "--key", keys[1], "--wait")
    pinned_then = json.loads((runs / ".rexec-jobs" / sub["run_id"] / "submission.json").read_text())
    said = pinned_then["from_inputs"]["data"]
    assert said["fromRun"] == made.name and said["digest"].startswith("sha256-tree-v1:")
    record = runs / sub["run_id"]
    assert (record / "outputs" / "x").read_text() == "42\n"
    (data,) = [
        d for d in build_definition(record)["resolvedDependencies"] if d["name"] == "input:data"
    ]
    assert data["annotations"]["fromRun"] == made.name


def test_regenerate_submits_each_run_after_the_jobs_it_reads(
    slurm: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """`regenerate --submit`: each affected run a job after the jobs of the runs it reads
    (the branch beside s1 in parallel with it). A correction that comes out identical at
    s0 prunes every job below it on its node (nothing runs, status says pruned); a real
    one regenerates them all, each record signing its job and its regeneration, read from
    the upstream records the nodes verified, and the lineage is consistent once indexed."""
    from tests.e2e.test_regenerate_e2e import JOB, Chain

    chain = Chain(slurm, keys, tmp_path / "c", 3)
    gen(
        chain.root / "b.toml",
        spec(
            "b",
            ["python3", "-c", JOB],
            inputs=[{"name": "data", "from": "latest:s0:d", "mount": "/data"}],
            determinism=NO_FRAMEWORKS,
        ),
    )
    gen(chain.root / "pipeline.toml", Chain.pipeline_doc([*chain.names, "b"]))
    chain.pipeline()
    reads = {"s1": "s0", "b": "s0", "s2": "s1"}
    jobs = chain.runs / ".rexec-jobs"

    def regenerate(new: Path) -> dict[str, dict[str, Any]]:
        old = slurm("snapshot", "hash", chain.raw, "--quiet").stdout.strip()
        out = slurm("regenerate", old, "--with", new, *chain.trust(), "--submit", "--json", "-q")
        chain.raw = new
        steps = {s["stage"]: s for s in json.loads(out.stdout)["stages"]}
        assert {s["decision"] for s in steps.values()} == {"submitted"}, steps
        for name, upstream in reads.items():  # afterok on the job of the run it reads alone
            script = (jobs / steps[name]["runId"] / "job.sbatch").read_text()
            assert f"#SBATCH --dependency=afterok:{steps[upstream]['jobId']}\n" in script
        assert "--dependency" not in (jobs / steps["s0"]["runId"] / "job.sbatch").read_text()
        slurm("status", "--runs-dir", chain.runs, "--wait")
        slurm("catalog", "index", chain.runs, "--verify", "--key", keys[1])
        return steps

    same = regenerate(chain.data("1", "only a comment changed"))
    assert (chain.runs / same["s0"]["runId"] / "outputs" / "d" / "v.txt").read_text() == "2\n"
    for name in reads:  # s0 came out identical: nothing below it ran
        assert not (chain.runs / same[name]["runId"]).exists()
        assert (jobs / same[name]["runId"] / "pruned.json").is_file()
        (task,) = status(slurm, same[name]["runId"], chain.runs)["tasks"]
        assert (task["state"], task["recordStatus"]) == ("COMPLETED", "pruned")

    steps = regenerate(chain.data("5", "the corrected number"))
    made = {name: chain.runs / step["runId"] for name, step in steps.items()}
    assert (made["s2"] / "outputs" / "d" / "v.txt").read_text() == "8\n"
    assert (made["b"] / "outputs" / "d" / "v.txt").read_text() == "7\n"
    for name, record in made.items():
        internal = build_definition(record)["internalParameters"]
        assert internal["scheduler"]["jobId"] == steps[name]["jobId"]
        assert internal["lineage"]["regeneration"]["trigger"]["to"].startswith("sha256-tree-v1:")
        slurm("verify", record, "--key", keys[1])
    for name, upstream in reads.items():
        (data,) = [
            d
            for d in build_definition(made[name])["resolvedDependencies"]
            if d["name"] == "input:data"
        ]
        assert data["annotations"]["fromRun"] == steps[upstream]["runId"], data
        assert build_definition(made[name])["internalParameters"]["lineage"]["regeneration"][
            "upstreamRuns"
        ] == [steps[upstream]["runId"]]
    # Indexed verified, the new records supersede the old: nothing current is stale.
    assert json.loads(slurm("runs", "--stale", "--json").stdout)["runs"] == []
