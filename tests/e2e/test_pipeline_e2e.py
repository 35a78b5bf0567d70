"""Pipelines through the real `rexec` and Docker: run, reuse, regenerate, prune, contracts.

extract → validate (a data contract on extract's table) → train-a (reads x) and
train-b (reads y) → evaluate (train-a's model, plus a pinned labels snapshot) and
inspect-b (train-b's model). A correction of one x value changes train-a's
branch and leaves train-b's outputs identical, so inspect-b is pruned.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from executor.errors import ExitCode
from executor.runtime import RUN_LABEL
from tests.e2e.conftest import NO_FRAMEWORKS, Rexec, gen, pinned, spec, statement

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

READ = "import csv; rows = list(csv.DictReader(open('/data/rows.csv')))"
JOBS = {
    "extract": (
        "import os, shutil; os.makedirs('/outputs/table');"
        " shutil.copy('/data/raw.csv', '/outputs/table/rows.csv')"
    ),
    "validate": (
        "import os, shutil; os.makedirs('/outputs/clean');"
        " shutil.copy('/data/rows.csv', '/outputs/clean/rows.csv')"
    ),
    "train-a": (
        f"{READ}; import os, json; os.makedirs('/outputs/model'); w = json.load(open(os.environ['REXEC_PARAMS']))['w'];"
        " m = w * sum(float(r['x']) for r in rows) / len(rows);"
        " open('/outputs/model/w.txt', 'w').write(repr(m)); json.dump({'mean_x': m}, open('/outputs/metrics.json', 'w'))"
    ),
    "train-b": (
        f"{READ}; import os, json; os.makedirs('/outputs/model'); m = sum(float(r['y']) for r in rows) / len(rows);"
        " open('/outputs/model/w.txt', 'w').write(repr(m)); json.dump({'mean_y': m}, open('/outputs/metrics.json', 'w'))"
    ),
    "evaluate": (
        "import json; w = float(open('/data/w.txt').read()); n = len(open('/labels/l.txt').read().split());"
        " json.dump({'score': w / 100 + n}, open('/outputs/eval.json', 'w'))"
    ),
    "inspect-b": "open('/outputs/summary.txt', 'w').write(open('/data/w.txt').read())",
}
READS = {  # stage -> (upstream stage, its output directory)
    "validate": ("extract", "table"),
    "train-a": ("validate", "clean"),
    "train-b": ("validate", "clean"),
    "evaluate": ("train-a", "model"),
    "inspect-b": ("train-b", "model"),
}
CONTRACT: dict[str, Any] = {
    "files": "*.csv",
    "min_rows": 3,
    "columns": {
        "id": {"type": "int"},
        "x": {"type": "float", "min": 0, "max": 100},
        "y": {"type": "float"},
    },
}
ROWS = "id,x,y\n1,10,1.5\n2,20,2.5\n3,30,3.5\n4,40,4.5\n"


def write_raw(path: Path, text: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "raw.csv").write_text(text)
    return path


class Project:
    """The pipeline's specs and data in a temporary directory."""

    def __init__(self, rexec: Rexec, root: Path, keys: tuple[Path, Path]) -> None:
        self.rexec, self.root, self.keys = rexec, root, keys
        self.runs = root / "runs"
        self.raw = write_raw(root / "raw", ROWS)
        labels = root / "labels"
        labels.mkdir()
        (labels / "l.txt").write_text("cat dog\n")
        for name, job in JOBS.items():
            inputs: list[dict[str, Any]]
            if name == "extract":
                inputs = [pinned(rexec, "data", self.raw, "/data")]
            else:
                up, directory = READS[name]
                upstream = {"name": "data", "from": f"latest:{up}:{directory}", "mount": "/data"}
                inputs = [{**upstream, "contract": CONTRACT} if name == "validate" else upstream]
            if name == "evaluate":
                inputs.append(pinned(rexec, "labels", labels, "/labels"))
            params = {"params": {"w": 1}} if name == "train-a" else {}
            doc = spec(
                name, ["python3", "-c", job], inputs=inputs, determinism=NO_FRAMEWORKS, **params
            )
            gen(root / f"{name}.toml", doc)
        order = ("evaluate", "inspect-b", "train-a", "train-b", "validate", "extract")
        gen(
            root / "pipeline.toml",
            {"version": 1, "name": "demo", "stages": [f"{n}.toml" for n in order]},
        )

    def trust(self) -> list[str | Path]:
        return ["--key", self.keys[1], "--signing-key", self.keys[0], "--runs-dir", self.runs]

    def pipeline(self, *more: str, check: int | None = 0) -> Any:
        out = self.rexec(
            "pipeline",
            "run",
            self.root / "pipeline.toml",
            *self.trust(),
            "--json",
            "-q",
            *more,
            check=check,
        )
        return json.loads(out.stdout) if out.stdout.strip() else out

    def regenerate(self, new: Path, *more: str | Path, check: int | None = 0) -> Any:
        old = self.rexec("snapshot", "hash", self.raw, "--quiet").stdout.strip()
        return self.rexec(
            "regenerate", old, "--with", new, *self.trust(), "--json", "-q", *more, check=check
        )


@pytest.fixture
def project(rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path) -> Project:
    return Project(rexec, tmp_path / "p", keys)


def decisions(doc: dict[str, Any]) -> dict[str, str]:
    return {s["stage"]: s["decision"] for s in doc["stages"]}


def a_new_second() -> float:
    """A time after every event so far: the engine filters events by whole seconds."""
    time.sleep(1.1)
    return time.time()


def containers_started(since: float) -> list[dict[str, Any]]:
    """rexec job containers the engine created since ``since`` (a run or a rerun: any spec)."""
    import docker

    events = docker.from_env().events(
        since=int(since),
        until=int(time.time()) + 1,
        decode=True,
        filters={"type": "container", "event": "create", "label": RUN_LABEL},
    )
    return list(events)


def test_first_run_runs_all_second_reuses_all_without_a_container(project: Project) -> None:
    since = a_new_second()
    first = project.pipeline()
    assert len(containers_started(since)) == 6  # the check below can see a container
    assert list(decisions(first)) == [
        "extract",
        "validate",
        "train-a",
        "train-b",
        "evaluate",
        "inspect-b",
    ]
    assert set(decisions(first).values()) == {"ran"}
    since = a_new_second()
    second = project.pipeline()
    assert set(decisions(second).values()) == {"reused"}
    assert [s["runId"] for s in second["stages"]] == [s["runId"] for s in first["stages"]]
    assert containers_started(since) == []  # proved by the engine, not by rexec
    ledger = statement(Path(second["ledger"]))  # the signed stage cache
    assert ledger["predicateType"] == "https://rexec.dev/pipeline/v1"
    assert {s["name"] for s in ledger["subject"]} == {f"stage/{n}" for n in JOBS}
    assert (Path(second["ledger"]) / "statement.sigstore.json").is_file()
    forced = project.pipeline("--force", "train-b")
    assert decisions(forced)["train-b"] == "ran" and decisions(forced)["train-a"] == "reused"
    plan = project.pipeline("--dry-run")
    assert set(decisions(plan).values()) == {"would-reuse"} and plan["ledger"] is None


def test_a_pipeline_run_is_one_row_with_its_stages_in_the_catalog_and_the_web_view(
    project: Project,
) -> None:
    """The ledger listed each stage as its own run: a pipeline run is now one row (its
    signed ledger), each stage naming what was decided and linking to its run."""
    from executor import catalog, web

    first = project.pipeline()
    location = Path(project.rexec.env["REXEC_CACHE_DIR"]) / "catalog.sqlite"
    cat = catalog.open_catalog(location, create=False)
    try:
        (row,) = catalog.pipeline_runs(cat, limit=10)
    finally:
        cat.close()
    assert row["kind"] == "pipeline" and row["path"] == first["ledger"] and row["signed"] == 1
    assert row["verification"] is None  # indexed as it finished: a claim until verified
    assert [(s["stage"], s["decision"], s["run_id"], s["status"]) for s in row["stages"]] == [
        (s["stage"], "ran", s["runId"], "succeeded") for s in first["stages"]
    ]
    project.rexec(
        "catalog", "index", project.runs, "--rebuild", "--verify", "--key", project.keys[1]
    )
    client = web.create_app(str(location), hosts=["localhost"]).test_client()
    page = client.get("/pipelines", headers={"Host": "localhost"}).data.decode()
    assert page.count('<span class="stage ok"') == len(first["stages"]) == 6
    for stage in first["stages"]:
        assert f'href="/run/{stage["runId"]}"' in page
    assert "signed, verified by key" in page
    listed = json.loads(project.rexec("runs", "--pipeline", row["id"], "--json").stdout)["runs"]
    assert sorted(r["run_id"] for r in listed) == sorted(s["runId"] for s in first["stages"])


def test_unpinned_stage_specs_are_pinned_by_the_run_that_is_asked_to(project: Project) -> None:
    """Every stage spec had to be pinned by hand: `pipeline run --allow-unpinned` pins each
    one as `rexec lock` would, and each stage's record says what was pinned."""
    import tomllib

    import tomli_w

    for name in ("extract", "evaluate"):
        path = project.root / f"{name}.toml"
        doc = tomllib.loads(path.read_text())
        for item in doc["inputs"]:
            item.pop("digest", None)  # as a user writes it: a path, no pin
        path.write_text(tomli_w.dumps(doc))
    refused = project.pipeline(check=ExitCode.BAD_INPUT)
    assert "the input is not pinned" in refused.stderr and "--allow-unpinned" in refused.stderr
    assert "no such input" not in refused.stderr
    done = project.pipeline("--allow-unpinned")
    assert set(decisions(done).values()) == {"ran"}
    steps = {s["stage"]: s for s in done["stages"]}
    internal = statement(project.runs / steps["extract"]["runId"])["predicate"]["buildDefinition"][
        "internalParameters"
    ]
    (pin,) = internal["pinnedAtRunTime"]["pins"]
    assert pin["key"] == "inputs[0].digest" and pin["old"] is None
    assert pin["new"] == project.rexec("snapshot", "hash", project.raw, "-q").stdout.strip()


def test_variants_are_stage_runs_of_their_own_and_downstream_follows_each(
    project: Project,
) -> None:
    """Two learning rates needed two near-identical specs: one `[variants.STAGE]` table makes
    each combination its own stage run, and the stage that reads it runs once per variant."""
    path = project.root / "pipeline.toml"
    path.write_text(path.read_text() + "\n[variants.train-a]\nw = [1, 2]\n")
    done = project.pipeline()
    got = decisions(done)
    assert got["train-a[w=1]"] == got["train-a[w=2]"] == "ran" and "train-a" not in got
    assert {"evaluate[train-a[w=1]]", "evaluate[train-a[w=2]]"} <= set(got)
    steps = {s["stage"]: s for s in done["stages"]}
    scores = {
        w: json.loads(
            (
                project.runs / steps[f"evaluate[train-a[w={w}]]"]["runId"] / "outputs" / "eval.json"
            ).read_text()
        )["score"]
        for w in (1, 2)
    }
    assert scores[2] - scores[1] == pytest.approx(25.0 / 100)  # mean x 25, doubled by w = 2
    a, b = steps["train-a[w=1]"]["runId"], steps["train-a[w=2]"]["runId"]
    shown = json.loads(project.rexec("compare", a, b, "--json").stdout)
    rows = {r["key"]: r["values"] for r in shown["rows"]}
    assert rows["params.w"] == [1, 2] and "name" not in rows  # one name: side by side
    refused = project.pipeline("--param", "train-b.nothing=1", check=ExitCode.BAD_INPUT)
    assert "--param nothing: no such parameter in [params]" in refused.stderr


def test_a_reused_stage_must_verify(project: Project) -> None:
    first = project.pipeline()
    extract = Path(first["stages"][0]["runDir"])
    (extract / "outputs" / "table" / "rows.csv").write_text(
        "id,x,y\n9,9,9\n"
    )  # edited after signing
    again = project.pipeline()
    (step,) = [s for s in again["stages"] if s["stage"] == "extract"]
    assert step["decision"] == "ran" and "did not verify" in step["reason"]
    (refused,) = step["details"]
    assert refused.startswith(first["stages"][0]["runId"]) and "differ from the signed" in refused
    assert decisions(again)["validate"] == "reused"  # extract's new outputs are the same bytes


def test_a_correction_regenerates_what_it_touches_and_prunes_what_it_does_not(
    project: Project,
) -> None:
    first = project.pipeline()
    fixed = write_raw(project.root / "raw-fixed", ROWS.replace("3,30,3.5", "3,33,3.5"))
    report = project.root / "regeneration.html"
    doc = json.loads(project.regenerate(fixed, "--report", report).stdout)
    assert doc["schema"] == "rexec.regeneration/v1"
    got = decisions(doc)
    assert got == {
        "extract": "regenerated",
        "validate": "regenerated",
        "train-a": "regenerated",
        "train-b": "regenerated",
        "evaluate": "regenerated",
        "inspect-b": "pruned",
    }
    steps = {s["stage"]: s for s in doc["stages"]}
    assert all(o["same"] for o in steps["train-b"]["outputs"])  # y did not change
    (mean,) = [m for m in steps["train-a"]["metrics"] if m["key"] == "mean_x"]
    assert (mean["before"], mean["after"]) == (25.0, 25.75)
    html = report.read_text()
    assert "pruned" in html and "25.75" in html and "default-src 'none'" in html
    new_train = Path(steps["train-a"]["runDir"])
    lineage = statement(new_train)["predicate"]["buildDefinition"]["internalParameters"]["lineage"]
    assert lineage["regeneration"]["id"] == doc["id"]
    assert lineage["regeneration"]["upstreamRuns"] == [steps["validate"]["runId"]]
    assert lineage["derivedFrom"] == steps["train-a"]["oldRun"]
    shown = json.loads(project.rexec("show", steps["train-a"]["oldRun"], "--json").stdout)
    (newer,) = shown["supersededBy"]  # the regeneration verified it, so it counts
    assert (newer["run_id"], newer["verified"]) == (steps["train-a"]["runId"], True)
    assert json.loads(project.rexec("log", "--stale", "--json").stdout)["runs"] == []
    old = {s["stage"]: s["runId"] for s in first["stages"]}
    assert (project.runs / old["train-a"] / "statement.json").is_file()  # the old record stays
    # the unchanged specs again: a superseded run came back silently; now it is said, and
    # the stage runs (what was not superseded, the pruned inspect-b, is still reused)
    kept = project.pipeline("--reuse-superseded", "--dry-run")
    assert set(decisions(kept).values()) == {"would-reuse"}  # the old behaviour, asked for
    again = project.rexec(
        "pipeline", "run", project.root / "pipeline.toml", *project.trust(), "--json"
    )
    rerun = decisions(json.loads(again.stdout))
    assert rerun["extract"] == "ran" and rerun["inspect-b"] == "reused"
    assert (
        f"warning: {old['extract']} was superseded by {steps['extract']['runId']}" in again.stderr
    )


def test_a_correction_that_breaks_the_contract_halts_before_training(project: Project) -> None:
    project.pipeline()
    broken = write_raw(project.root / "raw-broken", ROWS.replace("3,30,3.5", "3,500,3.5"))
    since = a_new_second()
    out = project.regenerate(broken, check=4)
    assert "rows.csv: column 'x': max 100, found 500" in out.stderr
    doc = json.loads(out.stdout)
    assert (
        decisions(doc)["extract"] == "regenerated"
        and decisions(doc)["validate"] == "contract-violated"
    )
    assert {decisions(doc)[n] for n in ("train-a", "train-b", "evaluate", "inspect-b")} == {
        "skipped"
    }
    (only,) = containers_started(since)  # extract's rerun; nothing after the contract check
    assert only["Actor"]["Attributes"][RUN_LABEL] == doc["stages"][0]["runId"]
    stale = {
        r["name"] for r in json.loads(project.rexec("log", "--stale", "--json").stdout)["runs"]
    }
    assert stale == {"validate", "train-a", "train-b", "evaluate", "inspect-b"}


def test_a_missing_pin_aborts_before_any_container(project: Project) -> None:
    project.pipeline()
    shutil.rmtree(project.root / "labels")
    fixed = write_raw(project.root / "raw-fixed", ROWS.replace("3,30,3.5", "3,33,3.5"))
    since = a_new_second()
    out = project.regenerate(fixed, check=2)
    assert "cannot be regenerated; nothing ran" in out.stderr and "labels" in out.stderr
    assert containers_started(since) == []
    assert (
        not (project.runs / "pipelines").exists()
        or len(list((project.runs / "pipelines").iterdir())) == 1
    )
