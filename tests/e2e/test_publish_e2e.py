"""Publish a run's outputs to the real local registry and verify them back from it:
into an empty directory, then a changed layer, a wrong key and a missing attachment."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from executor.registry.oci import INDEX, MANIFEST, Registry, descriptor
from tests.e2e.conftest import NO_FRAMEWORKS, Rexec, gen, spec

pytestmark = [pytest.mark.docker, pytest.mark.registry, pytest.mark.usefixtures("engine")]

REGISTRY = "127.0.0.1:5000"
JOB = (
    "import os, json; os.makedirs('/outputs/model');"
    " open('/outputs/model/w.txt', 'w').write('weights');"
    " json.dump({'acc': 0.9}, open('/outputs/metrics.json', 'w'))"
)


@pytest.fixture
def published(rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path) -> dict[str, Any]:
    doc = spec("model", ["python3", "-c", JOB], determinism=NO_FRAMEWORKS)
    run = rexec.run(gen(tmp_path / "spec.toml", doc), keys[0], tmp_path / "runs")
    repo = f"rexec-test/model-{secrets.token_hex(4)}"
    doc = json.loads(
        rexec("publish", run, f"{REGISTRY}/{repo}:v1", "--key", keys[1], "--json").stdout
    )
    return {"run": run, "repo": repo, "doc": doc}


def verify(rexec: Rexec, ref: str, key: Path, *more: str | Path, check: int = 0) -> Any:
    return rexec("verify", ref, "--key", key, "--json", *more, check=check)


def test_published_outputs_verify_from_the_registry_into_an_empty_directory(
    rexec: Rexec, keys: tuple[Path, Path], published: dict[str, Any], tmp_path: Path
) -> None:
    run, doc = published["run"], published["doc"]
    from executor.record.reader import load_record

    record = load_record(run)
    assert {layer["name"]: layer["digest"] for layer in doc["layers"]} == {
        name: f"sha256:{digest}" for name, digest in record.outputs.items()
    }  # one layer per output; its digest is the output's signed sha256
    out = tmp_path / "deploy"
    got = json.loads(verify(rexec, doc["artifact"], keys[1], "--output", out).stdout)
    assert got["verified"] and got["run_id"] == run.name and got["signer"].startswith("key ")
    assert got["status"] == "succeeded"  # shown on this path as on every other
    assert got["registry"]["attachedBy"] == doc["attachedBy"] in ("referrers API", "tag schema")
    for name in record.outputs:
        assert (out / name).read_bytes() == (run / "outputs" / name).read_bytes()
    assert verify(rexec, doc["artifact"], keys[1], "--output", out, check=2).code == 2  # not empty


def test_a_wrong_key_a_missing_attachment_and_a_changed_layer_each_fail(
    rexec: Rexec, keys: tuple[Path, Path], published: dict[str, Any], tmp_path: Path
) -> None:
    doc, repo = published["doc"], published["repo"]
    rexec("keygen", "--out", tmp_path / "other")
    wrong = verify(rexec, doc["artifact"], tmp_path / "other.pub", check=3)
    assert "no attached record verifies under the trust policy" in wrong.stdout  # --json
    registry = Registry(REGISTRY)
    digest = doc["artifact"].split("@")[1]
    manifest = json.loads(registry.manifest(repo, digest) or b"")
    bare = dict(manifest, annotations={**manifest["annotations"], "copy": "without its record"})
    bare_bytes = json.dumps(bare).encode()
    registry.push_manifest(repo, descriptor(MANIFEST, bare_bytes)["digest"], bare_bytes, MANIFEST)
    missing = verify(
        rexec, f"{REGISTRY}/{repo}@{descriptor(MANIFEST, bare_bytes)['digest']}", keys[1], check=3
    )
    assert "no signed record is attached" in missing.stdout
    forged_blob = b"forged weights"
    forged_desc = descriptor("application/octet-stream", forged_blob)
    registry.push_blob(repo, forged_blob, forged_desc["digest"])
    layers = [
        dict(layer, digest=forged_desc["digest"], size=len(forged_blob))
        if layer["annotations"]["org.opencontainers.image.title"] == "model/w.txt"
        else layer
        for layer in manifest["layers"]
    ]
    forged = json.dumps(dict(manifest, layers=layers)).encode()
    forged_digest = descriptor(MANIFEST, forged)["digest"]
    registry.push_manifest(repo, forged_digest, forged, MANIFEST)
    referrers, _ = registry.referrers(
        repo, digest
    )  # the genuine attachment, re-pointed at the forgery
    attached = json.loads(registry.manifest(repo, referrers[0]["digest"]) or b"")
    moved = json.dumps(dict(attached, subject=descriptor(MANIFEST, forged))).encode()
    moved_desc = descriptor(MANIFEST, moved, artifactType=attached["artifactType"])
    registry.push_manifest(repo, moved_desc["digest"], moved, MANIFEST)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [moved_desc],
        }
    ).encode()
    registry.push_manifest(
        repo, forged_digest.replace(":", "-"), index, "application/vnd.oci.image.index.v1+json"
    )
    changed = verify(rexec, f"{REGISTRY}/{repo}@{forged_digest}", keys[1], check=4)
    error = json.loads(changed.stdout)["error"]
    assert "1 layer(s) differ from the signed record" in error["message"]
    assert any("model/w.txt" in d for d in error["details"])


def _forge(registry: Registry, repo: str, manifest: dict[str, Any], genuine: str) -> str:
    """Push ``manifest`` and re-point the genuine record's attachment at it (anyone with
    push rights can): returns the forged artifact's reference."""
    data = json.dumps(manifest).encode()
    digest = descriptor(MANIFEST, data)["digest"]
    registry.push_manifest(repo, digest, data, MANIFEST)
    attachments, _ = registry.referrers(repo, genuine)
    entries = []
    for entry in attachments:
        attached = json.loads(registry.manifest(repo, entry["digest"]) or b"")
        moved = json.dumps(dict(attached, subject=descriptor(MANIFEST, data))).encode()
        entries.append(descriptor(MANIFEST, moved, artifactType=attached["artifactType"],
                                  annotations=entry.get("annotations") or {}))  # fmt: skip
        registry.push_manifest(repo, entries[-1]["digest"], moved, MANIFEST)
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}
    registry.push_manifest(repo, digest.replace(":", "-"), json.dumps(index).encode(), INDEX)
    return f"{REGISTRY}/{repo}@{digest}"


def test_a_manifest_that_drops_a_signed_layer_is_refused_and_nothing_written(
    rexec: Rexec, keys: tuple[Path, Path], published: dict[str, Any], tmp_path: Path
) -> None:
    """Every layer it carries is signed, but one signed output is missing: a partial
    model used to be written under --output and reported VERIFIED."""
    registry, repo, doc = Registry(REGISTRY), published["repo"], published["doc"]
    genuine = doc["artifact"].split("@")[1]
    manifest = json.loads(registry.manifest(repo, genuine) or b"")
    manifest["layers"] = [
        layer for layer in manifest["layers"]
        if layer["annotations"]["org.opencontainers.image.title"] != "metrics.json"
    ]  # fmt: skip
    partial = _forge(registry, repo, manifest, genuine)
    out = tmp_path / "deploy"
    refused = verify(rexec, partial, keys[1], "--output", out, check=4)
    assert "metrics.json: signed by the record, missing from the manifest" in refused.stdout
    assert not out.exists() or list(out.iterdir()) == []


def test_a_layer_longer_than_announced_is_refused_while_streaming(
    rexec: Rexec, keys: tuple[Path, Path], published: dict[str, Any], tmp_path: Path
) -> None:
    registry, repo, doc = Registry(REGISTRY), published["repo"], published["doc"]
    genuine = doc["artifact"].split("@")[1]
    manifest = json.loads(registry.manifest(repo, genuine) or b"")
    for layer in manifest["layers"]:
        layer["size"] = 1  # the bytes (and digest) are the genuine ones; the size lies
    short = _forge(registry, repo, manifest, genuine)
    out = tmp_path / "deploy"
    refused = verify(rexec, short, keys[1], "--output", out, check=4)
    assert "longer than the 1 bytes announced" in refused.stdout
    assert not out.exists() or list(out.iterdir()) == []


def test_a_layer_announced_larger_than_the_disk_is_refused_before_any_download(
    rexec: Rexec, keys: tuple[Path, Path], published: dict[str, Any], tmp_path: Path
) -> None:
    """A blob announced at 50 GiB used to be buffered into memory."""
    registry, repo, doc = Registry(REGISTRY), published["repo"], published["doc"]
    genuine = doc["artifact"].split("@")[1]
    manifest = json.loads(registry.manifest(repo, genuine) or b"")
    manifest["layers"][0]["size"] = 50 << 40
    huge = _forge(registry, repo, manifest, genuine)
    out = tmp_path / "deploy"
    refused = verify(rexec, huge, keys[1], "--output", out, check=2)
    assert "the artifact announces" in refused.stdout and list(out.iterdir()) == []


def test_the_registry_path_applies_the_approval_and_status_gate(
    rexec: Rexec, keys: tuple[Path, Path], published: dict[str, Any], tmp_path: Path
) -> None:
    """verify REGISTRY… took --require-approval and ignored it."""
    doc, run = published["doc"], published["run"]
    rexec("keygen", "--out", tmp_path / "lead")
    lead = tmp_path / "lead.pub"
    none = verify(rexec, doc["artifact"], keys[1], "--require-approval", lead, check=3)
    assert "0 of the 1 required approval(s)" in none.stdout
    rexec("approve", run, "--key", keys[1], "--signing-key", tmp_path / "lead.key")
    again = json.loads(
        rexec(
            "publish", run, f"{REGISTRY}/{published['repo']}:v1", "--key", keys[1], "--json"
        ).stdout
    )
    assert again["artifact"] == doc["artifact"] and len(again["approvals"]) == 1
    got = json.loads(verify(rexec, doc["artifact"], keys[1], "--require-approval", lead).stdout)
    assert got["approvals"]["approvedBy"] == [str(lead)]


def test_a_failed_run_is_not_published_or_deployed_as_a_success(
    rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    command = ["sh", "-c", "echo half > /outputs/model.txt; exit 3"]
    doc = spec("broken", command, determinism=NO_FRAMEWORKS)
    run = rexec.run(gen(tmp_path / "spec.toml", doc), keys[0], tmp_path / "runs", check=5)
    target = f"{REGISTRY}/rexec-test/broken-{secrets.token_hex(4)}:v1"
    refused = rexec("publish", run, target, "--key", keys[1], check=5)
    assert "did not succeed" in refused.stderr
    doc = json.loads(
        rexec("publish", run, target, "--key", keys[1], "--allow-failed", "--json").stdout
    )
    gate = verify(rexec, doc["artifact"], keys[1], check=5)
    assert json.loads(gate.stdout)["status"] == "failed"
    verify(rexec, doc["artifact"], keys[1], "--allow-failed")
