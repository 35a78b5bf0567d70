"""`rexec snapshot hash|verify|diff` through the real argument parser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from executor.cli import main
from executor.snapshot import hash_tree


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    (d / "x.csv").write_text("1\n")
    (d / "y.csv").write_text("2\n")
    return d


def test_hash_prints_digest_alone(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["snapshot", "hash", str(data)]) == 0
    out, err = capsys.readouterr()
    assert out == hash_tree(data, use_cache=False).digest + "\n"
    assert "2 files" in err


def test_hash_json_and_quiet(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["snapshot", "hash", str(data), "--algo", "blake3", "--json", "-q"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["digest"].startswith("blake3-tree-v1:")
    assert (doc["files"], doc["bytes"], doc["cache_used"]) == (2, 4, True)
    assert Path(doc["listing"]).is_file()
    assert err == ""


def test_verify_exit_codes(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["snapshot", "hash", str(data), "-q"])
    digest = capsys.readouterr().out.strip()
    assert main(["snapshot", "verify", str(data), digest, "-q"]) == 0
    (data / "x.csv").write_text("9\n")
    assert main(["snapshot", "verify", str(data), digest, "-q"]) == 4
    err = capsys.readouterr().err
    assert "changed: x.csv" in err
    assert main(["snapshot", "verify", str(data), "nope"]) == 2


def test_hash_error_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["snapshot", "hash", str(tmp_path / "missing")]) == 2
    assert "no such directory" in capsys.readouterr().err


def _run_record(tmp_path: Path, data: Path) -> tuple[Path, str]:
    snap = hash_tree(data)
    run = tmp_path / "runs" / "20260101T000000Z-demo-abcdef"
    (run / "inputs").mkdir(parents=True)
    with open(run / "inputs" / "train.listing.json", "w") as out:
        snap.listing.write_json(out)
    name, hexpart = snap.digest.split(":")
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "predicate": {
            "buildDefinition": {
                "resolvedDependencies": [{"name": "train", "digest": {name: hexpart}}]
            }
        },
    }
    (run / "statement.json").write_text(json.dumps(statement))
    return run, snap.digest


@pytest.mark.parametrize("form", ["run-dir", "statement", "listing"])
def test_diff_against_run_record(
    tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str], form: str
) -> None:
    run, _digest = _run_record(tmp_path, data)
    ref = {
        "run-dir": run,
        "statement": run / "statement.json",
        "listing": run / "inputs" / "train.listing.json",
    }[form]
    assert main(["snapshot", "diff", str(data), str(ref), "-q"]) == 0
    (data / "y.csv").unlink()
    (data / "z.csv").write_text("3\n")
    capsys.readouterr()
    assert main(["snapshot", "diff", str(data), str(ref), "-q"]) == 4
    assert capsys.readouterr().out.splitlines() == ["added: z.csv", "removed: y.csv"]


def test_diff_by_digest_needs_a_stored_listing(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["snapshot", "diff", str(data), "sha256-tree-v1:" + "1" * 64]) == 2
    assert "no listing is stored" in capsys.readouterr().err
    main(["snapshot", "hash", str(data), "-q"])
    digest = capsys.readouterr().out.strip()
    (data / "x.csv").write_text("changed\n")
    assert main(["snapshot", "diff", str(data), digest, "--json", "-q"]) == 4
    doc = json.loads(capsys.readouterr().out)
    assert (doc["changed"], doc["pinned"]) == (["x.csv"], digest)


def test_statement_filters_unpinned_listings(
    tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, _ = _run_record(tmp_path, data)
    doc = json.loads((run / "statement.json").read_text())
    doc["predicate"]["buildDefinition"]["resolvedDependencies"] = []
    (run / "statement.json").write_text(json.dumps(doc))
    assert main(["snapshot", "diff", str(data), str(run), "-q"]) == 2
    assert "no input listing" in capsys.readouterr().err
