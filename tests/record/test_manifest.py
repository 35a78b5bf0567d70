"""The run manifest: an in-toto Statement v1 with a SLSA Provenance v1 predicate."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

import pytest

from executor.errors import InputError
from executor.record import manifest
from executor.record.manifest import Byproduct, RunStatus, Subject

STARTED = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
FINISHED = datetime(2026, 1, 2, 3, 5, 6, tzinfo=UTC)


def build(**overrides: object) -> dict:  # type: ignore[type-arg]
    args: dict[str, object] = {
        "subjects": [Subject("z/model.npz", "aa" * 32), Subject("a.json", "bb" * 32)],
        "external": {"spec": {"seed": 1}},
        "internal": {"user": "65534:65534"},
        "dependencies": [
            {"name": "input:data", "digest": {"sha256-tree-v1": "cc" * 32}},
            {"name": "image", "uri": "oci://r/x", "digest": {"sha256": "dd" * 32}},
            {"name": "code", "digest": {"gitCommit": "ee" * 20}},
        ],
        "builder_id": "rexec://host",
        "builder_dependencies": [{"name": "container-engine", "uri": "pkg:generic/docker@20"}],
        "run_id": "20260102T030405Z-demo-abcdef",
        "started_on": STARTED,
        "finished_on": FINISHED,
        "status": RunStatus("failed", 3),
        "byproducts": [Byproduct("logs/stdout.log", b"hello\n", "text/plain")],
        "rexec_version": "0.1.0",
    }
    args.update(overrides)
    return manifest.build_statement(**args)  # type: ignore[arg-type]


def test_statement_layout() -> None:
    st = build()
    assert st["_type"] == "https://in-toto.io/Statement/v1"
    assert st["predicateType"] == "https://slsa.dev/provenance/v1"
    bd = st["predicate"]["buildDefinition"]
    assert bd["buildType"] == "https://rexec.dev/run-spec/v1"
    assert bd["externalParameters"] == {"spec": {"seed": 1}}
    assert bd["internalParameters"] == {
        "manifestSchema": "rexec.manifest/v1",
        "user": "65534:65534",
    }
    rd = st["predicate"]["runDetails"]
    assert rd["builder"] == {
        "id": "rexec://host",
        "version": {"rexec": "0.1.0"},
        "builderDependencies": [{"name": "container-engine", "uri": "pkg:generic/docker@20"}],
    }
    assert rd["metadata"] == {
        "invocationId": "20260102T030405Z-demo-abcdef",
        "startedOn": "2026-01-02T03:04:05.123456Z",
        "finishedOn": "2026-01-02T03:05:06.000000Z",
    }


def test_order_free_lists_are_sorted() -> None:
    st = build()
    assert [s["name"] for s in st["subject"]] == ["a.json", "z/model.npz"]
    deps = st["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert [d["name"] for d in deps] == ["code", "image", "input:data"]
    names = [b["name"] for b in st["predicate"]["runDetails"]["byproducts"]]
    assert names == sorted(names) == ["exit-status", "logs/stdout.log"]


def test_byproducts_carry_digests_and_the_status_is_signed_inline() -> None:
    products = {b["name"]: b for b in build()["predicate"]["runDetails"]["byproducts"]}
    assert products["logs/stdout.log"]["digest"] == {
        "sha256": hashlib.sha256(b"hello\n").hexdigest()
    }
    assert "content" not in products["logs/stdout.log"]
    status = products["exit-status"]
    assert status["annotations"] == {"status": "failed", "exitCode": 3, "oomKilled": False}
    content = base64.b64decode(status["content"])
    assert json.loads(content) == status["annotations"]
    assert status["digest"] == {"sha256": hashlib.sha256(content).hexdigest()}
    assert manifest.exit_status(build()) == {"status": "failed", "exitCode": 3, "oomKilled": False}


def test_canonical_bytes_do_not_depend_on_input_order() -> None:
    a = build()
    b = build(
        subjects=[Subject("a.json", "bb" * 32), Subject("z/model.npz", "aa" * 32)],
        external={"spec": {"seed": 1}},
    )
    assert manifest.dumps(a) == manifest.dumps(b)
    # For ASCII text, integers and no floats, RFC 8785 is sorted keys and no whitespace.
    expected = json.dumps(a, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert manifest.dumps(a) == expected.encode()


def test_loads_round_trip_and_rejects_non_statements() -> None:
    data = manifest.dumps(build())
    assert manifest.loads(data, source="s.json") == json.loads(data)
    with pytest.raises(InputError, match=r"s\.json: not a strict JSON"):
        manifest.loads(b"{", source="s.json")
    with pytest.raises(InputError, match="not an in-toto Statement v1"):
        manifest.loads(b'{"_type": "x"}', source="s.json")
    bad = json.loads(data)
    bad["subject"][0]["digest"] = {"md5": "00"}
    with pytest.raises(InputError, match="has no sha256 digest"):
        manifest.loads(json.dumps(bad).encode(), source="s.json")


def test_run_status_absent() -> None:
    assert manifest.exit_status({"predicate": {}}) is None
