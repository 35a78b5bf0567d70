"""A run's outputs as an OCI artifact, with its signed record attached (``rexec publish``),
and that artifact fetched and verified from the registry (``rexec verify REGISTRY/REPO@…``).

One layer per output file; each layer's digest is the output's sha256, which is
a subject of the signed Statement, so a deployment step can check the bytes it
pulls against the record. The record's Sigstore bundle (its DSSE payload is the
Statement) is pushed as a referrer of the artifact manifest: found through the
OCI 1.1 referrers API, or the ``sha256-<hex>`` tag where a registry lacks it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from executor import safeio
from executor.canonical import StrictJSONError, strict_loads
from executor.errors import InputError, MismatchError, VerificationError
from executor.record import store
from executor.record.reader import RunRecord
from executor.registry.oci import (
    EMPTY,
    INDEX,
    MANIFEST,
    Reference,
    Registry,
    descriptor,
    parse_reference,
)
from executor.signing import TrustPolicy

__all__ = ["ARTIFACT_TYPE", "BUNDLE_TYPE", "parse_reference", "publish", "pull_verified"]

ARTIFACT_TYPE = "application/vnd.dev.rexec.outputs.v1"
BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
TITLE = "org.opencontainers.image.title"
Say = Callable[[str], None]


def _empty() -> tuple[bytes, dict[str, Any]]:
    return b"{}", descriptor(EMPTY, b"{}")


def publish(record: RunRecord, target: Reference, *, say: Say) -> dict[str, Any]:
    """Push the outputs and attach the bundle; returns what was pushed."""
    if target.tag is None or target.digest is not None:
        raise InputError(f"{target}: publish to REGISTRY/REPO:TAG", hint="the digest is the result")
    registry = Registry(target.host)
    empty, empty_desc = _empty()
    registry.push_blob(target.repo, empty, empty_desc["digest"])
    layers = []
    for name, digest in sorted(record.outputs.items()):
        data = safeio.read_capped(record.outputs_dir / name, cap=8 << 30)
        if hashlib.sha256(data).hexdigest() != digest:
            raise MismatchError(f"{record.outputs_dir / name}: not the file the record signs")
        say(f"pushing {name} ({len(data)} bytes)")
        registry.push_blob(target.repo, data, f"sha256:{digest}")
        layers.append(descriptor("application/octet-stream", data, annotations={TITLE: name}))
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": empty_desc,
            "layers": layers,
            "annotations": {
                "dev.rexec.run-id": record.run_id,
                "dev.rexec.statement-sha256": record.statement_sha256,
            },
        },
        sort_keys=True,
    ).encode()
    registry.push_manifest(target.repo, target.tag, manifest, MANIFEST)
    subject = descriptor(MANIFEST, manifest)
    bundle = safeio.read_capped(record.path / store.BUNDLE, cap=16 << 20)
    registry.push_blob(target.repo, bundle, descriptor(BUNDLE_TYPE, bundle)["digest"])
    attached = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "artifactType": BUNDLE_TYPE,
            "config": empty_desc,
            "layers": [descriptor(BUNDLE_TYPE, bundle)],
            "subject": subject,
        },
        sort_keys=True,
    ).encode()
    attached_desc = descriptor(MANIFEST, attached, artifactType=BUNDLE_TYPE)
    headers = registry.push_manifest(target.repo, attached_desc["digest"], attached, MANIFEST)
    how = "referrers API"
    if "oci-subject" not in headers:  # no referrers API: keep the tag-schema index up to date
        how = "tag schema"
        tag = subject["digest"].replace(":", "-")
        old = registry.manifest(target.repo, tag)
        entries = (json.loads(old).get("manifests") or []) if old else []
        entries = [e for e in entries if e.get("digest") != attached_desc["digest"]] + [
            attached_desc
        ]
        index = json.dumps(
            {"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}, sort_keys=True
        )
        registry.push_manifest(target.repo, tag, index.encode(), INDEX)
    return {
        "artifact": f"{target.host}/{target.repo}@{subject['digest']}",
        "tag": str(target),
        "layers": [
            {"name": layer["annotations"][TITLE], "digest": layer["digest"], "size": layer["size"]}
            for layer in layers
        ],
        "bundle": attached_desc["digest"],
        "attachedBy": how,
    }


def _safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\x00" in name:
        raise MismatchError(
            f"layer name {name!r} is not a relative path inside the output directory"
        )
    return path


def pull_verified(
    ref: str, policy: TrustPolicy, *, output: Path | None, say: Say
) -> dict[str, Any]:
    """Fetch the artifact, its attached bundle, verify the signature under ``policy`` and
    every layer against the signed subjects; write the verified files under ``output``."""
    target = parse_reference(ref)
    if target.digest is None:
        raise InputError(
            f"{ref}: verify a registry artifact by digest", hint="REGISTRY/REPO@sha256:…"
        )
    registry = Registry(target.host)
    data = registry.manifest(target.repo, target.digest)
    if data is None:
        raise InputError(f"{ref}: no such artifact in the registry")
    manifest = json.loads(data)
    attached, how = registry.referrers(target.repo, target.digest)
    bundles = [m for m in attached if m.get("artifactType") == BUNDLE_TYPE]
    if not bundles:
        raise VerificationError(
            f"{ref}: no signed record is attached (looked with the {how})",
            hint="publish it with `rexec publish`, which attaches the record's bundle",
        )
    problems: list[str] = []
    for entry in bundles:
        try:
            doc = json.loads(registry.manifest(target.repo, entry["digest"]) or b"{}")
            if (doc.get("subject") or {}).get("digest") != target.digest:
                raise MismatchError("the attachment is about another manifest")
            (layer,) = doc.get("layers") or [{}]
            verified = policy.verify_bundle(
                registry.blob(target.repo, layer["digest"], cap=16 << 20)
            )
        except (VerificationError, MismatchError, KeyError, ValueError) as exc:
            problems.append(f"{entry.get('digest')}: {getattr(exc, 'message', exc)}")
            continue
        return _check_layers(registry, target, manifest, verified, output=output, say=say, how=how)
    raise VerificationError(
        f"{ref}: no attached record verifies under the trust policy",
        details=problems,
        hint="name the key or identity that signed the run (--key / --identity --issuer)",
    )


def _check_layers(
    registry: Registry,
    target: Reference,
    manifest: dict[str, Any],
    verified: Any,
    *,
    output: Path | None,
    say: Say,
    how: str,
) -> dict[str, Any]:
    try:
        statement = strict_loads(verified.payload or b"")
    except StrictJSONError as exc:
        raise VerificationError(f"{target}: the signed payload is not a Statement ({exc})") from exc
    subjects = {
        s["name"]: s["digest"]["sha256"]
        for s in statement.get("subject", [])
        if isinstance(s, dict) and isinstance(s.get("name"), str)
    }
    layers = manifest.get("layers") or []
    mismatched = []
    for layer in layers:
        name = (layer.get("annotations") or {}).get(TITLE, "")
        if subjects.get(name) is None or f"sha256:{subjects[name]}" != layer.get("digest"):
            mismatched.append(
                f"{name or layer.get('digest')}: not an output the record signs with this digest"
            )
    if mismatched:
        raise MismatchError(
            f"{target}: {len(mismatched)} layer(s) differ from the signed record",
            details=mismatched,
        )
    written = []
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        if any(output.iterdir()):
            raise InputError(f"--output {output}: not empty", hint="name a new or empty directory")
        for layer in layers:
            name = layer["annotations"][TITLE]
            rel = _safe_name(name)
            data = registry.blob(target.repo, layer["digest"])
            path = output.joinpath(*rel.parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(
                path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644
            )
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            say(f"verified {name} ({len(data)} bytes)")
            written.append(name)
    return {
        "verified": True,
        "artifact": str(target),
        "signer": verified.signer,
        "runId": (statement.get("predicate") or {})
        .get("runDetails", {})
        .get("metadata", {})
        .get("invocationId"),
        "layers": len(layers),
        "attachedBy": how,
        "written": written,
        "output": str(output) if output else None,
    }
