"""Tags, notes and the archive mark: unsigned, shown as such, kept across a rebuild, and
archiving hides a run from the default views only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from executor import catalog, web
from executor.canonical import sha256_hex
from executor.cli import main
from executor.errors import InputError

EVIL = "<script>alert(1)</script>"


def _key(run_id: str) -> dict[str, str]:
    return {"run_id": run_id, "statement_sha256": sha256_hex(run_id.encode())}


@pytest.fixture
def location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = tmp_path / "c.sqlite"
    monkeypatch.setenv("REXEC_CATALOG", str(path))
    cat = catalog.open_catalog(path)
    cat.put_many(
        [
            {
                "runs": [
                    {
                        **_key(f"run-{i}"),
                        "name": "train",
                        "path": f"/x/{i}",
                        "started": f"2026-12-0{i}",
                        "status": "succeeded",
                    }
                ]
            }
            for i in range(1, 4)
        ]
    )
    cat.close()
    return str(path)


def ids(location: str, **filters: object) -> list[str]:
    cat = catalog.open_catalog(location)
    try:
        return [r["run_id"] for r in catalog.log(cat, **filters)]
    finally:
        cat.close()


def test_tags_notes_and_archive_through_the_commands(
    location: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tag", "run-1", "baseline", "lr-sweep"]) == 0
    assert main(["note", "run-1", "diverged after epoch 3"]) == 0
    assert main(["archive", "run-2", "--json"]) == 0
    archived = json.loads(capsys.readouterr().out.split("\n", 2)[-1])["runs"]["run-2"]
    assert archived["archived"]["author"] and archived["unsigned"] is True
    assert ids(location, tag="baseline") == ["run-1"]
    assert ids(location) == ["run-3", "run-1"]  # run-2 archived: out of the default view
    assert ids(location, archived=True) == ["run-3", "run-2", "run-1"]
    assert main(["show", "run-1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["annotations"]
    assert shown["unsigned"] is True
    assert [t["value"] for t in shown["tags"]] == ["baseline", "lr-sweep"]
    assert shown["notes"][0]["value"] == "diverged after epoch 3" and shown["notes"][0]["author"]
    assert (
        main(["archive", "run-2", "--remove"]) == 0
        and main(["tag", "run-1", "baseline", "--remove"]) == 0
    )
    assert ids(location) == ["run-3", "run-2", "run-1"] and ids(location, tag="baseline") == []


def test_a_rebuild_from_the_records_keeps_the_annotations(location: str) -> None:
    cat = catalog.open_catalog(location)
    try:
        statement = sha256_hex(b"run-1")
        catalog.annotate(cat, statement, "run-1", "tag", "keep")
        catalog.index_records(cat, [], rebuild=True)  # every indexed row cleared
        assert cat.rows("SELECT count(*) AS n FROM runs") == [{"n": 0}]
        assert [t["value"] for t in catalog.annotations_of(cat, [statement])[statement].tags] == [
            "keep"
        ]
    finally:
        cat.close()


@pytest.mark.parametrize(
    ("kind", "value"), [("tag", "two words"), ("tag", ""), ("tag", "x" * 65), ("note", "")]
)
def test_a_bad_tag_or_note_is_refused_by_name(location: str, kind: str, value: str) -> None:
    cat = catalog.open_catalog(location)
    try:
        with pytest.raises(InputError, match=kind):
            catalog.annotate(cat, sha256_hex(b"run-1"), "run-1", kind, value)
    finally:
        cat.close()


def test_the_web_view_shows_annotations_as_unsigned_text(location: str) -> None:
    cat = catalog.open_catalog(location)
    try:
        catalog.annotate(cat, sha256_hex(b"run-1"), "run-1", "note", EVIL)
        catalog.annotate(cat, sha256_hex(b"run-1"), "run-1", "tag", "<b>x</b>")
    finally:
        cat.close()
    client = web.create_app(location, hosts=["localhost"]).test_client()
    page = client.get("/run/run-1", headers={"Host": "localhost"}).data.decode()
    assert "unsigned: this catalog's, not the record's" in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    ledger = client.get("/", headers={"Host": "localhost"}).data.decode()
    assert "&lt;b&gt;x&lt;/b&gt;" in ledger and "<b>x</b>" not in ledger
    tagged = client.get("/?tag=%3Cb%3Ex%3C%2Fb%3E", headers={"Host": "localhost"}).data.decode()
    assert tagged.count('href="/run/') == 1
