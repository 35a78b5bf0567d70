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
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from executor import safeio
from executor.approvals import APPROVAL_CAP, BUNDLE_SUFFIX, VSA_TYPE, list_approvals
from executor.canonical import StrictJSONError, strict_loads
from executor.errors import InputError, MismatchError, RexecError, VerificationError
from executor.progress import Say
from executor.record import PROVENANCE_TYPE, RunRecord, writer
from executor.registry.oci import (
    EMPTY,
    INDEX,
    MANIFEST,
    Reference,
    Registry,
    descriptor,
    parse_reference,
)
from executor.signing import TrustPolicy, Verified, parse_bundle

__all__ = [
    "ARTIFACT_TYPE",
    "BUNDLE_TYPE",
    "Pulled",
    "parse_reference",
    "publish",
    "pull_verified",
]

ARTIFACT_TYPE = "application/vnd.dev.rexec.outputs.v1"
BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
TITLE = "org.opencontainers.image.title"
# What an attached bundle is about, as cosign and OCI clients annotate it: the record's
# provenance, or an approval (a SLSA VSA) of it.
PREDICATE_TYPE = "dev.sigstore.bundle.predicateType"


def _empty() -> tuple[bytes, dict[str, Any]]:
    return b"{}", descriptor(EMPTY, b"{}")


def _attach(
    registry: Registry, target: Reference, subject: dict[str, Any], bundle: bytes, kind: str
) -> tuple[str, str]:
    """Push ``bundle`` as a referrer of ``subject`` (a record, or an approval of it);
    returns the attachment's digest and how it can be found."""
    _, empty_desc = _empty()
    registry.push_blob(target.repo, bundle, descriptor(BUNDLE_TYPE, bundle)["digest"])
    attached = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "artifactType": BUNDLE_TYPE,
            "config": empty_desc,
            "layers": [descriptor(BUNDLE_TYPE, bundle)],
            "subject": subject,
            "annotations": {PREDICATE_TYPE: kind},
        },
        sort_keys=True,
    ).encode()
    attached_desc = descriptor(
        MANIFEST, attached, artifactType=BUNDLE_TYPE, annotations={PREDICATE_TYPE: kind}
    )
    headers = registry.push_manifest(target.repo, attached_desc["digest"], attached, MANIFEST)
    if "oci-subject" in headers:
        return attached_desc["digest"], "referrers API"
    # no referrers API: keep the tag-schema index up to date
    tag = subject["digest"].replace(":", "-")
    old = registry.manifest(target.repo, tag)
    entries = (json.loads(old).get("manifests") or []) if old else []
    entries = [e for e in entries if e.get("digest") != attached_desc["digest"]] + [attached_desc]
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}, sort_keys=True
    )
    registry.push_manifest(target.repo, tag, index.encode(), INDEX)
    return attached_desc["digest"], "tag schema"


def publish(record: RunRecord, target: Reference, *, say: Say) -> dict[str, Any]:
    """Push the outputs and attach the record's bundle and each approval of it; returns
    what was pushed. Publishing again after a new approval attaches that approval."""
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
    bundle = safeio.read_capped(record.path / writer.BUNDLE, cap=16 << 20)
    attached, how = _attach(registry, target, subject, bundle, PROVENANCE_TYPE)
    approvals = []
    for path in list_approvals(record.path):
        approval = path.with_name(path.name.removesuffix(".json") + BUNDLE_SUFFIX)
        try:
            data = safeio.read_capped(approval, cap=APPROVAL_CAP)
        except (OSError, safeio.UnsafeFile):
            say(f"not attaching {path.name}: its bundle cannot be read")
            continue
        approvals.append(_attach(registry, target, subject, data, VSA_TYPE)[0])
        say(f"attached approval {path.name}")
    return {
        "artifact": f"{target.host}/{target.repo}@{subject['digest']}",
        "tag": str(target),
        "layers": [
            {"name": layer["annotations"][TITLE], "digest": layer["digest"], "size": layer["size"]}
            for layer in layers
        ],
        "bundle": attached,
        "approvals": approvals,
        "attachedBy": how,
    }


def _safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\x00" in name:
        raise MismatchError(
            f"layer name {name!r} is not a relative path inside the output directory"
        )
    return path


@dataclass(frozen=True)
class Pulled:
    """What ``verify REGISTRY/REPO@sha256:…`` proved about an artifact, and what it wrote."""

    artifact: str
    verified: Verified  # the record's signature under the policy, with the signed payload
    layers: int
    attached_by: str
    approvals: tuple[Path, ...] = ()  # approval payloads attached to the artifact, fetched
    written: tuple[str, ...] = ()
    output: Path | None = None


def pull_verified(
    ref: str,
    policy: TrustPolicy,
    *,
    output: Path | None,
    approvals_dir: Path | None,
    say: Say,
) -> Pulled:
    """Fetch the artifact and what is attached to it, verify the record's signature under
    ``policy`` and every layer against the signed subjects (all of them: a manifest that
    leaves one out is refused), then write the verified files under ``output`` and the
    attached approvals under ``approvals_dir``."""
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
    records = [m for m in bundles if _kind(m) != VSA_TYPE]
    if not records:
        raise VerificationError(
            f"{ref}: no signed record is attached (looked with the {how})",
            hint="publish it with `rexec publish`, which attaches the record's bundle",
        )
    problems: list[str] = []
    for entry in records:
        try:
            verified = policy.verify_bundle(_attached_bundle(registry, target, entry))
        except (VerificationError, MismatchError, KeyError, ValueError) as exc:
            problems.append(f"{entry.get('digest')}: {getattr(exc, 'message', exc)}")
            continue
        layers = _check_layers(target, manifest, verified)
        fetched = (
            _approvals(
                registry, target, [m for m in bundles if _kind(m) == VSA_TYPE], approvals_dir
            )
            if approvals_dir is not None
            else ()
        )
        written = _write(registry, target, layers, output, say) if output is not None else ()
        return Pulled(str(target), verified, len(layers), how, fetched, written, output)
    raise VerificationError(
        f"{ref}: no attached record verifies under the trust policy",
        details=problems,
        hint="name the key or identity that signed the run (--key / --identity --issuer)",
    )


def _kind(entry: dict[str, Any]) -> str | None:
    """What an attached bundle says it is about (a record, or an approval of it)."""
    notes = entry.get("annotations")
    return notes.get(PREDICATE_TYPE) if isinstance(notes, dict) else None


def _attached_bundle(registry: Registry, target: Reference, entry: dict[str, Any]) -> bytes:
    doc = json.loads(registry.manifest(target.repo, entry["digest"]) or b"{}")
    if (doc.get("subject") or {}).get("digest") != target.digest:
        raise MismatchError("the attachment is about another manifest")
    (layer,) = doc.get("layers") or [{}]
    return registry.blob(target.repo, layer["digest"], cap=16 << 20)


def _check_layers(
    target: Reference, manifest: dict[str, Any], verified: Verified
) -> list[dict[str, Any]]:
    """Every layer is an output the record signs, with that digest, and every signed output
    is a layer: a deployment gets the whole model or nothing."""
    try:
        statement = strict_loads(verified.payload or b"")
    except StrictJSONError as exc:
        raise VerificationError(f"{target}: the signed payload is not a Statement ({exc})") from exc
    if not isinstance(statement, dict) or statement.get("predicateType") != PROVENANCE_TYPE:
        raise VerificationError(f"{target}: the attached signed payload is not a run record")
    subjects = {
        s["name"]: s["digest"]["sha256"]
        for s in statement.get("subject", [])
        if isinstance(s, dict)
        and isinstance(s.get("name"), str)
        and isinstance(s.get("digest"), dict)
    }
    layers = [layer for layer in manifest.get("layers") or [] if isinstance(layer, dict)]
    mismatched, seen = [], set()
    for layer in layers:
        name = (layer.get("annotations") or {}).get(TITLE, "")
        if subjects.get(name) is None or f"sha256:{subjects[name]}" != layer.get("digest"):
            mismatched.append(
                f"{name or layer.get('digest')}: not an output the record signs with this digest"
            )
        elif name in seen:
            mismatched.append(f"{name}: two layers")
        seen.add(name)
    if mismatched:
        raise MismatchError(
            f"{target}: {len(mismatched)} layer(s) differ from the signed record",
            details=mismatched,
        )
    missing = sorted(set(subjects) - seen)
    if missing:
        raise MismatchError(
            f"{target}: {len(missing)} signed output(s) are not in the artifact",
            details=[
                f"{name}: signed by the record, missing from the manifest" for name in missing
            ],
            hint="the artifact carries only part of the run's outputs; nothing was written",
        )
    return layers


def _write(
    registry: Registry, target: Reference, layers: list[dict[str, Any]], output: Path, say: Say
) -> tuple[str, ...]:
    """Each layer streamed into a staging directory inside ``output`` (checked against its
    digest as it arrives), then moved into place: all the files, or none."""
    output.mkdir(parents=True, exist_ok=True)
    if any(output.iterdir()):
        raise InputError(f"--output {output}: not empty", hint="name a new or empty directory")
    names = [_safe_name(layer["annotations"][TITLE]) for layer in layers]
    total = sum(int(layer.get("size") or 0) for layer in layers)
    free = shutil.disk_usage(output).free
    if total > free:
        raise InputError(
            f"--output {output}: the artifact announces {total} bytes, {free} are free there",
            hint="free space or write elsewhere; nothing was written",
        )
    staging = Path(tempfile.mkdtemp(prefix=".rexec-partial-", dir=output))
    try:
        for layer, rel in zip(layers, names, strict=True):
            path = staging.joinpath(*rel.parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            size = layer.get("size")
            if not isinstance(size, int) or isinstance(size, bool):
                raise MismatchError(f"{target}: layer {rel} announces no size")
            registry.blob_to(target.repo, layer["digest"], size=size, dest=path)
            say(f"verified {rel} ({size} bytes)")
        for child in staging.iterdir():
            os.rename(child, output / child.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tuple(str(rel) for rel in names)


def _approvals(
    registry: Registry, target: Reference, entries: list[dict[str, Any]], folder: Path
) -> tuple[Path, ...]:
    """The approvals attached to the artifact, as payload and bundle files the approval
    check reads (each is believed only once its signature verifies, as beside a record)."""
    found = []
    for i, entry in enumerate(entries):
        try:
            bundle = _attached_bundle(registry, target, entry)
            envelope = parse_bundle(bundle).dsse
        except (RexecError, KeyError, ValueError):
            continue
        if envelope is None:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        safeio.write_atomic(folder / f"attached-{i}{BUNDLE_SUFFIX}", bundle)
        safeio.write_atomic(folder / f"attached-{i}.json", envelope.payload)
        found.append(folder / f"attached-{i}.json")
    return tuple(found)
