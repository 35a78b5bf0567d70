"""The run manifest: an in-toto Statement v1 with a SLSA Provenance v1 predicate.

We use the ecosystem's formats so tools nobody here wrote can read ours:
outputs are the subjects; image, code and snapshots are resolved
dependencies; the spec as resolved is the external parameters; rexec's own
hardening and environment are internal parameters; host capture, logs and
the exit status are byproducts, each with a digest. Serialised as RFC 8785
canonical JSON with every order-free list sorted, so equal runs give equal
bytes.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from executor.canonical import StrictJSONError, canonical_json, sha256_hex, strict_loads
from executor.errors import InputError, RexecError
from executor.record.writer import STATEMENT

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PROVENANCE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://rexec.dev/run-spec/v1"
MANIFEST_SCHEMA = "rexec.manifest/v1"


@dataclass(frozen=True)
class Subject:
    """An output artifact: its name under outputs/ and its sha256."""

    name: str
    sha256: str


@dataclass(frozen=True)
class Byproduct:
    """A file or value the run produced besides its outputs."""

    name: str
    content: bytes
    media_type: str
    annotations: Mapping[str, Any] | None = None
    # For a file too large to hold in memory (a log): its digest, streamed; content is b"".
    sha256: str | None = None

    def descriptor(self, *, inline: bool) -> dict[str, Any]:
        """The ResourceDescriptor of this byproduct; ``inline`` puts its bytes in the Statement."""
        entry: dict[str, Any] = {
            "name": self.name,
            "digest": {"sha256": self.sha256 or sha256_hex(self.content)},
            "mediaType": self.media_type,
        }
        if inline:
            entry["content"] = base64.b64encode(self.content).decode()
        if self.annotations:
            entry["annotations"] = dict(self.annotations)
        return entry


@dataclass(frozen=True)
class RunStatus:
    """How the job ended. ``status`` is ``succeeded`` only for exit code 0."""

    status: str  # succeeded | failed | timed-out | interrupted | infrastructure-failed
    exit_code: int | None
    oom_killed: bool = False
    # Why, when the exit code does not say: the signal that interrupted rexec, the
    # engine that went away, the inputs that changed under the job.
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON form of the ``exit-status`` byproduct."""
        doc: dict[str, Any] = {
            "status": self.status,
            "exitCode": self.exit_code,
            "oomKilled": self.oom_killed,
        }
        if self.reason is not None:
            doc["reason"] = self.reason
        return doc


def _time(value: datetime) -> str:
    return value.isoformat(timespec="microseconds").replace("+00:00", "Z")


def build_statement(
    *,
    subjects: Sequence[Subject],
    external: Mapping[str, Any],
    internal: Mapping[str, Any],
    dependencies: Sequence[Mapping[str, Any]],
    builder_id: str,
    builder_dependencies: Sequence[Mapping[str, Any]],
    run_id: str,
    started_on: datetime,
    finished_on: datetime,
    status: RunStatus,
    byproducts: Sequence[Byproduct],
    rexec_version: str,
) -> dict[str, Any]:
    """The in-toto Statement of a run, order-free lists sorted so equal runs give equal bytes."""
    status_bytes = canonical_json(status.to_json())
    status_product = Byproduct(
        name="exit-status",
        content=status_bytes,
        media_type="application/json",
        annotations=status.to_json(),
    )
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": s.name, "digest": {"sha256": s.sha256}}
            for s in sorted(subjects, key=lambda s: s.name)
        ],
        "predicateType": PROVENANCE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": dict(external),
                "internalParameters": {"manifestSchema": MANIFEST_SCHEMA, **internal},
                "resolvedDependencies": sorted(
                    (dict(d) for d in dependencies), key=lambda d: (d["name"], d.get("uri", ""))
                ),
            },
            "runDetails": {
                "builder": {
                    "id": builder_id,
                    "version": {"rexec": rexec_version},
                    "builderDependencies": sorted(
                        (dict(d) for d in builder_dependencies), key=lambda d: d["name"]
                    ),
                },
                "metadata": {
                    "invocationId": run_id,
                    "startedOn": _time(started_on),
                    "finishedOn": _time(finished_on),
                },
                "byproducts": sorted(
                    [status_product.descriptor(inline=True)]
                    + [b.descriptor(inline=False) for b in byproducts],
                    key=lambda d: d["name"],
                ),
            },
        },
    }


def statement_about(
    run_id: str, statement_sha256: str, *, predicate_type: str, predicate: Mapping[str, Any]
) -> dict[str, Any]:
    """A Statement whose one subject is a run's Statement (an approval, a replay verdict):
    what it says holds for exactly those bytes."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": f"{run_id}/{STATEMENT}", "digest": {"sha256": statement_sha256}}],
        "predicateType": predicate_type,
        "predicate": dict(predicate),
    }


def dumps(statement: Mapping[str, Any]) -> bytes:
    """The Statement as canonical JSON: the bytes that are hashed and signed."""
    return canonical_json(statement)


def loads(data: bytes, *, source: str, error: type[RexecError] = InputError) -> dict[str, Any]:
    """The one strict reader of a Statement (a run's, an approval, a verdict): strict JSON
    (no duplicate keys, no NaN, bounded depth), in-toto v1, a list of subjects each with a
    sha256. ``error``: what a failure raises (an approval that fails is not verified)."""
    try:
        statement = strict_loads(data)
    except StrictJSONError as exc:
        raise error(
            f"{source}: not a strict JSON in-toto Statement (the payload is not strict JSON: "
            f"{exc})",
            hint="rexec writes canonical JSON; this payload was not made by rexec",
        ) from exc
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise error(
            f"{source}: not an in-toto Statement v1 (_type is not {STATEMENT_TYPE})",
            hint=f"expected _type {STATEMENT_TYPE!r}",
        )
    subjects = statement.get("subject")
    if not isinstance(subjects, list):
        raise error(f"{source}: the Statement has no subject list")
    for subject in subjects:
        if not isinstance(subject, dict) or "sha256" not in (subject.get("digest") or {}):
            raise error(f"{source}: subject {subject!r} has no sha256 digest")
    return statement


def exit_status(statement: Mapping[str, Any]) -> dict[str, Any] | None:
    """The signed exit status of a run, from its byproducts."""
    for product in statement.get("predicate", {}).get("runDetails", {}).get("byproducts", []):
        if isinstance(product, dict) and product.get("name") == "exit-status":
            annotations = product.get("annotations")
            return dict(annotations) if isinstance(annotations, dict) else None
    return None
