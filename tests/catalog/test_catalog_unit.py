"""The catalog's pieces without a run: --where, lineage drawing, name resolution, schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from executor import catalog
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


def _graph() -> dict[str, object]:
    evil = 'x"];\n  bad [label="pwn'
    return {
        "focus": {"kind": "run", "value": "b"},
        "runs": [
            {"run_id": "a", "status": "succeeded", "name": evil},
            {"run_id": "b", "status": "succeeded", "name": "train"},
        ],
        "inputs": [{"run_id": "b", "name": evil, "digest": "sha256-tree-v1:" + "1" * 64}],
        "outputs": [{"run_id": "a", "name": "outputs/d/", "digest": "sha256-tree-v1:" + "1" * 64}],
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


def test_names_resolve_by_unique_prefix_and_ambiguity_lists_candidates(tmp_path: Path) -> None:
    cat = catalog.open_catalog(tmp_path / "c.sqlite")
    for run_id in ("20261201T100000Z-a-111111", "20261201T100000Z-a-222222"):
        cat.put(
            {
                "runs": [{"run_id": run_id, "statement_sha256": "0" * 64, "path": "/x"}],
                "outputs": [
                    {
                        "run_id": run_id,
                        "name": "m.json",
                        "digest": "sha256:" + run_id[-6:] * 10,
                        "role": "file",
                    }
                ],
            }
        )
    assert catalog.resolve(cat, "20261201T100000Z-a-1") == ("run", "20261201T100000Z-a-111111")
    assert catalog.resolve(cat, "22222222") == ("digest", "sha256:" + "222222" * 10)
    with pytest.raises(InputError) as info:
        catalog.resolve(cat, "20261201T1000")
    assert len(info.value.details) == 2
    with pytest.raises(InputError, match="no run or digest"):
        catalog.resolve(cat, "nothing")
    cat.close()


def test_a_catalog_of_another_schema_says_rebuild(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "c.sqlite"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(InputError, match="catalog schema 99") as info:
        catalog.open_catalog(path)
    assert info.value.hint is not None and "--rebuild" in info.value.hint


def test_compare_gives_deltas_from_the_first_run(tmp_path: Path) -> None:
    cat = catalog.open_catalog(tmp_path / "c.sqlite")
    for run_id, acc, seed in (("r-a", 0.5, 1), ("r-b", 0.75, 1)):
        cat.put(
            {
                "runs": [
                    {"run_id": run_id, "statement_sha256": "0" * 64, "path": "/x", "seed": seed}
                ],
                "metrics": [{"run_id": run_id, "file": "m.json", "key": "acc", "value": acc}],
            }
        )
    doc = catalog.compare(cat, ["r-a", "r-b"])
    (row,) = [r for r in doc["rows"] if r["key"] == "metrics.m.json:acc"]
    assert row["values"] == [0.5, 0.75] and row["deltas"] == [0.0, 0.25]
    assert not any(r["key"] == "seed" for r in doc["rows"])
    with pytest.raises(InputError, match="2 to 20 runs"):
        catalog.compare(cat, ["r-a"])
    cat.close()


def test_tables_print_what_records_hold_inert(capsys: pytest.CaptureFixture[str]) -> None:
    from executor.cli._catalog import print_rows

    print_rows([{"run_id": "r", "name": "\x1b]0;owned\x07[bold]x[/bold]"}])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "[bold]x" in out


def test_a_hostile_runs_dir_is_listed_never_followed_or_waited_on(tmp_path: Path) -> None:
    import os
    import signal

    runs = tmp_path / "runs"
    (runs / "linked").mkdir(parents=True)
    secret = tmp_path / "secret.json"
    secret.write_text('{"not": "a statement"}')
    os.symlink(secret, runs / "linked" / "statement.json")  # a link to a host file
    (runs / "fifo").mkdir()
    os.mkfifo(runs / "fifo" / "statement.json")  # would block a naive reader forever
    cat = catalog.open_catalog(tmp_path / "c.sqlite")
    signal.alarm(10)  # a hang fails the test instead of stalling the suite
    try:
        records = catalog.find_records([runs])
        report = catalog.index_records(cat, records)
    finally:
        signal.alarm(0)
    assert [p.name for p in records] == ["linked"]  # the FIFO is not a record
    assert report.added == 0 and len(report.failed) == 1 and "symbolic link" in report.failed[0]
    cat.close()
