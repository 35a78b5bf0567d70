"""Publish a run's outputs to the real local registry and verify them back from it:
into an empty directory, then a changed layer, a wrong key and a missing attachment."""

from __future__ import annotations

import json
import secrets
import textwrap
from pathlib import Path
from typing import Any

import pytest

from executor.registry.oci import MANIFEST, Registry, descriptor
from tests.e2e.conftest import BASE_IMAGE, Rexec

pytestmark = [pytest.mark.docker, pytest.mark.registry, pytest.mark.usefixtures("engine")]

REGISTRY = "127.0.0.1:5000"
JOB = (
    "import os, json; os.makedirs('/outputs/model');"
    " open('/outputs/model/w.txt', 'w').write('weights');"
    " json.dump({'acc': 0.9}, open('/outputs/metrics.json', 'w'))"
)


@pytest.fixture
def published(rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path) -> dict[str, Any]:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        textwrap.dedent(f"""\
        version = 1
        name = "model"
        [image]
        ref = "{BASE_IMAGE}"
        [run]
        command = ["python3", "-c", {json.dumps(JOB)}]
        seed = 1
        [determinism]
        frameworks = []
        """)
    )
    run = rexec.run(spec, keys[0], tmp_path / "runs")
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
    assert got["verified"] and got["runId"] == run.name and got["signer"].startswith("key ")
    assert got["attachedBy"] == doc["attachedBy"] in ("referrers API", "tag schema")
    for name in record.outputs:
        assert (out / name).read_bytes() == (run / "outputs" / name).read_bytes()
    assert verify(rexec, doc["artifact"], keys[1], "--output", out, check=2).code == 2  # not empty


def test_a_wrong_key_a_missing_attachment_and_a_changed_layer_each_fail(
    rexec: Rexec, keys: tuple[Path, Path], published: dict[str, Any], tmp_path: Path
) -> None:
    doc, repo = published["doc"], published["repo"]
    rexec("keygen", "--out", tmp_path / "other")
    wrong = verify(rexec, doc["artifact"], tmp_path / "other.pub", check=3)
    assert "no attached record verifies under the trust policy" in wrong.stderr
    registry = Registry(REGISTRY)
    digest = doc["artifact"].split("@")[1]
    manifest = json.loads(registry.manifest(repo, digest) or b"")
    bare = dict(manifest, annotations={**manifest["annotations"], "copy": "without its record"})
    bare_bytes = json.dumps(bare).encode()
    registry.push_manifest(repo, descriptor(MANIFEST, bare_bytes)["digest"], bare_bytes, MANIFEST)
    missing = verify(
        rexec, f"{REGISTRY}/{repo}@{descriptor(MANIFEST, bare_bytes)['digest']}", keys[1], check=3
    )
    assert "no signed record is attached" in missing.stderr
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
    assert (
        "1 layer(s) differ from the signed record" in changed.stderr
        and "model/w.txt" in changed.stderr
    )
