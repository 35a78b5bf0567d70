"""The catalog's pieces without a run: --where, lineage drawing, name resolution, schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from executor import catalog
from executor.canonical import sha256_hex
from executor.catalog.render import render_lineage
from executor.catalog.where import parse_where
from executor.errors import InputError


def test_where_conditions_bind_every_value_and_choose_the_column() -> None:
    clause, args = parse_where("metrics.acc > 0.9")
    assert "m.value > ?" in clause and args == ["acc", 0.9]
    clause, args = parse_where("metrics.eval.json:acc<=1")
    assert "m.file = ?" in clause and args == ["acc", "eval.json", 1.0]
    clause, args = parse_where('params.opt = "adam"')
    assert "p.value = ?" in clause and args == ["opt", '"adam"']
    clause, args = parse_where("params.lr = 0.01")
    assert "p.num = ?" in clause and args == ["lr", 0.01]
    assert parse_where("seed != 3") == ("r.seed != ?", [3])
    for bad in ("acc > 1", "metrics.acc > x", "metrics > 1", "seed = x", "params.a ~ 1"):
        with pytest.raises(InputError):
            parse_where(bad)


def test_injection_stays_a_value() -> None:
    clause, args = parse_where("params.x = 1; DROP TABLE runs")
    assert "DROP" not in clause and args[-1] == '"1; DROP TABLE runs"'


def _key(run_id: str) -> dict[str, str]:
    """A record's key columns: the run id it claims and a Statement digest of its own."""
    return {"run_id": run_id, "statement_sha256": sha256_hex(run_id.encode())}


def _graph() -> dict[str, object]:
    evil = 'x"];\n  bad [label="pwn'
    return {
        "focus": {"kind": "run", "value": "b"},
        "runs": [
            {**_key("a"), "status": "succeeded", "name": evil},
            {**_key("b"), "status": "succeeded", "name": "train"},
        ],
        "inputs": [{**_key("b"), "name": evil, "digest": "sha256-tree-v1:" + "1" * 64}],
        "outputs": [{**_key("a"), "name": "outputs/d/", "digest": "sha256-tree-v1:" + "1" * 64}],
    }


def test_lineage_drawings_escape_what_records_hold() -> None:
    dot = render_lineage(_graph(), "dot")
    assert "r0 -> r1" in dot and "\n  bad [" not in dot and 'pwn"' not in dot
    mermaid = render_lineage(_graph(), "mermaid")
    assert "r0 -->|" in mermaid and "\n  bad" not in mermaid
    tree = render_lineage(_graph(), "tree")
    assert "b  succeeded  train\n  <- a" in tree
    hostile = _graph()
    hostile["runs"][0]["name"] = "\x1b]0;owned\x07\x1b[2J"  # type: ignore[index]
    assert "\x1b" not in render_lineage(hostile, "tree")


def test_names_resolve_by_unique_prefix_and_ambiguity_lists_candidates(
    catalog_location: str,
) -> None:
    cat = catalog.open_catalog(catalog_location)
    for run_id in ("20261201T100000Z-a-111111", "20261201T100000Z-a-222222", "2026_x%y-333333"):
        cat.put(
            {
                "runs": [{**_key(run_id), "path": f"/x/{run_id}"}],
                "outputs": [
                    {
                        **_key(run_id),
                        "name": "m.json",
                        "digest": "sha256:" + run_id[-6:] * 10,
                        "role": "file",
                    }
                ],
            }
        )
    first = _key("20261201T100000Z-a-111111")["statement_sha256"]
    assert catalog.resolve(cat, "20261201T100000Z-a-1") == ("record", first)
    assert catalog.resolve(cat, "22222222") == ("digest", "sha256:" + "222222" * 10)
    assert catalog.resolve(cat, "sha256:11111111") == ("digest", "sha256:" + "111111" * 10)
    # a record by its Statement's digest
    assert catalog.resolve(cat, f"sha256:{first[:12]}") == ("record", first)
    # "_" and "%" are literal, not LIKE wildcards that would also match the 20261201… runs
    assert catalog.resolve(cat, "2026_") == ("record", _key("2026_x%y-333333")["statement_sha256"])
    with pytest.raises(InputError, match="no run or digest"):
        catalog.resolve(cat, "2026%")
    with pytest.raises(InputError) as info:
        catalog.resolve(cat, "20261201T1000")
    assert len(info.value.details) == 2
    with pytest.raises(InputError, match="no run or digest"):
        catalog.resolve(cat, "nothing")
    cat.close()


def test_a_catalog_of_another_schema_says_rebuild(catalog_location: str) -> None:
    cat = catalog.open_catalog(catalog_location)
    with cat.transaction():
        cat.backend.set_version(99)
    cat.close()
    with pytest.raises(InputError, match="catalog schema 99") as info:
        catalog.open_catalog(catalog_location)
    assert info.value.hint is not None and "--rebuild" in info.value.hint


def test_a_schema_1_catalog_gains_the_signer_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "c.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, statement_sha256 TEXT NOT NULL, name TEXT,"
        " kind TEXT, status TEXT, exit_code INTEGER, started TEXT, finished TEXT, seed INTEGER,"
        " image TEXT, code_commit TEXT, code_tree TEXT, invoker TEXT, engine TEXT, signed INTEGER,"
        " verification TEXT, replay_of TEXT, derived_from TEXT, path TEXT NOT NULL, partial TEXT)"
    )
    db.execute(
        "CREATE TABLE inputs (run_id TEXT NOT NULL, name TEXT NOT NULL, digest TEXT NOT NULL,"
        " role TEXT NOT NULL, PRIMARY KEY (run_id, name))"
    )
    db.execute("INSERT INTO runs (run_id, statement_sha256, path) VALUES ('old', 'x', '/r')")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    cat = catalog.open_catalog(path)
    (row,) = cat.rows("SELECT run_id, statement_sha256, signer, stage_key FROM runs")
    assert row == {"run_id": "old", "statement_sha256": "x", "signer": None, "stage_key": None}
    assert cat.rows("SELECT from_run, from_statement FROM inputs") == []  # the columns exist
    assert cat.backend.version() == catalog.SCHEMA_VERSION
    cat.close()


def test_a_catalog_query_cannot_write(catalog_location: str) -> None:
    cat = catalog.open_catalog(catalog_location)
    cat.put({"runs": [{"run_id": "r", "statement_sha256": "0" * 64, "path": "/x"}]})
    assert cat.read_only_query("SELECT run_id FROM runs") == [{"run_id": "r"}]
    for sql in ("DELETE FROM runs", "SELECT 1; DELETE FROM runs", "DROP TABLE runs"):
        with pytest.raises(InputError, match="catalog query"):
            cat.read_only_query(sql)
    assert cat.rows("SELECT count(*) AS n FROM runs") == [{"n": 1}]
    cat.close()


def test_compare_gives_deltas_from_the_first_run(catalog_location: str) -> None:
    cat = catalog.open_catalog(catalog_location)
    for run_id, acc, seed in (("r-a", 0.5, 1), ("r-b", 0.75, 1)):
        cat.put(
            {
                "runs": [{**_key(run_id), "path": f"/x/{run_id}", "seed": seed}],
                "metrics": [{**_key(run_id), "file": "m.json", "key": "acc", "value": acc}],
            }
        )
    doc = catalog.compare(cat, ["r-a", "r-b"])
    (row,) = [r for r in doc["rows"] if r["key"] == "metrics.m.json:acc"]
    assert row["values"] == [0.5, 0.75] and row["deltas"] == [0.0, 0.25]
    assert not any(r["key"] == "seed" for r in doc["rows"])
    with pytest.raises(InputError, match="2 to 50 runs"):
        catalog.compare(cat, ["r-a"])
    cat.close()


def test_tables_print_what_records_hold_inert(capsys: pytest.CaptureFixture[str]) -> None:
    from executor.cli._catalog import print_rows

    print_rows([{"run_id": "r", "name": "\x1b]0;owned\x07[bold]x[/bold]"}])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "[bold]x" in out


def test_a_hostile_runs_dir_is_listed_never_followed_or_waited_on(
    tmp_path: Path, catalog_location: str
) -> None:
    import os
    import signal

    runs = tmp_path / "runs"
    (runs / "linked").mkdir(parents=True)
    secret = tmp_path / "secret.json"
    secret.write_text('{"not": "a statement"}')
    os.symlink(secret, runs / "linked" / "statement.json")  # a link to a host file
    (runs / "fifo").mkdir()
    os.mkfifo(runs / "fifo" / "statement.json")  # would block a naive reader forever
    cat = catalog.open_catalog(catalog_location)
    signal.alarm(10)  # a hang fails the test instead of stalling the suite
    try:
        records = catalog.find_records([runs])
        report = catalog.index_records(cat, records)
    finally:
        signal.alarm(0)
    assert [p.name for p in records] == ["linked"]  # the FIFO is not a record
    assert report.added == 0 and len(report.failed) == 1 and "symbolic link" in report.failed[0]
    cat.close()


def test_log_filters_by_signer_key_hint_or_identity(catalog_location: str) -> None:
    cat = catalog.open_catalog(catalog_location)
    signers = {
        "r-alice": ("sigstore", "alice@example.com (issuer https://id.example)"),
        "r-bob": ("sigstore", "bob@example.com (issuer https://id.example)"),
        "r-key": ("key", "TLMsSDfG3ajPsWge+z/vX5T/zluXnmvbkTkwLIV68Tk="),
    }
    for run_id, (kind, who) in signers.items():
        row = {**_key(run_id), "path": f"/x/{run_id}"}
        cat.put({"runs": [{**row, "signer_kind": kind, "signer": who}]})
    assert [r["run_id"] for r in catalog.log(cat, signer="alice@example.com")] == ["r-alice"]
    assert [r["run_id"] for r in catalog.log(cat, signer=signers["r-bob"][1])] == ["r-bob"]
    assert [r["run_id"] for r in catalog.log(cat, signer=signers["r-key"][1])] == ["r-key"]
    assert catalog.log(cat, signer="%") == [] and catalog.log(cat, signer="alice") == []
    cat.close()


def _statement(tmp_path: Path, name: str, doc: dict[str, object]) -> Path:
    import json

    record = tmp_path / "runs" / name
    record.mkdir(parents=True)
    (record / "statement.json").write_text(json.dumps(doc))
    return record


FUTURE: dict[str, object] = {
    "_type": "https://in-toto.io/Statement/v1",
    "subject": [
        {"name": "model.bin", "digest": {"sha256": "ab" * 32}},
        {"name": 3, "digest": {"sha256": "cd" * 32}},  # not a name: left out
    ],
    "predicateType": "https://slsa.dev/provenance/v1",
    "predicate": {
        "buildDefinition": {"internalParameters": {"manifestSchema": "rexec.manifest/v9"}},
        "runDetails": {
            "metadata": {"invocationId": "20991231T000000Z-future-abcdef"},
            "byproducts": [
                {"name": "exit-status", "annotations": {"status": "succeeded", "exitCode": 0}}
            ],
        },
    },
}


def test_a_record_of_an_unknown_manifest_schema_is_indexed_partially_and_said_so(
    tmp_path: Path, catalog_location: str
) -> None:
    future = FUTURE
    _statement(tmp_path, "future", future)
    nameless = {**future, "predicate": {"buildDefinition": {}, "runDetails": {}}}
    _statement(tmp_path, "nameless", nameless)
    cat = catalog.open_catalog(catalog_location)
    said: list[str] = []
    report = catalog.index_records(cat, catalog.find_records([tmp_path / "runs"]), say=said.append)
    assert report.added == 1 and len(report.partial) == 1 and len(report.failed) == 1
    assert "rexec.manifest/v9" in report.partial[0] and "no run id" in report.failed[0]
    assert any("indexed partially" in s for s in said)
    (run,) = cat.rows("SELECT run_id, status, partial FROM runs")
    assert run["run_id"] == "20991231T000000Z-future-abcdef" and run["status"] == "succeeded"
    assert "rexec.manifest/v9" in run["partial"]
    shown = catalog.show(cat, "abababab")  # its subjects are found by digest
    (produced,) = shown["producedBy"]
    assert (produced["run_id"], produced["name"]) == (run["run_id"], "model.bin")
    cat.close()


def test_lineage_walks_every_hop_both_ways_and_a_copy_run_does_not_loop(
    catalog_location: str,
) -> None:
    cat = catalog.open_catalog(catalog_location)
    chain = [("raw", "a"), ("a", "b"), ("b", "c"), ("c", "c")]  # the last one copies its input
    for i, (src, dst) in enumerate(chain):
        run_id = f"r{i}"
        cat.put(
            {
                "runs": [{**_key(run_id), "path": f"/x/{run_id}"}],
                "inputs": [{**_key(run_id), "name": "in", "digest": f"d:{src}", "role": "input"}],
                "outputs": [{**_key(run_id), "name": "out", "digest": f"d:{dst}", "role": "tree"}],
            }
        )
    every = sorted(_key(f"r{i}")["statement_sha256"] for i in range(4))
    assert cat.walk(["d:raw"], direction="downstream") == every
    assert cat.walk(["d:c"], direction="upstream") == every
    assert cat.walk(["d:a"], direction="upstream") == [_key("r0")["statement_sha256"]]
    graph = catalog.lineage(cat, "r1", direction="both")
    assert [r["run_id"] for r in graph["runs"]] == ["r0", "r1", "r2", "r3"]
    cat.close()


def test_svg_and_html_lineage_render_hostile_names_inert_and_link_nodes_to_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hostile = _graph()
    hostile["runs"][0]["name"] = '<script>alert(1)</script><img src=x onerror="x()">'  # type: ignore[index]
    hostile["inputs"][0]["name"] = "</code><script>alert(2)</script>"  # type: ignore[index]
    svg = render_lineage(hostile, "svg")
    assert svg.startswith("<svg") and svg.count('class="node"') == 2 and "<script" not in svg
    page = render_lineage(hostile, "html")
    assert "<script" not in page and "<img" not in page and "&lt;script&gt;" in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert 'href="#r0"' in page and '<section id="r0">' in page  # a node opens its run's rows
    assert "http://" not in page.replace("http://www.w3.org/", "")  # loads nothing
    monkeypatch.setenv("PATH", "/nonexistent")
    from executor.errors import InfrastructureError

    with pytest.raises(InfrastructureError, match="Graphviz") as info:
        render_lineage(_graph(), "svg")
    assert info.value.hint is not None and "apt-get install graphviz" in info.value.hint


def test_the_html_lineage_lists_each_runs_own_inputs_and_outputs() -> None:
    """Each run's section names what it read and what it made (a loop variable once hid
    them: every section showed none)."""
    import re

    page = render_lineage(_graph(), "html")
    sections = dict(re.findall(r'<section id="(r\d)">(.*?)</section>', page, re.S))
    assert "outputs/d/" in sections["r0"] and "outputs/d/" not in sections["r1"]
    assert "1" * 64 in sections["r1"]  # b read what a made


def test_a_damaged_catalog_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    from executor.errors import InfrastructureError

    cat = catalog.open_catalog(tmp_path / "c.sqlite")
    cat.backend.rows("DROP TABLE approvals")  # a file some other tool broke
    with pytest.raises(InfrastructureError, match="no such table: approvals") as info:
        cat.put({"runs": [{"run_id": "r", "statement_sha256": "0" * 64, "path": "/x"}]})
    assert str(tmp_path / "c.sqlite") in info.value.message and info.value.hint
    cat.close()


def test_runs_shows_the_newest_fifty_by_default_and_says_there_are_more(
    catalog_location: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A catalog of many runs printed whole took 12 s: the ledger shows a screen's worth,
    newest first, says there are more, and gives them with --limit or --all."""
    import json

    from executor.cli import main

    cat = catalog.open_catalog(catalog_location)
    try:
        for n in range(60):
            run_id = f"2026120{n // 10}T0000{n % 10}0Z-r"
            cat.put({"runs": [{**_key(run_id), "path": f"/x/{run_id}", "started": run_id}]})
    finally:
        cat.close()

    def runs(*more: str) -> tuple[dict[str, object], str]:
        assert main(["runs", "--catalog", catalog_location, "--json", *more]) == 0
        out, err = capsys.readouterr()
        return json.loads(out), err

    shown, said = runs()
    ids = [r["run_id"] for r in shown["runs"]]  # type: ignore[union-attr]
    assert len(ids) == 50 and ids[0] == "20261205T000090Z-r" and shown["more"] is True
    assert "--all" in said
    assert len(runs("--all")[0]["runs"]) == 60  # type: ignore[arg-type]
    few, said = runs("--limit", "60")
    assert len(few["runs"]) == 60 and few["more"] is False and said == ""  # type: ignore[arg-type]
    with pytest.raises(SystemExit):
        main(["runs", "--catalog", catalog_location, "--limit", "0"])


def test_records_indexed_from_a_relative_runs_dir_are_kept_by_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rexec catalog index runs` kept `runs/<id>`: from any other directory the stage
    cache missed, regenerate refused and the web view lost the host capture."""
    record = _statement(tmp_path, "r1", FUTURE)  # indexed partially: its path is what counts
    monkeypatch.chdir(tmp_path)
    cat = catalog.open_catalog(tmp_path / "c.sqlite")
    try:
        catalog.index_records(cat, catalog.find_records([Path("runs")]), say=lambda _: None)
        (row,) = cat.rows("SELECT path FROM runs")
        again = catalog.index_records(cat, catalog.find_records([Path("runs")]), say=print)
        with cat.transaction():  # as an older rexec left it
            cat.backend.rows("UPDATE runs SET path = 'runs/r1'")
        moved = catalog.index_records(cat, catalog.find_records([Path("runs")]), say=print)
        (after,) = cat.rows("SELECT path FROM runs")
    finally:
        cat.close()
    assert row["path"] == str(record)
    assert (again.unchanged, again.copies) == (1, [])  # the same place, however named
    assert moved.copies == [] and after["path"] == str(record)  # a relative path holds nothing


def test_a_schema_4_catalogs_relative_paths_become_absolute_where_the_record_is_theirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The migration reads the Statement at each relative path, from where rexec runs,
    and moves the row only when it is that row's record; the others wait for an index."""
    mine = _statement(tmp_path, "mine", {"predicate": {}})
    sha = sha256_hex((mine / "statement.json").read_bytes())
    location = tmp_path / "c.sqlite"
    cat = catalog.open_catalog(location)
    cat.put({"runs": [{**_key("mine"), "statement_sha256": sha, "path": "runs/mine"}]})
    cat.put({"runs": [{**_key("gone"), "path": "runs/gone"}]})
    cat.put({"runs": [{**_key("other"), "path": "runs/mine-copy"}]})
    with cat.transaction():
        cat.backend.set_version(4)
        cat.rows("DROP INDEX runs_by_seed_key")  # the runs table as schema 4 had it
        cat.rows("ALTER TABLE runs DROP COLUMN seed_key")
    cat.close()
    (tmp_path / "runs" / "mine-copy").mkdir()  # a record, but not that row's
    (tmp_path / "runs" / "mine-copy" / "statement.json").write_bytes(
        (mine / "statement.json").read_bytes()
    )
    monkeypatch.chdir(tmp_path)
    cat = catalog.open_catalog(location)
    try:
        paths = {r["run_id"]: r["path"] for r in cat.rows("SELECT run_id, path FROM runs")}
        assert cat.backend.version() == catalog.SCHEMA_VERSION
    finally:
        cat.close()
    assert paths == {"mine": str(mine), "gone": "runs/gone", "other": "runs/mine-copy"}


def test_a_schema_5_catalog_gains_the_seed_key_and_keeps_its_rows(tmp_path: Path) -> None:
    """Schema 6 adds runs.seed_key (the noise reference's key); a schema 5 catalog's rows
    stay, without one until `catalog index --rebuild` reads their records."""
    location = tmp_path / "c.sqlite"
    cat = catalog.open_catalog(location)
    cat.put({"runs": [{**_key("old"), "path": "/x/old"}]})
    with cat.transaction():
        cat.backend.set_version(5)
        cat.rows("DROP INDEX runs_by_seed_key")
        cat.rows("ALTER TABLE runs DROP COLUMN seed_key")
    cat.close()
    cat = catalog.open_catalog(location)
    try:
        assert cat.backend.version() == catalog.SCHEMA_VERSION == 6
        assert cat.rows("SELECT run_id, seed_key FROM runs") == [
            {"run_id": "old", "seed_key": None}
        ]
        ok = {"seed_key": "k", "status": "succeeded", "kind": "run", "seed": 1}
        rows = [
            {**_key("new"), "path": "/x/new", **ok, "started": "2"},
            {**_key("older"), "path": "/x/o", **ok, "started": "1"},  # seed 1 again
            {**_key("other"), "path": "/x/s", **ok, "seed": 2},
            {**_key("replay"), "path": "/x/r", **ok, "seed": 3, "kind": "replay"},
            {**_key("failed"), "path": "/x/f", "seed_key": "k", "seed": 4},
        ]
        cat.put({"runs": rows})
        assert sorted(r["run_id"] for r in cat.seeded("k", limit=5)) == ["new", "other"]
    finally:
        cat.close()


def test_a_digest_is_found_by_its_prefix_or_its_bare_hex_through_the_indexes(
    catalog_location: str,
) -> None:
    tree, file = "sha256-tree-v1:" + "ab" * 32, "sha256:" + "ab" * 31 + "cd"
    cat = catalog.open_catalog(catalog_location)
    try:
        cat.put(
            {
                "runs": [{**_key("r"), "path": "/x/r"}],
                "inputs": [
                    {**_key("r"), "name": "data", "digest": tree, "role": "input"},
                ],
                "outputs": [{**_key("r"), "name": "m", "digest": file, "role": "output"}],
            }
        )
        assert cat.digests_starting(tree) == [tree]
        assert cat.digests_starting("sha256-tree-v1:ABAB") == [tree]
        assert cat.digests_starting("abababab") == sorted([tree, file])
        assert cat.digests_starting("sha256:abab") == [file]
        assert cat.digests_starting("sha256:abac") == []
        if catalog_location.endswith(".sqlite"):  # the range is answered from the index
            plan = cat.rows(
                "EXPLAIN QUERY PLAN SELECT DISTINCT digest FROM inputs"
                " WHERE digest >= ? AND digest < ?",
                [tree, tree + "~"],
            )
            assert any("inputs_by_digest" in str(p.get("detail")) for p in plan), plan
    finally:
        cat.close()


@pytest.mark.parametrize("index", ["partial", "full"])
def test_replays_and_stage_reuse_are_looked_up_by_index_when_most_runs_have_neither(
    tmp_path: Path, index: str
) -> None:
    """Most runs replay nothing and are no pipeline stage: over those NULLs SQLite's
    statistics rated a full index useless and a run page scanned every run (0.25 s at
    100,000). The partial indexes of schema 5 are used; the full ones of schema 4 were not."""
    cat = catalog.open_catalog(tmp_path / "c.sqlite")
    try:
        if index == "full":  # schema 4's indexes, to show what the partial ones fix
            with cat.transaction():
                cat.backend.rows("DROP INDEX runs_by_original")
                cat.backend.rows("DROP INDEX runs_by_stage_key")
                cat.backend.rows("DROP INDEX runs_by_seed_key")  # schema 6's
                cat.backend.rows("CREATE INDEX runs_by_original ON runs (original_statement)")
                cat.backend.rows("CREATE INDEX runs_by_stage_key ON runs (stage_key)")
        cat.put_many(
            [
                {"runs": [{**_key(f"r{i}"), "path": f"/x/{i}", "started": f"{i:06d}"}]}
                for i in range(500)
            ]
        )
        cat.optimize()
        plans = [
            " ".join(str(p["detail"]) for p in cat.rows(f"EXPLAIN QUERY PLAN {sql}", ["x"]))
            for sql in (
                "SELECT * FROM runs WHERE original_statement = ? AND kind = 'replay'",
                "SELECT run_id, statement_sha256, path FROM runs WHERE stage_key = ?"
                " AND status = 'succeeded' ORDER BY started DESC NULLS LAST, run_id DESC LIMIT 5",
            )
        ]
    finally:
        cat.close()
    used = ["runs_by_original" in plans[0], "runs_by_stage_key" in plans[1]]
    assert used == ([True, True] if index == "partial" else [False, False]), plans


def test_a_common_condition_walks_the_newest_runs_and_a_rare_one_uses_its_index(
    tmp_path: Path,
) -> None:
    """A string param a third of the runs share was sorted in full for a page of 50 (62 ms
    at 100,000 runs); now, past COMMON matching rows, the runs are walked newest first.
    Either way the answer is the same runs, newest first."""
    from executor.catalog import ledger, where

    n = 3 * where.COMMON + 30
    cat = catalog.open_catalog(tmp_path / "c.sqlite")
    try:
        cat.put_many(
            [
                {
                    "runs": [{**_key(f"r{i:05d}"), "path": f"/x/{i}", "started": f"{i:06d}"}],
                    "params": [
                        {
                            **_key(f"r{i:05d}"),
                            "key": "opt",
                            "value": '"lion"' if i % 3 == 0 else ('"rare"' if i == 7 else '"adam"'),
                        }
                    ],
                }
                for i in range(n)
            ]
        )
        assert ledger._common(cat, "params.opt = lion")
        assert not ledger._common(cat, "params.opt = rare")
        page = [r["run_id"] for r in catalog.log(cat, where=["params.opt = lion"], limit=50)]
        every = [r["run_id"] for r in catalog.log(cat, where=["params.opt = lion"])]
        assert page == every[:50] == [f"r{i:05d}" for i in range(n - 1, -1, -1) if i % 3 == 0][:50]
        assert [r["run_id"] for r in catalog.log(cat, where=["params.opt = rare"], limit=50)] == [
            "r00007"
        ]
        clause, _ = where.parse_where("params.opt = lion", common=True)
        plan = cat.rows(
            f"EXPLAIN QUERY PLAN SELECT r.run_id FROM runs r WHERE {clause}"
            " ORDER BY r.started DESC LIMIT 50",
            ["opt", '"lion"'],
        )
        assert not any("TEMP B-TREE" in str(p["detail"]) for p in plan), plan
    finally:
        cat.close()
