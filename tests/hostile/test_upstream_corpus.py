"""Forged, unsigned and id-colliding upstream records: the catalog is an index, never an
authority. Every use of another run's record verifies it first, under the caller's
policy, and a record that claims a real run's id sits beside it as a conflict.

Each case is an attack that worked before rexec verified what links records: the
forgery was read, pinned, shown or counted.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from executor import catalog
from executor.errors import InputError, MismatchError, VerificationError
from tests.hostile.lab import Lab, set_run_id, set_started

LATER = "2099-01-01T00:00:00Z"


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(tmp_path)


def _resolve(lab: Lab, ref: str, said: list[str] | None = None) -> catalog.Upstream:
    cat = catalog.open_catalog()
    try:
        found, _ = catalog.find_upstream(
            ref,
            runs_dir=lab.runs,
            catalog=cat,
            policy=lab.policy,
            say=(said.append if said is not None else lambda t: None),
        )
        return found
    finally:
        cat.close()


def _dependency(run_dir: Path, name: str) -> dict[str, object]:
    doc = json.loads((run_dir / "statement.json").read_bytes())
    deps = doc["predicate"]["buildDefinition"]["resolvedDependencies"]
    found: dict[str, object] = next(d for d in deps if d["name"] == f"input:{name}")
    return found


def test_latest_skips_a_newer_record_signed_by_another_key(lab: Lab) -> None:
    real = lab.run("prepare")
    forged = lab.run("prepare", writes={"prepare/out.txt": b"FORGED"}, key=lab.evil_key)
    lab.resign(forged.run_dir, key=lab.evil_key, edit=lambda d: set_started(d, LATER))
    lab.index(forged.run_dir)
    said: list[str] = []
    found = _resolve(lab, "latest:prepare:prepare", said)
    assert found.record.run_id == real.run_id
    assert any(forged.run_id in line and "does not verify" in line for line in said)


def test_latest_skips_an_unsigned_newer_record(lab: Lab) -> None:
    real = lab.run("prepare")
    unsigned = lab.run("prepare", sign="none", writes={"prepare/out.txt": b"unsigned"})
    found = _resolve(lab, "latest:prepare:prepare")
    assert found.record.run_id == real.run_id != unsigned.run_id


def test_latest_skips_a_record_the_index_marked_failed(lab: Lab) -> None:
    real = lab.run("prepare")
    later = lab.run("prepare", writes={"prepare/out.txt": b"later"})
    (later.run_dir / "outputs" / "prepare" / "out.txt").write_bytes(b"edited after signing")
    report = lab.index(later.run_dir, verify=True)  # the catalog says failed; still skipped
    assert report.updated == 1
    found = _resolve(lab, "latest:prepare:prepare")
    assert found.record.run_id == real.run_id


def test_latest_skips_a_failed_run_and_a_replay_even_if_signed(lab: Lab) -> None:
    real = lab.run("prepare")
    lab.run("prepare", exit_code=3, writes={"prepare/out.txt": b"half"})
    replay = lab.run("prepare", writes={"prepare/out.txt": b"replayed"})
    lab.resign(
        replay.run_dir,
        key=lab.key,
        edit=lambda d: d["predicate"]["buildDefinition"]["internalParameters"].update(
            lineage={"replayOf": real.run_id, "originalStatementSha256": real.statement_sha256}
        ),
    )
    lab.index(replay.run_dir)
    assert _resolve(lab, "latest:prepare:prepare").record.run_id == real.run_id


def test_a_copy_claiming_a_real_run_id_does_not_replace_it(lab: Lab, tmp_path: Path) -> None:
    real = lab.run("prepare")
    copy = tmp_path / "elsewhere" / real.run_id
    shutil.copytree(real.run_dir, copy)
    (copy / "outputs" / "prepare" / "out.txt").write_bytes(b"FORGED")
    lab.resign(copy, key=lab.evil_key, edit=lambda d: set_started(d, LATER))
    report = lab.index(copy)
    assert report.added == 1 and len(report.conflicts) == 1 and real.run_id in report.conflicts[0]
    cat = catalog.open_catalog()
    try:
        assert len(cat.records_of(real.run_id)) == 2  # both rows: never a silent replacement
        shown = catalog.show(cat, real.run_id)
        assert shown["conflict"] == real.run_id
        assert {r["path"] for r in shown["records"]} == {str(real.run_dir), str(copy)}
        genuine = catalog.show(cat, str(real.run_dir))  # named by its directory: that record
        assert genuine["run"]["path"] == str(real.run_dir)
        (other,) = genuine["otherClaims"]
        assert other["statement_sha256"] != real.statement_sha256 and not other["verified"]
        with pytest.raises(InputError, match="records claim run"):
            catalog.lineage(cat, real.run_id, direction="both")
        with pytest.raises(InputError, match="records claim run"):
            catalog.compare(cat, [real.run_id, str(copy)])
    finally:
        cat.close()


def test_run_ref_reads_the_genuine_record_when_a_forged_copy_claims_its_id(
    lab: Lab, tmp_path: Path
) -> None:
    real = lab.run("prepare")
    copy = tmp_path / "elsewhere" / real.run_id
    shutil.copytree(real.run_dir, copy)
    (copy / "outputs" / "prepare" / "out.txt").write_bytes(b"FORGED")
    lab.resign(copy, key=lab.evil_key, edit=lambda d: set_started(d, LATER))
    lab.index(copy)  # the copy is indexed last: it used to take the row
    lab.runs = tmp_path / "empty-runs"  # only the catalog says where records are
    found = _resolve(lab, f"run:{real.run_id}:prepare")
    assert found.record.path == real.run_dir and found.signer.startswith("key ")


def test_a_runs_dir_entry_holding_another_runs_record_is_not_that_run(lab: Lab) -> None:
    real = lab.run("prepare")
    other = lab.run("prepare", writes={"prepare/out.txt": b"other"})
    target = lab.runs / "20990101T000000Z-prepare-aaaaaa"
    shutil.copytree(other.run_dir, target)  # genuine, but of another run
    with pytest.raises(InputError, match="no record of run"):
        _resolve(lab, "run:20990101T000000Z-prepare-bbbbbb:prepare")
    with pytest.raises(VerificationError, match="verifies") as info:
        _resolve(lab, f"run:{target.name}:prepare")
    assert any(f"it is run {other.run_id}" in d for d in info.value.details)
    assert real.run_id


def test_two_verified_records_of_one_run_id_are_refused(lab: Lab, tmp_path: Path) -> None:
    """A trusted key that signed two different Statements for one run id: which is meant
    cannot be decided, so neither is read."""
    real = lab.run("prepare")
    twin = tmp_path / "twin" / real.run_id
    lab.resign(real.run_dir, key=lab.key, to=twin, edit=lambda d: set_started(d, LATER))
    lab.index(twin)
    with pytest.raises(VerificationError, match="different records"):
        _resolve(lab, f"run:{real.run_id}:prepare")


def test_without_a_policy_a_from_input_is_refused_with_a_hint(lab: Lab) -> None:
    real = lab.run("prepare")
    cat = catalog.open_catalog()
    try:
        with pytest.raises(InputError, match="needs a trust policy") as info:
            catalog.find_upstream(
                f"run:{real.run_id}:prepare", runs_dir=lab.runs, catalog=cat, policy=None
            )
    finally:
        cat.close()
    assert info.value.hint is not None and "trust.toml" in info.value.hint


def test_when_no_candidate_verifies_each_is_listed_and_nothing_is_read(lab: Lab) -> None:
    forged = lab.run("prepare", key=lab.evil_key)
    with pytest.raises(VerificationError, match="no record of a succeeded run named") as info:
        _resolve(lab, "latest:prepare:prepare")
    assert any(str(forged.run_dir) in d for d in info.value.details)


def test_the_downstream_record_signs_the_upstream_signer_it_verified(lab: Lab) -> None:
    up = lab.run("prepare", writes={"dataset/rows.txt": b"rows"})
    down = lab.run("train", inputs={"data": f"run:{up.run_id}:dataset"})
    notes = _dependency(down.run_dir, "data")["annotations"]
    assert notes["fromRun"] == up.run_id  # type: ignore[index]
    assert notes["fromStatementSha256"] == up.statement_sha256  # type: ignore[index]
    assert notes["fromSigner"] == f"key {lab.policy.hint}"  # type: ignore[index]


def test_a_run_reading_a_forged_latest_upstream_reads_the_genuine_one(lab: Lab) -> None:
    """The worst case of the probe: a training run read a forged dataset and its own
    record, signed with the real key, verified."""
    real = lab.run("prepare", writes={"dataset/rows.txt": b"real rows"})
    forged = lab.run("prepare", writes={"dataset/rows.txt": b"POISON"}, key=lab.evil_key)
    lab.resign(forged.run_dir, key=lab.evil_key, edit=lambda d: set_started(d, LATER))
    lab.index(forged.run_dir)
    down = lab.run("train", inputs={"data": "latest:prepare:dataset"})
    notes = _dependency(down.run_dir, "data")["annotations"]
    assert notes["fromRun"] == real.run_id  # type: ignore[index]
    assert notes["hostPath"] == str(real.run_dir / "outputs" / "dataset")  # type: ignore[index]


def test_a_from_input_without_a_policy_stops_the_run_before_anything_runs(lab: Lab) -> None:
    up = lab.run("prepare", writes={"dataset/rows.txt": b"rows"})
    before = sorted(p.name for p in lab.runs.iterdir())
    with pytest.raises(InputError, match="needs a trust policy"):
        lab.run("train", inputs={"data": f"run:{up.run_id}:dataset"}, upstream=None)
    assert sorted(p.name for p in lab.runs.iterdir()) == before  # nothing written


def test_lock_pins_the_newest_record_that_verifies_not_the_newest_row(lab: Lab) -> None:
    real = lab.run("prepare", writes={"dataset/rows.txt": b"rows"})
    forged = lab.run("prepare", writes={"dataset/rows.txt": b"POISON"}, key=lab.evil_key)
    lab.resign(forged.run_dir, key=lab.evil_key, edit=lambda d: set_started(d, LATER))
    lab.index(forged.run_dir)
    cat = catalog.open_catalog()
    try:
        ref, digest = catalog.pin_from(
            "latest:prepare:dataset", runs_dir=lab.runs, catalog=cat, policy=lab.policy
        )
    finally:
        cat.close()
    assert ref == f"run:{real.run_id}:dataset"
    trees = json.loads((real.run_dir / "statement.json").read_bytes())["predicate"][
        "buildDefinition"
    ]["internalParameters"]["outputTrees"]
    assert digest == trees["outputs/dataset/"]


def test_a_pinned_digest_that_the_verified_upstream_does_not_sign_is_a_mismatch(
    lab: Lab,
) -> None:
    up = lab.run("prepare", writes={"dataset/rows.txt": b"rows"})
    text = lab.spec_text("train", {"data": f"run:{up.run_id}:dataset"})
    text = text.replace(
        'mount = "/data"', 'mount = "/data"\ndigest = "sha256-tree-v1:' + "0" * 64 + '"'
    )
    from executor import spec

    run_spec = spec.loads(text.encode(), source=lab.root / "t.toml")
    cat = catalog.open_catalog()
    try:
        with pytest.raises(MismatchError, match=f"but run {up.run_id} signed"):
            catalog.resolve_inputs(run_spec, runs_dir=lab.runs, catalog=cat, policy=lab.policy)
    finally:
        cat.close()


def test_log_counts_the_records_that_claim_each_run_id(lab: Lab, tmp_path: Path) -> None:
    real = lab.run("prepare")
    copy = tmp_path / "copy" / real.run_id
    lab.resign(real.run_dir, key=lab.evil_key, to=copy, edit=lambda d: set_started(d, LATER))
    lab.index(copy)
    cat = catalog.open_catalog()
    try:
        rows = [r for r in catalog.log(cat) if r["run_id"] == real.run_id]
        assert len(rows) == 2 and {r["claims"] for r in rows} == {2}
        assert cat.counts()["conflicts"] == 1
    finally:
        cat.close()


def test_a_forged_regeneration_claim_is_never_shown_as_superseding(lab: Lab) -> None:
    real = lab.run("train")
    forged = lab.run("train", writes={"train/out.txt": b"new"}, key=lab.evil_key)
    lineage = {
        "derivedFrom": real.run_id,
        "originalStatementSha256": real.statement_sha256,
        "regeneration": {"id": "20991231T000000Z-regenerate-evil"},
        "changedInputs": [],
    }
    lab.resign(
        forged.run_dir,
        key=lab.evil_key,
        edit=lambda d: d["predicate"]["buildDefinition"]["internalParameters"].update(
            lineage=lineage
        ),
    )
    lab.index(forged.run_dir, verify=True)  # verified under the team's policy: it fails
    cat = catalog.open_catalog()
    try:
        shown = catalog.show(cat, str(real.run_dir))
        (claim,) = shown["supersededBy"]
        assert claim["verified"] is False and claim["verification"].startswith("failed")
        assert catalog.log(cat, stale=True) == []  # nothing stale on a forger's word
    finally:
        cat.close()


def test_an_unverified_replay_verdict_is_a_claim(lab: Lab) -> None:
    real = lab.run("train")
    replay = lab.run("train", key=lab.evil_key)
    lab.resign(
        replay.run_dir,
        key=lab.evil_key,
        edit=lambda d: d["predicate"]["buildDefinition"]["internalParameters"].update(
            lineage={"replayOf": real.run_id, "originalStatementSha256": real.statement_sha256}
        ),
    )
    lab.index(replay.run_dir)
    cat = catalog.open_catalog()
    try:
        (shown,) = catalog.show(cat, str(real.run_dir))["replays"]
        assert shown["run_id"] == replay.run_id and shown["verified"] is False
    finally:
        cat.close()


def test_stage_reuse_refuses_a_record_that_is_no_longer_the_indexed_one(lab: Lab) -> None:
    from executor.pipelines.reuse import find_reusable

    real = lab.run("train")
    cat = catalog.open_catalog()
    try:
        (row,) = cat.records_of(real.run_id)
        key = row["stage_key"]
        lab.resign(real.run_dir, key=lab.key, edit=lambda d: set_started(d, LATER))  # rewritten
        said: list[str] = []
        reuse = find_reusable(cat, key, policy=lab.policy, say=said.append)
    finally:
        cat.close()
    assert reuse.found is None and "no longer that run" in reuse.refused[0]


def test_a_record_claiming_a_run_id_it_was_not_given_is_listed_under_that_id(
    lab: Lab, tmp_path: Path
) -> None:
    """set_run_id: an attacker's record that claims the id of a run it is not."""
    real = lab.run("prepare")
    other = lab.run("prepare", key=lab.evil_key)
    lab.resign(other.run_dir, key=lab.evil_key, edit=lambda d: set_run_id(d, real.run_id))
    report = lab.index(other.run_dir)
    assert report.conflicts
    said: list[str] = []
    assert _resolve(lab, f"run:{real.run_id}:prepare", said).record.path == real.run_dir


def test_a_copy_of_the_same_record_elsewhere_never_moves_its_row(lab: Lab, tmp_path: Path) -> None:
    """The same Statement with edited outputs, re-signed: the same record as far as its
    digest goes, so its row stays where the record still is, and run: still resolves."""
    real = lab.run("prepare")
    copy = tmp_path / "elsewhere" / real.run_id
    shutil.copytree(real.run_dir, copy)
    (copy / "outputs" / "prepare" / "out.txt").write_bytes(b"FORGED")
    lab.resign(copy, key=lab.evil_key)
    report = lab.index(copy)
    assert report.added == report.updated == 0 and report.copies
    cat = catalog.open_catalog()
    try:
        (row,) = cat.records_of(real.run_id)
        assert row["path"] == str(real.run_dir)
    finally:
        cat.close()
    lab.runs = tmp_path / "empty-runs"
    assert _resolve(lab, f"run:{real.run_id}:prepare").record.path == real.run_dir


def test_a_record_planted_where_a_queued_stage_will_look_is_refused_on_the_node(
    lab: Lab,
) -> None:
    """`pipeline run --submit` binds a stage to the run id of an upstream job that has not
    run; anyone who can write the shared runs dir can put a record there first. The node
    reads it only under the keys the (sha256-bound) submission names: the attacker's
    record is refused, the genuine one is read."""
    from executor import runner
    from executor.cluster import SiteOptions, Submission
    from executor.cluster.node import _load_spec, _upstream

    planted = Path(lab.run("up", key=lab.evil_key).run_dir)  # the run id the job will use
    text = lab.spec_text("down", {"data": "latest:up:up"})
    sub = Submission(
        run_id="20261201T000000Z-down-000000",
        spec_path=str(lab.root / "down.toml"),
        spec_sha256="-",
        runs_dir=str(lab.runs),
        site=SiteOptions(),
        sign={},
        spec_text=text,
        from_inputs={"data": {"from": f"run:{planted.name}:up"}},
        upstream_keys=(lab.pub.read_text(),),
    )

    def read() -> object:
        return runner.resolve_from_inputs(
            _load_spec(sub, None), runs_dir=lab.runs, policy=_upstream(sub), verified=None,
            say=lambda _: None,
        )  # fmt: skip

    with pytest.raises(VerificationError, match=r"verifies under key .*a key the submission"):
        read()
    shutil.rmtree(planted)
    genuine = Path(lab.run("up").run_dir)
    sub.from_inputs = {"data": {"from": f"run:{genuine.name}:up"}}
    (item,) = read().inputs  # type: ignore[attr-defined]
    assert item.from_run == genuine.name and item.from_signer
