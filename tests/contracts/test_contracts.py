"""Data contracts on real files: CSV, JSON Lines and Parquet read by pyarrow, every rule."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from executor import contracts, snapshot, spec
from executor.contracts import Contract, ContractViolation, parse_contract

RULES = {
    "files": "*.csv",
    "min_rows": 3,
    "columns": {
        "id": {"type": "int"},
        "score": {"type": "float", "min": 0, "max": 1, "max_null_rate": 0.25},
        "label": {"type": "string"},
    },
}


def _contract(raw: dict[str, object] = RULES) -> Contract:
    problems: list[str] = []
    found = parse_contract(raw, "inputs[0].contract", lambda k, m: problems.append(f"{k}: {m}"))
    assert found is not None and problems == []
    return found


def _check(root: Path, contract: Contract) -> list[str]:
    files = [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()]
    return contracts.violations(root, files, contract)


def test_a_good_csv_passes_and_each_broken_rule_is_named(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    (good / "rows.csv").write_text("id,score,label\n1,0.5,a\n2,,b\n3,1.0,c\n4,0.25,d\n")
    assert _check(good, _contract()) == []
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "rows.csv").write_text("id,score,label\n1,1.5,a\n2,,b\n")  # 2 rows, 1.5 > max, 50 % null
    found = _check(bad, _contract())
    assert any("rows.csv: 2 rows, the contract needs at least 3" in f for f in found)
    assert any("column 'score': max 1, found 1.5" in f for f in found)
    assert any("column 'score': 1 of 2 values are null (50.0%)" in f for f in found)
    (bad / "rows.csv").write_text("id,score,label\nx,0.5,a\n")  # not an int
    (found,) = _check(bad, _contract())
    assert "rows.csv: not readable as csv" in found and "int64" in found and "'x'" in found
    (bad / "rows.csv").write_text("id,label\n1,a\n2,b\n3,c\n")
    assert _check(bad, _contract()) == [
        "rows.csv: column 'score': missing (required; the file has id, label)"
    ]


def test_json_lines_and_parquet_are_checked_by_type(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.jsonl").write_text(
        "\n".join(json.dumps({"id": i, "score": i / 10, "label": "x"}) for i in range(4)) + "\n"
    )
    assert _check(tmp_path, _contract({**RULES, "files": "*.jsonl"})) == []
    pq.write_table(
        pa.table({"id": ["1", "2", "3"], "score": [0.1, 0.2, 0.3]}), tmp_path / "t.parquet"
    )
    found = _check(tmp_path, _contract({**RULES, "files": "*.parquet"}))
    assert "t.parquet: column 'id': type string, the contract says int" in found
    assert "t.parquet: column 'label': missing (required; the file has id, score)" in found


def test_a_contract_never_follows_a_link_and_needs_a_matching_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("id,score,label\n1,0.5,a\n2,0.5,b\n3,0.5,c\n")
    data = tmp_path / "data"
    data.mkdir()
    os.symlink(secret, data / "rows.csv")
    (found,) = contracts.violations(data, ["rows.csv"], _contract())
    assert "symbolic link" in found
    assert contracts.violations(data, [], _contract()) == [
        "no file matches '*.csv' (the contract needs at least one)"
    ]


def test_every_problem_in_a_contract_is_reported_at_once(tmp_path: Path) -> None:
    problems: list[str] = []
    raw = {
        "files": "../x",
        "format": "xls",
        "min_rows": -1,
        "columns": {"a": {"type": "date", "max_null_rate": 2, "zz": 1}},
    }
    assert parse_contract(raw, "inputs[0].contract", lambda k, m: problems.append(k)) is None
    assert problems == [
        "inputs[0].contract.files",
        "inputs[0].contract.format",
        "inputs[0].contract.min_rows",
        "inputs[0].contract.columns.a.zz",
        "inputs[0].contract.columns.a.type",
        "inputs[0].contract.columns.a.max_null_rate",
    ]


def test_a_spec_contract_is_recorded_and_enforced_in_preflight(tmp_path: Path) -> None:
    from executor.runner.preflight import check_pins

    data = tmp_path / "data"
    data.mkdir()
    (data / "rows.csv").write_text("id,score,label\n1,7,a\n2,0.5,b\n3,0.5,c\n")
    digest = snapshot.hash_tree(data).digest
    (tmp_path / "s.toml").write_text(
        f"""version = 1
name = "t"
[image]
ref = "r@sha256:{"0" * 64}"
[run]
command = ["true"]
seed = 1
[[inputs]]
name = "data"
path = "data"
digest = "{digest}"
mount = "/data"
[inputs.contract]
files = "*.csv"
[inputs.contract.columns.score]
type = "float"
max = 1
"""
    )
    loaded = spec.load(tmp_path / "s.toml")
    view = spec.resolved_view(loaded)
    assert view["inputs"][0]["contract"]["columns"]["score"] == {
        "type": "float",
        "max": 1,
        "required": True,
        "maxNullRate": 0.0,
    }
    assert Contract.from_json(view["inputs"][0]["contract"]) == loaded.inputs[0].contract
    with pytest.raises(ContractViolation) as info:
        check_pins(loaded, allow_dirty=False, say=lambda t: None)
    assert info.value.exit_code == 4
    assert (
        "input 'data' breaks its data contract: rows.csv: column 'score': max 1, found 7"
        in info.value.message
    )
