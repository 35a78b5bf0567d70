"""The catalog over real runs: a prepare → train → evaluate chain linked by digest.

Every test runs once per backend (``catalog_location``): the runs' own hooks
index into a SQLite file, then into a fresh database on the PostgreSQL server
scripts/test starts, and every query must give the same answers on both.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import NO_FRAMEWORKS, Rexec, build_definition, gen, pinned, spec

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

STAGES = {
    "prepare": (
        "import os; os.makedirs('/outputs/dataset'); "
        "open('/outputs/dataset/rows.txt','w').write(open('/data/raw.txt').read().upper())"
    ),
    "train": (
        "import os, json; os.makedirs('/outputs/model'); "
        "rows=open('/data/rows.txt').read(); open('/outputs/model/w.txt','w').write(str(len(rows))); "
        "json.dump({'loss': 1.0/len(rows)}, open('/outputs/metrics.json','w'))"
    ),
    "evaluate": (
        "import json; w=int(open('/data/w.txt').read()); "
        "json.dump({'acc': w/100}, open('/outputs/eval.json','w'))"
    ),
}


def stage(rexec: Rexec, root: Path, name: str, data: Path, key: Path, runs: Path) -> Path:
    doc = spec(
        name,
        ["python3", "-c", STAGES[name]],
        inputs=[pinned(rexec, "data", data, "/data")],
        params={"stage": name},
        determinism=NO_FRAMEWORKS,
    )
    path = gen(root / f"{name}.toml", doc)
    out = rexec("run", path, "--signing-key", key, "--runs-dir", runs, "--json", "-q")
    return Path(json.loads(out.stdout)["run_dir"])


@pytest.fixture
def chain(
    rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path, catalog_location: str
) -> dict[str, Any]:
    rexec.env["REXEC_CATALOG"] = catalog_location  # the runs' hooks index here
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "raw.txt").write_text("a\nb\nc\n")
    runs = tmp_path / "runs"
    prepare = stage(rexec, tmp_path, "prepare", raw, keys[0], runs)
    train = stage(rexec, tmp_path, "train", prepare / "outputs" / "dataset", keys[0], runs)
    evaluate = stage(rexec, tmp_path, "evaluate", train / "outputs" / "model", keys[0], runs)
    return {"raw": raw, "runs": runs, "prepare": prepare, "train": train, "evaluate": evaluate}


def j(rexec: Rexec, *args: str | Path, check: int | None = 0) -> Any:
    return json.loads(rexec(*args, "--json", check=check).stdout)


def test_a_chain_is_linked_by_digest_upstream_and_downstream(
    rexec: Rexec, chain: dict[str, Any], keys: tuple[Path, Path]
) -> None:
    prepare, train, evaluate = chain["prepare"].name, chain["train"].name, chain["evaluate"].name
    # rexec run indexed each record as it finished
    assert [r["run_id"] for r in j(rexec, "log")["runs"]] == [evaluate, train, prepare]
    trees = build_definition(chain["prepare"])["internalParameters"]["outputTrees"]
    assert j(rexec, "log", "--input", trees["outputs/dataset/"])["runs"][0]["run_id"] == train
    shown = j(rexec, "show", train[:20])
    (data,) = [i for i in shown["inputs"] if i["name"] == "data"]
    assert data["producedBy"] == [prepare]
    (model,) = [o for o in shown["outputs"] if o["name"] == "outputs/model/"]
    assert model["consumedBy"] == [evaluate]
    assert {(m["key"], m["value"]) for m in shown["metrics"]} == {("loss", 1 / 6)}
    up = j_lineage(rexec, evaluate, "--upstream")
    assert [r["run_id"] for r in up["runs"]] == [prepare, train, evaluate]
    down = j_lineage(rexec, prepare, "--downstream")
    assert [r["run_id"] for r in down["runs"]] == [prepare, train, evaluate]
    raw = rexec("snapshot", "hash", chain["raw"], "--quiet").stdout.strip()
    from_raw = j_lineage(rexec, raw[:30], "--downstream")  # a digest by prefix
    assert [r["run_id"] for r in from_raw["runs"]] == [prepare, train, evaluate]
    mermaid = rexec("lineage", evaluate, "--upstream", "--format", "mermaid").stdout
    assert mermaid.startswith("flowchart LR") and mermaid.count("-->") == 2
    dot = rexec("lineage", evaluate, "--upstream", "--format", "dot").stdout
    assert dot.count("->") == 2 and "digraph lineage" in dot
    page = chain["runs"].parent / "lineage.html"
    rexec("lineage", evaluate, "--upstream", "--format", "html", "-o", page)
    html = page.read_text()
    assert html.count("<section id=") == 3 and all(r in html for r in (prepare, train, evaluate))
    assert html.count('<g id="edge') == 2 and "default-src 'none'" in html
    assert j(rexec, "log", "--where", "metrics.acc > 0.05")["runs"][0]["run_id"] == evaluate
    assert j(rexec, "log", "--where", "params.stage = train")["runs"][0]["run_id"] == train
    assert j(rexec, "log", "--where", "metrics.acc > 0.5")["runs"] == []
    signer = shown["run"]["signer"]  # the claim the bundle makes: the key's hint
    from executor.signing.key import key_hint
    from executor.signing.key_policy import load_public_key

    hint = key_hint(load_public_key(keys[1].read_bytes(), source=str(keys[1])))
    assert (shown["run"]["signer_kind"], signer) == ("key", hint)
    assert len(j(rexec, "log", "--signer", hint)["runs"]) == 3
    assert j(rexec, "log", "--signer", "someone-else@example.com")["runs"] == []


def j_lineage(rexec: Rexec, ref: str, *args: str) -> Any:
    return json.loads(rexec("lineage", ref, *args, "--format", "json").stdout)


ANSWERS = (
    "SELECT * FROM outputs ORDER BY run_id, name",
    "SELECT * FROM inputs ORDER BY run_id, name",
    "SELECT * FROM params ORDER BY run_id, key",
    "SELECT * FROM metrics ORDER BY run_id, file, key",
    "SELECT run_id, name, status, started, image, code_tree, signer FROM runs ORDER BY run_id",
)


def answers(rexec: Rexec, *catalog: str | Path) -> list[str]:
    return [rexec("catalog", "query", sql, "--json", *catalog).stdout for sql in ANSWERS] + [
        rexec("log", "--json", *catalog).stdout
    ]


def test_rebuild_gives_the_same_answers_and_verify_catches_a_tampered_record(
    rexec: Rexec, chain: dict[str, Any], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    before = answers(rexec)
    assert j(rexec, "catalog", "index", chain["runs"], "--rebuild")["added"] == 3
    assert answers(rexec) == before
    other = tmp_path / "other.sqlite"  # the same records into a SQLite file: the same answers
    rexec("catalog", "index", chain["runs"], "--catalog", other)
    assert answers(rexec, "--catalog", other) == before
    rows = chain["prepare"] / "outputs" / "dataset" / "rows.txt"
    rows.write_text("FORGED\n")  # an output edited after signing
    host = chain["train"] / "host.json"
    host.write_bytes(host.read_bytes().replace(b'"os":', b'"os" :'))  # a byproduct edited
    report = j(rexec, "catalog", "index", chain["runs"], "--rebuild", "--verify", "--key", keys[1])
    assert report["added"] == 2 and len(report["failed"]) == 1  # train's files no longer match
    assert str(chain["train"]) in report["failed"][0]
    status = j(rexec, "catalog", "status")
    assert status["counts"]["runs"] == 2 and status["unverified"] == 0
    found = json.loads(
        rexec("catalog", "query", "SELECT run_id, verification FROM runs", "--json").stdout
    )
    verdicts = {r["run_id"]: r["verification"] for r in found}
    assert verdicts[chain["prepare"].name].startswith("failed: ")
    assert verdicts[chain["evaluate"].name].startswith("verified by key")


def test_concurrent_runs_lose_nothing_and_a_copied_record_is_found_by_digest(
    rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path, catalog_location: str
) -> None:
    rexec.env["REXEC_CATALOG"] = catalog_location
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "raw.txt").write_text("x\n")
    runs = tmp_path / "runs"
    for i in range(8):
        (tmp_path / f"s{i}").mkdir()
    with ThreadPoolExecutor(8) as pool:  # eight rexec processes index into one catalog at once
        done = list(
            pool.map(
                lambda i: stage(rexec, tmp_path / f"s{i}", "prepare", raw, keys[0], runs), range(8)
            )
        )
    assert len({d.name for d in done}) == 8
    assert len(j(rexec, "log", "--name", "prepare")["runs"]) == 8
    copy = tmp_path / "elsewhere" / done[0].name
    shutil.copytree(done[0], copy)
    subprocess.run(["rm", "-rf", str(runs)], check=True)
    fresh = tmp_path / "catalog2.sqlite"
    rexec("catalog", "index", copy.parent, "--catalog", fresh)
    digest = build_definition(copy)["internalParameters"]["outputTrees"]["outputs/dataset/"]
    shown = json.loads(rexec("show", digest, "--catalog", fresh, "--json").stdout)
    statement_sha = hashlib.sha256((copy / "statement.json").read_bytes()).hexdigest()
    assert shown["producedBy"] == [
        {"run_id": done[0].name, "statement_sha256": statement_sha, "name": "outputs/dataset/"}
    ]


def from_stage(
    rexec: Rexec, root: Path, ref: str, keys: tuple[Path, Path], runs: Path, digest: str = ""
) -> Any:
    upstream = {
        "name": "data",
        "from": ref,
        "mount": "/data",
        **({"digest": digest} if digest else {}),
    }
    doc = spec(
        "train", ["python3", "-c", STAGES["train"]], inputs=[upstream], determinism=NO_FRAMEWORKS
    )
    path = gen(root / "train-from.toml", doc)
    return rexec(
        "run", path, "--signing-key", keys[0], "--key", keys[1], "--runs-dir", runs, "--json",
        "-q", check=None,
    )  # fmt: skip


def test_an_input_from_another_runs_outputs_names_its_statement(
    rexec: Rexec, chain: dict[str, Any], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    runs, prepare = chain["runs"], chain["prepare"]
    out = from_stage(rexec, tmp_path, f"run:{prepare.name}:dataset", keys, runs)
    assert out.code == 0, out.stderr
    run_dir = Path(json.loads(out.stdout)["run_dir"])
    (dep,) = [
        d for d in build_definition(run_dir)["resolvedDependencies"] if d["name"] == "input:data"
    ]
    statement_sha = hashlib.sha256((prepare / "statement.json").read_bytes()).hexdigest()
    assert dep["annotations"]["fromRun"] == prepare.name
    assert dep["annotations"]["fromStatementSha256"] == statement_sha
    assert dep["annotations"]["fromSigner"].startswith("key ")  # who it was verified to be
    signed = build_definition(prepare)["internalParameters"]["outputTrees"]["outputs/dataset/"]
    assert "sha256-tree-v1:" + dep["digest"]["sha256-tree-v1"] == signed
    up = j_lineage(rexec, run_dir.name, "--upstream")
    assert [r["run_id"] for r in up["runs"]] == [prepare.name, run_dir.name]
    latest = from_stage(rexec, tmp_path, "latest:prepare:dataset", keys, runs)
    assert latest.code == 0, latest.stderr  # the newest succeeded `prepare`, from the catalog
    locked = tmp_path / "locked.toml"  # lock pins `latest:` to that run and its signed tree
    pins = j(
        rexec, "lock", tmp_path / "train-from.toml", "-o", locked, "--runs-dir", tmp_path,
        "--key", keys[1],
    )  # fmt: skip
    made = {p["key"]: p["new"] for p in pins["pins"]}
    assert made["inputs[0].from"] == f"run:{prepare.name}:dataset"
    assert made["inputs[0].digest"] == signed
    ran = rexec(
        "run", locked, "--sign", "none", "--key", keys[1], "--runs-dir", runs, "--json", "-q"
    )
    assert json.loads(ran.stdout)["status"] == "succeeded"
    replayed = rexec(
        "replay", run_dir, "--key", keys[1], "--signing-key", keys[0], "--runs-dir", runs, "--json"
    )
    assert json.loads(replayed.stdout)["verdict"] == "reproduced-bitwise"
    wrong = from_stage(
        rexec,
        tmp_path,
        f"run:{prepare.name}:dataset",
        keys,
        runs,
        digest="sha256-tree-v1:" + "0" * 64,
    )
    assert wrong.code == 4 and f"but run {prepare.name} signed" in wrong.stderr
    missing = from_stage(rexec, tmp_path, "run:20990101T000000Z-nope-000000:dataset", keys, runs)
    assert missing.code == 2 and "no record of run" in missing.stderr


def test_compare_shows_the_changed_rows_with_deltas(
    rexec: Rexec, chain: dict[str, Any], keys: tuple[Path, Path]
) -> None:
    prepare, train = chain["prepare"].name, chain["train"].name
    doc = j(rexec, "compare", prepare, train)
    rows = {r["key"]: r for r in doc["rows"]}
    assert rows["name"]["values"] == ["prepare", "train"]
    assert rows["params.stage"]["values"] == ['"prepare"', '"train"']
    assert "seed" not in rows and "status" not in rows  # the same: left out by default
    everything = {r["key"] for r in j(rexec, "compare", prepare, train, "--all")["rows"]}
    assert {"seed", "status"} <= everything
    text = rexec("compare", prepare, train).stdout
    assert "params.stage" in text and "seed " not in text
