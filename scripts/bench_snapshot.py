"""`scripts/bench snapshot [--small]`: rexec snapshot hashing against peers on the same data.

Builds its own data in a temporary directory (deleted at the end), runs every
tool as a child process, and reports wall time, throughput, peak RSS (from
wait4's rusage) and the ratio to the peer or baseline each target is stated
against (docs/performance.md). A benchmark, not a test: it prints, it does not
assert. Data sits in the page cache (each tool runs after a warm-up read).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REXEC = [str(REPO / ".venv" / "bin" / "rexec")]
DVC = Path(os.environ.get("DVC", "/tmp/dvcvenv/bin/dvc"))


@dataclass(frozen=True)
class Result:
    seconds: float
    peak_rss_mb: float
    rc: int


def run(
    cmd: list[str] | str, *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Result:
    """Run a child, measuring wall time and its peak RSS."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        shell=isinstance(cmd, str),
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0 and proc.stderr is not None:
        print(f"  ! {cmd} exited {rc}: {proc.stderr.read().decode()[-500:]}", file=sys.stderr)
    return Result(seconds, usage.ru_maxrss / 1024, rc)


def reported_seconds(cmd: list[str], *, env: dict[str, str]) -> float:
    """The hashing time rexec reports in its --json (process start-up and output excluded)."""
    out = subprocess.run([*cmd, "--json"], env=env, check=True, capture_output=True, text=True)
    return float(json.loads(out.stdout)["seconds"])


def best(cmd: list[str] | str, *, repeat: int = 3, **kw: object) -> Result:
    results = [run(cmd, **kw) for _ in range(repeat)]  # type: ignore[arg-type]
    return min(results, key=lambda r: r.seconds)


def sha256_single_core(path: Path) -> float:
    """Seconds for plain hashlib over one file, 1 MiB reads: the sha256 ceiling on one core."""
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    t0 = time.perf_counter()
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return time.perf_counter() - t0


def sequential_loop(root: Path) -> float:
    """A plain single-thread walk-open-read-hash loop over every file."""
    t0 = time.perf_counter()
    for dirpath, _dirs, names in os.walk(root):
        for n in sorted(names):
            with open(os.path.join(dirpath, n), "rb") as f:
                hashlib.sha256(f.read()).digest()
    return time.perf_counter() - t0


def make_files(root: Path, *, count: int, size: int, per_dir: int = 1000) -> None:
    payload = os.urandom(size)
    for i in range(count):
        d = root / f"d{i // per_dir:04d}"
        if i % per_dir == 0:
            d.mkdir(parents=True)
        with open(d / f"f{i:07d}", "wb") as f:
            f.write(payload[: size - 8] + i.to_bytes(8, "little") if size >= 8 else payload)


def warm(root: Path) -> None:
    subprocess.run(
        f"find {root} -type f -print0 | xargs -0 cat > /dev/null", shell=True, check=True
    )


def row(label: str, r: Result, *, nbytes: int | None = None, note: str = "") -> None:
    rate = f"{nbytes / r.seconds / 1e9:6.2f} GB/s" if nbytes else " " * 11
    print(f"  {label:<44} {r.seconds:8.2f} s  {rate}  RSS {r.peak_rss_mb:7.0f} MB  {note}")


def rexec_env(cache: Path) -> dict[str, str]:
    return os.environ | {"REXEC_CACHE_DIR": str(cache)}


def bench_big(work: Path, size: int) -> None:
    root = work / "big"
    root.mkdir()
    print(f"\n== one file of {size / 2**30:.2f} GiB ==")
    with open(root / "data.bin", "wb") as f:
        chunk = os.urandom(1 << 24)
        for _ in range(size // len(chunk)):
            f.write(chunk)
    warm(root)
    env = rexec_env(work / "cache-big")
    base = min(sha256_single_core(root / "data.bin") for _ in range(3))
    label = "hashlib sha256, one core (in-script)"
    print(f"  {label:<44} {base:8.2f} s  {size / base / 1e9:6.2f} GB/s")
    r = best([*REXEC, "snapshot", "hash", str(root), "-q", "--rehash"], env=env)
    row(
        "rexec snapshot hash (sha256)",
        r,
        nbytes=size,
        note=f"{base / r.seconds:.2f}x hashlib (target >= 0.90)",
    )
    row("sha256sum", best(["sha256sum", str(root / "data.bin")]), nbytes=size)
    b3 = best(["b3sum", str(root / "data.bin")]) if shutil.which("b3sum") else None
    if b3:
        row("b3sum (all cores)", b3, nbytes=size)
    cmd = [*REXEC, "snapshot", "hash", str(root), "-q", "--rehash", "--algo", "blake3"]
    r = best(cmd, env=env)
    note = f"{b3.seconds / r.seconds:.2f}x b3sum (target >= 0.80)" if b3 else "b3sum not installed"
    row("rexec snapshot hash --algo blake3", r, nbytes=size, note=note)
    inner = min(reported_seconds(cmd, env=env) for _ in range(3))
    label = "  its hashing alone (--json seconds)"
    if inner <= 0:  # the JSON reports milliseconds; a smoke-sized file hashes in less
        print(f"  {label:<44} < 0.001 s (below the JSON's resolution)")
    else:
        note = f"{b3.seconds / inner:.2f}x b3sum's whole run" if b3 else ""
        rate = f"{size / inner / 1e9:6.2f} GB/s"
        print(f"  {label:<44} {inner:8.2f} s  {rate}  {'':>14}  {note}")
    shutil.rmtree(root)


def bench_many(work: Path, count: int) -> None:
    root = work / "many"
    print(f"\n== {count:,} files of 4 KiB ==")
    make_files(root, count=count, size=4096)
    warm(root)
    env = rexec_env(work / "cache-many")
    seq = min(sequential_loop(root) for _ in range(3))
    print(f"  {'sequential single-thread loop (in-script)':<44} {seq:8.2f} s")
    cold = best([*REXEC, "snapshot", "hash", str(root), "-q", "--rehash"], env=env)
    row("rexec sha256, no cache", cold, note=f"{seq / cold.seconds:.2f}x the loop (target >= 1.5)")
    row(
        "rexec blake3, no cache",
        best(
            [*REXEC, "snapshot", "hash", str(root), "-q", "--rehash", "--algo", "blake3"], env=env
        ),
    )
    row(
        "find -exec sha256sum {} +", best(f"find {root} -type f -exec sha256sum {{}} + > /dev/null")
    )
    if shutil.which("b3sum"):
        row("find -exec b3sum {} +", best(f"find {root} -type f -exec b3sum {{}} + > /dev/null"))
    time.sleep(1.2)  # files older than the cache's 1 s "racily clean" margin
    run([*REXEC, "snapshot", "hash", str(root), "-q"], env=env)  # fills the cache
    hot = best([*REXEC, "snapshot", "hash", str(root), "-q"], env=env, repeat=5)
    limit = best(f"find {root} -printf '%s %T@\\n' > /dev/null", repeat=5)
    row("find -printf size+mtime (walk-and-stat limit)", limit)
    row(
        "rexec sha256, warm cache (nothing changed)",
        hot,
        note=f"{hot.seconds / cold.seconds:.2f}x --rehash (target <= 0.4), "
        f"{hot.seconds / limit.seconds:.2f}x the limit (target <= 1.5)",
    )
    if DVC.exists():
        dvc_env = os.environ | {"DVC_NO_ANALYTICS": "1"}
        run([str(DVC), "init", "--no-scm", "-q"], cwd=work, env=dvc_env)
        row(
            "dvc add (hash + cache copy/link)",
            run([str(DVC), "add", "-q", str(root)], cwd=work, env=dvc_env),
        )
        row("dvc status (nothing changed)", best([str(DVC), "status", "-q"], cwd=work, env=dvc_env))
        shutil.rmtree(work / ".dvc", ignore_errors=True)
    else:
        print(f"  dvc: not installed at {DVC}")
    shutil.rmtree(root)


def bench_tiny(work: Path, count: int) -> None:
    root = work / "tiny"
    print(f"\n== {count:,} tiny files (8 bytes) ==")
    make_files(root, count=count, size=8)
    env = rexec_env(work / "cache-tiny")
    cold = run([*REXEC, "snapshot", "hash", str(root), "-q", "--rehash"], env=env)
    row("rexec sha256, no cache", cold, note="target: peak RSS <= 300 MB")
    time.sleep(1.2)
    row("rexec sha256, filling cache", run([*REXEC, "snapshot", "hash", str(root), "-q"], env=env))
    row("rexec sha256, warm cache", run([*REXEC, "snapshot", "hash", str(root), "-q"], env=env))
    shutil.rmtree(root)


def main() -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench snapshot", description=__doc__)
    ap.add_argument("--small", action="store_true", help="quick run at reduced sizes")
    ap.add_argument(
        "--smoke", action="store_true", help="tiny sizes, seconds in all: proves it runs (CI)"
    )
    ap.add_argument("--only", choices=("big", "many", "tiny"), help="run one part")
    ap.add_argument(
        "--dir", type=Path, default=None, help="where to build the data (default: a tmp dir)"
    )
    args = ap.parse_args()
    big, many, tiny = (
        (4 << 20, (200,), 1_000)
        if args.smoke
        else (128 << 20, (5_000,), 20_000)
        if args.small
        else (2 << 30, (50_000, 100_000), 1_000_000)
    )
    work = Path(tempfile.mkdtemp(prefix="rexec-bench-", dir=args.dir))
    print(f"rexec snapshot bench: {os.cpu_count()} cores, data in {work}")
    empty = work / "empty"
    empty.mkdir()
    row(
        "rexec snapshot hash EMPTY_DIR (start-up)",
        best(
            [*REXEC, "snapshot", "hash", str(empty), "-q", "--rehash"], env=rexec_env(work / "c0")
        ),
    )
    try:
        if args.only in (None, "big"):
            bench_big(work, big)
        if args.only in (None, "many"):
            for count in many:
                bench_many(work, count)
        if args.only in (None, "tiny"):
            bench_tiny(work, tiny)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
