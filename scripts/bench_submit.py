"""`scripts/bench submit [--repeat N] [--jobs N] [--smoke]`: what `rexec submit` costs on Slurm.

Four figures, each against a peer or limit measured in the same script on the same cluster:

1. Time from submitting to the job's first instruction inside its container:
   `rexec submit` of a trivial spec, against `sbatch` of a plain script that
   runs the same image with the same hardening flags (`docker run`). The job
   prints `time.time()` from inside the container; the bench subtracts the
   moment it started the submit command. Slurm's own scheduling delay is in
   both and varies by up to a second between identical jobs, so the figure
   judged is rexec's own two parts: the submit command over `sbatch`, and
   batch start -> first line (both scripts stamp their start) over the
   peer's. Each submission waits for an idle queue. Target: at most 0.5 s added.
2. Polling cost: how many Slurm commands one `rexec status` (no run named: every
   tracked run) costs for N tracked jobs, counted by wrappers around squeue and
   sacct (target: at most 2, whatever N is).
3. End noticed: from the moment squeue stops showing a job running to the moment
   `rexec status RUN --wait` returns (target: at most 2 s).
4. Input checking on the nodes: a sweep over an input of many files, each task
   checking the input against the submit host's stamps (lstat, no re-hash), against
   one `find -printf '%s %T@'` walk of the same input (target: at most 1.5x).

Uses the cluster in $SLURM_CONF, or starts a throwaway one (scripts/slurm-cluster,
root) and stops it at the end. A benchmark, not a test: it prints, it does not assert.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PYTHON = str(REPO / ".venv" / "bin" / "python")
REXEC = [PYTHON, "-m", "executor"]
BASE_REF_FILE = REPO / "build" / "base" / "registry-ref"
PRINT_TIME = "import time; print('T=%.6f' % time.time(), flush=True)"
HARDENED = "--network none --read-only --cap-drop ALL --security-opt no-new-privileges:true"


def base_image() -> str:
    if not BASE_REF_FILE.is_file():
        raise SystemExit(f"scripts/bench: {BASE_REF_FILE} is missing; run scripts/setup first")
    return BASE_REF_FILE.read_text().strip()


def wait_for_time(log: Path, timeout: float = 120.0, *, mark: str = "T=") -> float:
    """The T= stamp the job printed from inside its container (S=: its batch shell's)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.is_file():
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith(mark):
                    return float(line[len(mark) :])
        time.sleep(0.05)
    raise SystemExit(f"scripts/bench: no {mark} line in {log} after {timeout:g} s")


# The batch shell's first act, in both scripts of the split measure: the moment Slurm
# started the job, so its scheduling delay (the same for both, and noisy) drops out.
STAMP = 'echo "S=$(date +%s.%N)"'


def plain_parts(work: Path, env: dict[str, str], image: str) -> tuple[float, float]:
    """The peer in two parts: sbatch's own time, and batch start -> first line."""
    idle(env)
    log = work / f"plain-split-{time.time_ns()}.out"
    script = work / "plain-split.sbatch"
    script.write_text(
        f"#!/bin/bash\n#SBATCH --output={log}\n#SBATCH --export=NONE\n{STAMP}\n"
        f'exec docker run --rm {HARDENED} -u 65534:65534 {image} python3 -c "{PRINT_TIME}"\n'
    )
    t0 = time.time()
    subprocess.run(["sbatch", "--parsable", str(script)], env=env, check=True, capture_output=True)
    queued = time.time() - t0
    return queued, wait_for_time(log) - wait_for_time(log, mark="S=")


def rexec_parts(work: Path, env: dict[str, str], spec: Path) -> tuple[float, float]:
    """rexec in two parts: `rexec submit` (held), then its own batch script, stamped, run."""
    runs = work / "runs"
    idle(env)
    t0 = time.time()
    out = subprocess.run(
        [*REXEC, "submit", str(spec), "--runs-dir", str(runs), "--json", "--sbatch=--hold"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    queued = time.time() - t0
    doc = json.loads(out)
    subprocess.run(["scancel", doc["job_id"]], env=env, check=True)
    directory = runs / ".rexec-jobs" / doc["run_id"]
    script = (directory / "job.sbatch").read_text().replace("#SBATCH --hold\n", "", 1)
    script = script.replace("set -u\n", f"set -u\n{STAMP}\n", 1)
    (directory / "timed.sbatch").write_text(script)
    job = subprocess.run(
        ["sbatch", "--parsable", str(directory / "timed.sbatch")],
        env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    log = directory / f"slurm-{job}.out"
    return queued, wait_for_time(log) - wait_for_time(log, mark="S=")


def idle(env: dict[str, str], timeout: float = 120.0) -> None:
    """Wait until the cluster's queue is empty: each submission is timed on idle nodes, not
    behind the previous job's end (its recording, its epilog)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["squeue", "-h"], env=env, capture_output=True, text=True).stdout
        if not out.strip():
            return
        time.sleep(0.1)
    raise SystemExit(f"scripts/bench: the queue is not empty after {timeout:g} s")


def plain_sbatch(work: Path, env: dict[str, str], image: str) -> float:
    idle(env)
    log = work / f"plain-{time.time_ns()}.out"
    script = work / "plain.sbatch"
    script.write_text(
        "#!/bin/bash\n"
        f"#SBATCH --output={log}\n#SBATCH --export=NONE\n"
        f'exec docker run --rm {HARDENED} -u 65534:65534 {image} python3 -c "{PRINT_TIME}"\n'
    )
    t0 = time.time()
    subprocess.run(["sbatch", "--parsable", str(script)], env=env, check=True, capture_output=True)
    return wait_for_time(log) - t0


def trivial_spec(work: Path, image: str, *, data: Path | None = None, name: str = "bench") -> Path:
    if data is None:
        data = work / "data"
        data.mkdir(exist_ok=True)
        (data / "x.txt").write_text("x\n")
    spec = work / f"{name}.toml"
    digest = subprocess.run(
        [*REXEC, "snapshot", "hash", str(data), "-q"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    spec.write_text(
        textwrap.dedent(f"""\
        version = 1
        name = "{name}"
        [image]
        ref = "{image}"
        [run]
        command = ["python3", "-c", "{PRINT_TIME}"]
        seed = 1
        [[inputs]]
        name = "data"
        path = "{data}"
        digest = "{digest}"
        mount = "/data"
        [determinism]
        frameworks = []
        [signing]
        method = "none"
        """)
    )
    return spec


def rexec_submit(work: Path, env: dict[str, str], spec: Path) -> float:
    runs = work / "runs"
    idle(env)
    t0 = time.time()
    out = subprocess.run(
        [*REXEC, "submit", str(spec), "--runs-dir", str(runs), "--json"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    doc = json.loads(out)
    log = runs / ".rexec-jobs" / doc["run_id"] / f"slurm-{doc['job_id']}.out"
    return wait_for_time(log) - t0


def counting(work: Path, env: dict[str, str]) -> tuple[dict[str, str], Path]:
    """``env`` with squeue and sacct wrapped: each call is appended to the returned log."""
    shims, log = work / "shims", work / "slurm-calls.log"
    shims.mkdir(exist_ok=True)
    for command in ("squeue", "sacct"):
        real = shutil.which(command, path=env.get("PATH"))
        if real is None:
            continue
        shim = shims / command
        shim.write_text(f'#!/bin/sh\necho {command} >> "{log}"\nexec "{real}" "$@"\n')
        shim.chmod(0o755)
    return env | {"PATH": f"{shims}:{env.get('PATH', '')}"}, log


def polling_cost(work: Path, env: dict[str, str], jobs: int) -> tuple[int, float]:
    """Slurm commands `rexec status` runs for ``jobs`` tracked submissions, and its time."""
    from executor.cluster import SiteOptions, Submission

    runs = work / "poll-runs"
    for i in range(jobs):
        job = subprocess.run(
            ["sbatch", "--parsable", "--wrap", "true", "--output=/dev/null"],
            env=env, check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        sub = Submission(
            run_id=f"bench-{i:04d}",
            spec_path="-",
            spec_sha256="-",
            runs_dir=str(runs),
            site=SiteOptions(),
            sign={},
        )
        sub.directory.mkdir(parents=True)
        (sub.directory / "submission.json").write_bytes(sub.encoded())
        sub.save_job_id(job.split(";")[0])
    counted, log = counting(work, env)
    t0 = time.perf_counter()
    subprocess.run(
        [*REXEC, "status", "--runs-dir", str(runs), "--json"],
        env=counted, check=False, capture_output=True,
    )  # fmt: skip
    return len(log.read_text().split()), time.perf_counter() - t0


def end_noticed(work: Path, env: dict[str, str], spec: Path) -> float:
    """Seconds from squeue no longer showing the job running to `status --wait` returning."""
    runs = work / "runs"
    doc = json.loads(
        subprocess.run(
            [*REXEC, "submit", str(spec), "--runs-dir", str(runs), "--json"],
            env=env, check=True, capture_output=True, text=True,
        ).stdout
    )  # fmt: skip
    waiting = subprocess.Popen(
        [*REXEC, "status", doc["run_id"], "--runs-dir", str(runs), "--wait"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    ended = None
    while waiting.poll() is None:
        state = subprocess.run(
            ["squeue", "-h", "-t", "all", "-j", doc["job_id"], "-o", "%T"],
            env=env, capture_output=True, text=True, check=False,
        ).stdout.strip()  # fmt: skip
        if ended is None and state not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING"):
            ended = time.monotonic()
        time.sleep(0.05)
    returned = time.monotonic()
    return returned - (ended if ended is not None else returned)


def input_checking(
    work: Path, env: dict[str, str], image: str, *, tasks: int, files: int
) -> tuple[float, float]:
    """Median seconds of the nodes' input check (stamps) over a sweep of ``tasks``, and of one
    `find -printf '%s %T@'` walk of the same input."""
    data = work / "many"
    for i in range(files):
        sub = data / f"d{i // 1000:04d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True)
        (sub / f"f{i:06d}.txt").write_text(f"{i}\n")
    spec = trivial_spec(work, image, data=data, name="many")
    runs = work / "runs"
    doc = json.loads(
        subprocess.run(
            [*REXEC, "submit", str(spec), "--runs-dir", str(runs), "--json", "--wait",
             "--sweep", "seed=" + ",".join(str(s) for s in range(1, tasks + 1))],
            env=env, check=True, capture_output=True, text=True,
        ).stdout
    )  # fmt: skip
    checks = []
    for log in (runs / ".rexec-jobs" / doc["run_id"]).glob("slurm-*.out"):
        found = re.search(r"\(lstat, ([0-9.]+) s\)", log.read_text(errors="replace"))
        if found is None:
            raise SystemExit(f"scripts/bench: {log} shows no lstat check of the input")
        checks.append(float(found.group(1)))
    walks = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run(
            ["find", str(data), "-printf", "%s %T@\n"], check=True, stdout=subprocess.DEVNULL
        )
        walks.append(time.perf_counter() - t0)
    return statistics.median(checks), statistics.median(walks)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench submit", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--repeat", type=int, default=5, help="submissions per case (median)")
    parser.add_argument("--jobs", type=int, default=100, help="tracked jobs for the polling cost")
    parser.add_argument("--tasks", type=int, default=20, help="sweep tasks for input checking")
    parser.add_argument("--files", type=int, default=100_000, help="files in the swept input")
    parser.add_argument(
        "--smoke", action="store_true", help="one run, 5 jobs, 2 tasks of 2,000 files (CI)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.repeat, args.jobs, args.tasks, args.files = 1, 5, 2, 2000
    image = base_image()
    with tempfile.TemporaryDirectory(prefix="rexec-bench-submit-") as tmp:
        work = Path(tmp)
        env = dict(os.environ)
        started_cluster = None
        if not env.get("SLURM_CONF"):
            work.chmod(0o755)  # munged and MariaDB run as their own users
            started_cluster = work / "cluster"
            subprocess.run(
                ["bash", str(REPO / "scripts" / "slurm-cluster"), "up", str(started_cluster)],
                check=True, stdout=subprocess.DEVNULL, env=env | {"PORT_BASE": "17800"},
            )  # fmt: skip
            env["SLURM_CONF"] = str(started_cluster / "etc" / "slurm.conf")
        env["REXEC_CACHE_DIR"] = str(work / "cache")
        try:
            spec = trivial_spec(work, image)
            plain_sbatch(work, env, image)  # warm-up: image layers, page cache
            rexec_submit(work, env, spec)
            plain = statistics.median(plain_sbatch(work, env, image) for _ in range(args.repeat))
            ours = statistics.median(rexec_submit(work, env, spec) for _ in range(args.repeat))
            peer_parts = [plain_parts(work, env, image) for _ in range(args.repeat)]
            our_parts = [rexec_parts(work, env, spec) for _ in range(args.repeat)]
            calls, seconds = polling_cost(work, env, args.jobs)
            noticed = statistics.median(end_noticed(work, env, spec) for _ in range(args.repeat))
            check, walk = input_checking(work, env, image, tasks=args.tasks, files=args.files)
        finally:
            if started_cluster is not None:
                subprocess.run(
                    ["bash", str(REPO / "scripts" / "slurm-cluster"), "down", str(started_cluster)],
                    check=False,
                )
    print(f"median of {args.repeat} submissions each, after one warm-up")
    print(f"{'sbatch + hardened docker run (peer)':40} {plain:8.3f} s to the job's first line")
    print(f"{'rexec submit':40} {ours:8.3f} s")
    print(f"end to end, rexec submit adds {ours - plain:.3f} s over sbatch of the same docker "
          "run (Slurm's scheduling delay, in both, varies by up to a second)")  # fmt: skip
    sbatch_s = statistics.median(q for q, _ in peer_parts)
    submit_s = statistics.median(q for q, _ in our_parts)
    docker_s = statistics.median(n for _, n in peer_parts)
    node_s = statistics.median(n for _, n in our_parts)
    added = (submit_s - sbatch_s) + (node_s - docker_s)
    print(f"{'  sbatch / rexec submit (queueing)':40} {sbatch_s:8.3f} / {submit_s:.3f} s")
    print(f"{'  batch start -> first line: docker / rexec':40} {docker_s:8.3f} / {node_s:.3f} s")
    print(f"rexec submit adds {added:.3f} s over sbatch of the same docker run, its own two "
          "parts without the scheduler's delay (target <= 0.5)")  # fmt: skip
    print(f"status polling: {calls} Slurm commands for {args.jobs} tracked jobs in one "
          f"`rexec status` ({seconds:.3f} s; target <= 2)")  # fmt: skip
    print(f"end noticed {noticed:.3f} s after squeue stopped showing the job running "
          f"(median of {args.repeat}; target <= 2)")  # fmt: skip
    print(f"input checking on the nodes: {check:.3f} s per task (median of {args.tasks}, "
          f"{args.files} files, lstat against the submit host's stamps), one find walk "
          f"{walk:.3f} s: {check / walk:.2f}x (target <= 1.5)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
