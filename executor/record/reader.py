"""Reading a run record: the signed Statement through typed accessors, and the files beside it
checked against their signed digests.

verify, replay, diff (and the catalog to come) read Statements here rather than
digging dictionaries by hand: one place knows where the run id, the exit status,
the byproducts and the spec live in a SLSA provenance Statement.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executor import safeio
from executor.canonical import StrictJSONError, sha256_hex, strict_loads
from executor.errors import InputError, MismatchError
from executor.metrics import Source
from executor.record import writer
from executor.record.manifest import MANIFEST_SCHEMA, exit_status
from executor.record.manifest import loads as load_statement
from executor.snapshot import Listing
from executor.spec import Tolerance

# A Statement names every output: large, but never without bound.
STATEMENT_CAP = 256 << 20


def dig(doc: Any, *keys: str) -> Any:
    """``doc[k1][k2]…``, or None as soon as a level is missing or not a table."""
    for key in keys:
        if not isinstance(doc, Mapping):
            return None
        doc = doc.get(key)
    return doc


class StatementView:
    """A Statement read through typed accessors that never raise on a malformed field.

    The one reader of where a SLSA provenance Statement keeps the run id, the exit
    status, the byproducts, the spec and the manifest schema; a forged or foreign
    Statement gives ``None`` rather than a ``KeyError`` deep in a caller.
    """

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.doc = doc

    @property
    def predicate_type(self) -> str | None:
        """``predicateType``: provenance for a run, test-result for a replay verdict."""
        value = self.doc.get("predicateType")
        return value if isinstance(value, str) else None

    @property
    def run_id(self) -> str | None:
        """The run id (``runDetails.metadata.invocationId``)."""
        value = dig(self.doc, "predicate", "runDetails", "metadata", "invocationId")
        return value if isinstance(value, str) else None

    @property
    def manifest_schema(self) -> str | None:
        """rexec's manifest schema version (``internalParameters.manifestSchema``)."""
        value = dig(
            self.doc, "predicate", "buildDefinition", "internalParameters", "manifestSchema"
        )
        return value if isinstance(value, str) else None

    @property
    def internal(self) -> Mapping[str, Any]:
        """``internalParameters``, or an empty table."""
        value = dig(self.doc, "predicate", "buildDefinition", "internalParameters")
        return value if isinstance(value, Mapping) else {}

    @property
    def subjects(self) -> list[Any]:
        """The subjects as signed (each checked by its consumer: names are untrusted)."""
        value = self.doc.get("subject")
        return value if isinstance(value, list) else []

    @property
    def byproducts(self) -> list[Mapping[str, Any]]:
        """``runDetails.byproducts`` that are tables."""
        value = dig(self.doc, "predicate", "runDetails", "byproducts")
        return [b for b in value if isinstance(b, Mapping)] if isinstance(value, list) else []

    def file_digests(self) -> dict[str, str]:
        """Byproducts that name a file of the record, by name: their signed sha256."""
        found: dict[str, str] = {}
        for item in self.byproducts:
            digest, name = dig(item, "digest", "sha256"), item.get("name")
            if isinstance(digest, str) and isinstance(name, str) and "content" not in item:
                found[name] = digest
        return found

    @property
    def status(self) -> tuple[str | None, int | None]:
        """The job's status and exit code as the signed ``exit-status`` byproduct says."""
        notes = exit_status(self.doc) or {}
        status, code = notes.get("status"), notes.get("exitCode")
        return (
            status if isinstance(status, str) else None,
            code if isinstance(code, int) and not isinstance(code, bool) else None,
        )


@dataclass(frozen=True)
class RunRecord:
    """A run record read from disk: the Statement and the files beside it."""

    path: Path
    statement: Mapping[str, Any]
    statement_sha256: str
    host: Mapping[str, Any] | None
    listings: Mapping[str, Listing]
    params_json: bytes | None = None  # params.json exactly as the job read it

    @property
    def run_id(self) -> str:
        """The run id the record's Statement names."""
        return str(self.statement["predicate"]["runDetails"]["metadata"]["invocationId"])

    @property
    def spec(self) -> Mapping[str, Any]:
        """The spec as resolved (``externalParameters.spec``)."""
        spec: Mapping[str, Any] = self.statement["predicate"]["buildDefinition"][
            "externalParameters"
        ]["spec"]
        return spec

    @property
    def internal(self) -> Mapping[str, Any]:
        """rexec's own parameters (``internalParameters``)."""
        internal: Mapping[str, Any] = self.statement["predicate"]["buildDefinition"][
            "internalParameters"
        ]
        return internal

    @property
    def engine(self) -> str | None:
        """The container engine the spec named (``[runtime] engine``), if it named one."""
        engine = dig(self.spec, "runtime", "engine")
        return engine if isinstance(engine, str) else None

    @property
    def lineage(self) -> Mapping[str, Any]:
        """Where the run comes from when it is no fresh run (a replay, a rerun, a
        regeneration): ``internalParameters.lineage``, or empty."""
        lineage = self.internal.get("lineage")
        return lineage if isinstance(lineage, Mapping) else {}

    @property
    def output_trees(self) -> dict[str, str]:
        """The signed tree digests of ``outputs/`` and its top-level directories."""
        trees = self.internal.get("outputTrees")
        if not isinstance(trees, Mapping):
            return {}
        return {k: v for k, v in trees.items() if isinstance(k, str) and isinstance(v, str)}

    @property
    def metadata(self) -> Mapping[str, Any]:
        """When it ran (``runDetails.metadata``: invocationId, startedOn, finishedOn)."""
        found = dig(self.statement, "predicate", "runDetails", "metadata")
        return found if isinstance(found, Mapping) else {}

    @property
    def exit_code(self) -> int | None:
        """The job's signed exit code (the ``exit-status`` byproduct), if it had one."""
        code = (exit_status(self.statement) or {}).get("exitCode")
        return code if isinstance(code, int) else None

    @property
    def outputs(self) -> dict[str, str]:
        """The signed subjects, name to sha256."""
        return {s["name"]: s["digest"]["sha256"] for s in self.statement.get("subject", [])}

    @property
    def outputs_dir(self) -> Path:
        """Where the record keeps the outputs."""
        return self.path / writer.OUTPUTS

    @property
    def status(self) -> str | None:
        """The signed status of the run."""
        return StatementView(self.statement).status[0]

    @property
    def uses_gpu(self) -> bool:
        """True when the run had GPUs (their differences then matter most)."""
        return bool(self.internal.get("gpuUuids"))

    @property
    def tolerances(self) -> tuple[Tolerance, ...]:
        """The replay tolerance policy the run was made with."""
        entries = (self.spec.get("replay") or {}).get("tolerance") or []
        return tuple(
            Tolerance(str(t["pattern"]), float(t.get("rtol", 0)), float(t.get("atol", 0)))
            for t in entries
        )

    @property
    def volatile(self) -> tuple[str, ...]:
        """The signed ``[outputs] volatile`` patterns: outputs that change by nature."""
        found = (self.spec.get("outputs") or {}).get("volatile") or []
        return tuple(p for p in found if isinstance(p, str)) if isinstance(found, list) else ()

    @property
    def metrics(self) -> tuple[Source, ...]:
        """The signed ``[[metrics]]`` declaration; an entry this rexec cannot read is left
        out (its metrics are then not read, nothing else changes)."""
        raw = self.spec.get("metrics")
        found = [Source.from_json(item) for item in raw] if isinstance(raw, list) else []
        return tuple(s for s in found if s is not None)

    def dependency(self, name: str) -> Mapping[str, Any] | None:
        """The resolved dependency called ``name`` (image, code, input:NAME)."""
        for dep in self.statement["predicate"]["buildDefinition"]["resolvedDependencies"]:
            if dep.get("name") == name:
                found: Mapping[str, Any] = dep
                return found
        return None

    def summary(self) -> dict[str, Any]:
        """A short summary for replay and rerun output."""
        return {
            "runId": self.run_id,
            "path": str(self.path),
            "statementSha256": self.statement_sha256,
            "status": self.status,
            "lineage": self.internal.get("lineage"),  # as signed, whatever its shape
        }


def load_record(path: Path, *, payload: bytes | None = None) -> RunRecord:
    """Read ``RUN_DIR`` (or the record a ``statement.sigstore.json`` sits in).

    ``payload`` is the Statement exactly as its signature was verified
    (:func:`executor.record.verification.verify_record`); replay passes it so that
    nothing is read again after verification. Without it (``rexec diff``, which
    only describes) ``statement.json`` is read. Either way, each file read beside
    the Statement must have the digest the Statement gives it, so a record whose
    host capture or listings were edited is refused rather than believed.
    """
    record = path.parent if path.is_file() else path
    statement_file = record / writer.STATEMENT
    if payload is None:
        if not statement_file.is_file():
            raise InputError(
                f"{path}: not a run record (no {writer.STATEMENT})",
                hint="pass a run record directory, runs/<run-id>",
            )
        payload = _signed_file(statement_file, None)
    statement = load_statement(payload, source=str(statement_file))
    try:
        _ = statement["predicate"]["buildDefinition"]["externalParameters"]["spec"]
        _ = statement["predicate"]["runDetails"]["metadata"]["invocationId"]
    except (KeyError, TypeError) as exc:
        raise InputError(
            f"{statement_file}: not a rexec run manifest (missing {exc})",
            hint="rexec diff and replay read records written by `rexec run`",
        ) from exc
    schema = statement["predicate"]["buildDefinition"].get("internalParameters", {})
    if not isinstance(schema, dict) or schema.get("manifestSchema") != MANIFEST_SCHEMA:
        found = schema.get("manifestSchema") if isinstance(schema, dict) else None
        raise InputError(
            f"{statement_file}: manifest schema {found!r}, this rexec reads {MANIFEST_SCHEMA}",
            hint="replay and diff a record with the rexec version that wrote it",
        )
    digests = StatementView(statement).file_digests()
    host = None
    if writer.HOST in digests:
        host = _json(_signed_file(record / writer.HOST, digests[writer.HOST]), record / writer.HOST)
    listings: dict[str, Listing] = {}
    for name, digest in sorted(digests.items()):
        if name.startswith(f"{writer.INPUTS}/") and name.endswith(".listing.json"):
            key = name.removeprefix(f"{writer.INPUTS}/").removesuffix(".listing.json")
            listings[key] = Listing.from_json(
                _signed_file(record / name, digest), where=str(record / name)
            )
    params = None
    if writer.PARAMS in digests:
        params = _signed_file(record / writer.PARAMS, digests[writer.PARAMS])
    return RunRecord(
        path=record,
        statement=statement,
        statement_sha256=sha256_hex(payload),
        host=host,
        listings=listings,
        params_json=params,
    )


def _signed_file(path: Path, digest: str | None) -> bytes:
    """A record file's bytes, read safely, checked against its signed digest when given."""
    try:
        data = safeio.read_capped(path, cap=STATEMENT_CAP)
    except FileNotFoundError:
        raise InputError(
            f"{path}: missing from the record", hint="the record is incomplete"
        ) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from exc
    if digest is not None and sha256_hex(data) != digest:
        raise MismatchError(
            f"{path}: not the file the statement signs (sha256 {sha256_hex(data)}, "
            f"signed {digest})",
            hint="the record was edited after signing; `rexec verify` shows every difference",
        )
    return data


def _json(data: bytes, where: Path) -> Any:
    try:
        return strict_loads(data)
    except StrictJSONError as exc:
        raise InputError(f"{where}: not strict JSON ({exc})") from exc
