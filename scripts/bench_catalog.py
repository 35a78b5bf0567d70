"""`scripts/bench catalog [--runs N ...] [--smoke]`: what the catalog costs, measured.

1. Lineage and log queries over synthetic catalogs of 10,000 and 100,000 runs
   (chains of prepare → train → evaluate, each run pinning the tree its
   upstream signed; metrics and params on every run): `lineage --downstream`
   of a root, `lineage --upstream` of a leaf, `log --where "metrics.acc > 0.9"`.
   Targets: ≤ 100 ms each at 100,000 runs on SQLite; the same queries on PostgreSQL
   (a fresh database on --postgres URL, default $REXEC_BENCH_POSTGRES or the test
   server scripts/test starts, $REXEC_TEST_POSTGRES) within 2 × of SQLite.
2. Incremental `catalog index` of 1,000 new records beside 1,000 known ones
   (real record directories, cloned from one real run and given new ids).
3. The catalog hook's added time per `rexec run` (indexing one record), against
   the same record's `load_record` alone. Target: ≤ 20 ms.
4. Charts: a real run whose stdout has 100,000 steps of one metric, its run page
   (the series read from the signed log, checked against its digest, and drawn) against
   hashing the log alone (the floor: every byte must be read). Target: ≤ 0.5 s.
5. The ledger with metric columns at 100,000 runs, loaded in headless Chromium (when
   /usr/bin/chromium is there): navigation start to the load event. Target: ≤ 0.3 s.

The peer for (1) is the same query as plain SQL without the recursive walk
(an index lookup), printed beside. A benchmark, not a test: it prints.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from executor import catalog  # noqa: E402  (after the path: the bench runs from a checkout)
from executor.record.reader import load_record  # noqa: E402

REXEC = [str(REPO / ".venv" / "bin" / "python"), "-m", "executor"]
BASE_REF_FILE = REPO / "build" / "base" / "registry-ref"
JOB = "import json; json.dump({'acc': 1}, open('/outputs/m.json', 'w'))"


def tree(i: int, role: str) -> str:
    return f"sha256-tree-v1:{(str(i) + role).encode().hex().ljust(64, '0')[:64]}"


def synthetic(n: int) -> list[dict[str, list[dict[str, object]]]]:
    """``n`` runs in chains of three: prepare(i) → train(i) → evaluate(i)."""
    batch = []
    for i in range(n):
        stage = ("prepare", "train", "evaluate")[i % 3]
        chain = i // 3
        run_id = f"20261201T000000Z-{stage}-{i:08d}"
        key = {"statement_sha256": f"{i:064x}", "run_id": run_id}
        upstream = tree(chain, ("raw", "dataset", "model")[i % 3])
        produced = tree(chain, ("dataset", "model", "report")[i % 3])
        batch.append(
            {
                "runs": [
                    {
                        **key,
                        "name": stage,
                        "kind": "run",
                        "status": "succeeded",
                        "started": f"2026-12-01T00:00:{i % 60:02d}.{i:09d}Z",
                        "seed": i % 7,
                        "path": f"/runs/{run_id}",
                    }
                ],
                "inputs": [{**key, "name": "data", "digest": upstream, "role": "input"}],
                "outputs": [{**key, "name": "outputs/x/", "digest": produced, "role": "tree"}],
                "params": [
                    {**key, "key": "lr", "value": "0.01", "num": 0.01, "overridden": 0},
                    {**key, "key": "opt", "value": f'"{("adam", "sgd", "lion")[chain % 3]}"'},
                ],
                "metrics": [
                    {
                        **key,
                        "file": "m.json",
                        "key": "acc",
                        "value": (i % 1000) / 1000,
                        "file_digest": f"sha256:{i:064x}",
                    }
                ],
            }
        )
    return batch


def best_ms(fn: object, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return min(times) * 1000


@contextlib.contextmanager
def fresh_database(server: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server at ``server``, dropped after."""
    import psycopg

    name = f"rexec_bench_{os.getpid()}_{time.monotonic_ns()}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def queries(location: str, n: int, label: str) -> dict[str, float]:
    cat = catalog.open_catalog(location)
    t0 = time.perf_counter()
    cat.put_many(synthetic(n))
    cat.optimize()  # as `rexec catalog index` does after a pass
    fill = time.perf_counter() - t0
    root = "20261201T000000Z-prepare-00000000"
    leaf = "20261201T000000Z-evaluate-00000002"
    down = best_ms(lambda: catalog.lineage(cat, root, direction="downstream"))
    up = best_ms(lambda: catalog.lineage(cat, leaf, direction="upstream"))
    where = best_ms(lambda: catalog.log(cat, where=["metrics.acc > 0.998"], limit=50))
    digest = tree(n // 6, "model")  # a full digest, mid-catalog
    by_digest = best_ms(lambda: catalog.lineage(cat, digest, direction="downstream"))
    shown = best_ms(lambda: catalog.show(cat, digest))
    text = best_ms(lambda: catalog.log(cat, where=["params.opt = lion"], limit=50))
    train = n // 6 * 3 + 1  # a train run mid-catalog: its page is show_record's answer
    page = best_ms(lambda: catalog.show_record(cat, f"{train:064x}"))
    peer = best_ms(
        lambda: cat.rows("SELECT statement_sha256 FROM inputs WHERE digest = ?", [tree(0, "model")])
    )
    cat.close()
    print(f"\n== {n:,} runs on {label} (filled in {fill:.1f} s) ==")
    print(f"  lineage --downstream of a root      {down:8.2f} ms   (target <= 100)")
    print(f"  lineage --upstream of a leaf        {up:8.2f} ms   (target <= 100)")
    print(f"  log --where metrics.acc > 0.998     {where:8.2f} ms   (target <= 100)")
    print(f"  lineage of a full digest            {by_digest:8.2f} ms   (target <= 5)")
    print(f"  show of a full digest               {shown:8.2f} ms   (target <= 5)")
    print(f"  log --where params.opt = lion       {text:8.2f} ms   (target <= 5)")
    print(f"  a run page's question (show_record) {page:8.2f} ms   (target <= 50)")
    print(f"  one indexed lookup (peer)           {peer:8.2f} ms")
    return {"down": down, "up": up, "where": where}


def both_backends(work: Path, n: int, postgres: str | None) -> None:
    lite = queries(str(work / f"catalog-{n}.sqlite"), n, "SQLite")
    ledger_in_browser(str(work / f"catalog-{n}.sqlite"), n)
    if postgres is None:
        print("  (no PostgreSQL server: pass --postgres URL to measure that backend)")
        return
    with fresh_database(postgres) as url:
        pg = queries(url, n, "PostgreSQL")
    ratios = ", ".join(f"{k} {pg[k] / lite[k]:.2f}x" for k in ("down", "up", "where"))
    worst = max(pg.values())
    verdict = "met" if worst <= 200 else "NOT met"
    print(f"  PostgreSQL / SQLite: {ratios} (a sub-ms query is mostly the server round trip)")
    print(f"  slowest on PostgreSQL {worst:.2f} ms: target <= 200 ms (2 x SQLite's 100): {verdict}")


def one_real_record(work: Path) -> Path:
    data = work / "data"
    data.mkdir()
    (data / "x.txt").write_text("x\n")
    digest = subprocess.run(
        [*REXEC, "snapshot", "hash", str(data), "-q"], check=True, capture_output=True, text=True
    ).stdout.strip()
    spec = work / "spec.toml"
    spec.write_text(
        textwrap.dedent(f"""\
        version = 1
        name = "bench"
        [image]
        ref = "{BASE_REF_FILE.read_text().strip()}"
        [run]
        command = ["python3", "-c", "{JOB}"]
        seed = 1
        [[inputs]]
        name = "data"
        path = "data"
        digest = "{digest}"
        mount = "/data"
        [determinism]
        frameworks = []
        [signing]
        method = "none"
        """)
    )
    return real_run(work, spec)


def real_run(work: Path, spec: Path) -> Path:
    """`rexec run SPEC` in the bench's own cache; the record's directory."""
    env = {"REXEC_CACHE_DIR": str(work / "cache"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [*REXEC, "run", str(spec), "--runs-dir", str(work / "runs"), "--json", "-q"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"scripts/bench: the run of {spec.name} failed:\n{proc.stderr}")
    return Path(json.loads(proc.stdout)["run_dir"])


def clone(record: Path, target: Path, i: int) -> None:
    run_id = f"20261201T000000Z-clone-{i:08d}"
    shutil.copytree(record, target / run_id)
    statement = target / run_id / "statement.json"
    doc = json.loads(statement.read_text())
    doc["predicate"]["runDetails"]["metadata"]["invocationId"] = run_id
    statement.write_text(json.dumps(doc))


def indexing(work: Path, new: int) -> None:
    record = one_real_record(work)
    runs = work / "clones"
    runs.mkdir()
    for i in range(new):
        clone(record, runs, i)
    cat = catalog.open_catalog(work / "index.sqlite")
    catalog.index_records(cat, catalog.find_records([runs]))  # the known ones
    for i in range(new, 2 * new):
        clone(record, runs, i)
    t0 = time.perf_counter()
    report = catalog.index_records(cat, catalog.find_records([runs]))
    incremental = time.perf_counter() - t0
    cat.close()
    print(f"\n== incremental index: {report.added} new beside {report.unchanged} known ==")
    per = incremental / new * 1000
    print(f"  catalog index                       {incremental:8.2f} s ({per:.2f} ms a record)")
    hook = statistics.median(
        best_ms(lambda: catalog.remember(record, say=lambda t: None), repeat=1) for _ in range(9)
    )
    load = statistics.median(best_ms(lambda: load_record(record), repeat=1) for _ in range(9))
    print(f"  the hook per run (index one record) {hook:8.2f} ms   (target <= 20)")
    print(f"  of which load_record (peer)         {load:8.2f} ms")


CURVE_JOB = (
    "import math, sys\n"
    "n = int(sys.argv[1])\n"
    "sys.stdout.writelines(f'step {s} loss {math.exp(-s / n) + 0.01 * math.sin(s):.6f}\\n'"
    " for s in range(n))\n"
)


def curve_record(work: Path, steps: int) -> Path:
    """A real run (the base image, signed with none) printing ``steps`` lines of a loss."""
    spec = work / "curve.toml"
    spec.write_text(
        textwrap.dedent(f"""\
        version = 1
        name = "curve"
        [image]
        ref = "{BASE_REF_FILE.read_text().strip()}"
        [run]
        command = ["python3", "-c", {json.dumps(CURVE_JOB)}, "{steps}"]
        seed = 1
        [determinism]
        frameworks = []
        [signing]
        method = "none"
        [[metrics]]
        stdout = '^step (?P<step>\\d+) loss (?P<loss>\\S+)'
        summary = "min"
        """)
    )
    return real_run(work, spec)


def charting(work: Path, steps: int) -> None:
    from executor import web
    from executor.web import charts, plots

    record = curve_record(work, steps)
    log = record / "logs" / "stdout.log"
    app = web.create_app(str(work / "cache" / "catalog.sqlite"), hosts=["localhost"])
    client = app.test_client()

    def page() -> None:
        response = client.get(f"/run/{record.name}", headers={"Host": "localhost"})
        assert response.status_code == 200 and b'class="curve"' in response.data

    (series,) = plots.series_at(record)
    read = best_ms(lambda: plots.series_at(record), repeat=3)
    draw = best_ms(lambda: charts.curves("loss", [charts.Line("r", series.steps, series.values)]))
    whole = best_ms(page, repeat=3)
    floor = best_ms(lambda: hashlib.sha256(log.read_bytes()).hexdigest())
    size = log.stat().st_size / 1e6
    print(f"\n== a run with {len(series.values):,} steps of one metric ({size:.1f} MB of log) ==")
    print(f"  the run page, served                {whole:8.1f} ms   (target <= 500)")
    print(f"  of which reading the series         {read:8.1f} ms")
    print(f"  of which drawing it                 {draw:8.1f} ms")
    print(f"  hashing the log alone (the floor)   {floor:8.1f} ms   ({whole / floor:.1f}x)")


def ledger_in_browser(location: str, n: int) -> None:
    """The ledger of the train runs with their metric and param columns, in Chromium."""
    if not Path("/usr/bin/chromium").exists():
        print("  (no /usr/bin/chromium: the ledger's load in a browser is not measured)")
        return
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    proc = subprocess.Popen(
        [*REXEC, "ui", "--catalog", location, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        url = (proc.stdout.readline() if proc.stdout else "").split()[2].rstrip("/")
        times = []
        for _ in range(5):
            driver.get(f"{url}/?name=train")
            times.append(
                driver.execute_script(
                    "const t = performance.getEntriesByType('navigation')[0];"
                    " return t.loadEventEnd - t.startTime;"
                )
            )
        columns = len(driver.find_elements("css selector", "#runs th.num"))
    finally:
        driver.quit()
        proc.terminate()
        proc.wait(timeout=10)
    print(f"  the ledger in Chromium ({columns} metric/param columns, {n:,} runs)"
          f" {min(times):6.1f} ms   (target <= 300)")  # fmt: skip


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench catalog", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--runs", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--new", type=int, default=1000, help="records for the incremental index")
    parser.add_argument("--steps", type=int, default=100_000, help="steps of the charted run")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: proves it runs (CI)")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=os.environ.get("REXEC_BENCH_POSTGRES") or os.environ.get("REXEC_TEST_POSTGRES"),
        help="a PostgreSQL server whose user may create databases (one is made and dropped)",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.runs, args.new, args.steps = [300], 20, 1000
    with tempfile.TemporaryDirectory(prefix="rexec-bench-catalog-") as tmp:
        work = Path(tmp)
        os.environ["REXEC_CACHE_DIR"] = str(work / "cache")  # the hook's catalog, not yours
        os.environ.pop("REXEC_CATALOG", None)
        for n in args.runs:
            both_backends(work, n, args.postgres)
        indexing(work, args.new)
        charting(work, args.steps)
    print("\ncatalog bench done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
