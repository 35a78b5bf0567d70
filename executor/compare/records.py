"""``rexec diff A B``: what differs between two run records, and where.

A record holds everything needed to answer this without re-running: the
signed Statement (pins, spec as resolved, output digests), the host capture
and each snapshot's listing. So the diff reads only records and never trusts
anything outside them; the listings name the files that changed inside a
snapshot, and :mod:`executor.compare` says how far numeric outputs moved.

The JSON form (``DIFF_SCHEMA``) is the stable interface; it is documented
field by field in docs/replay.md. A is the reference side: relative
differences and tolerances are taken from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executor import safeio
from executor.canonical import StrictJSONError, sha256_hex, strict_loads
from executor.compare import OutputComparison, compare_outputs
from executor.compare.env import EnvDiff, classify
from executor.errors import InputError, MismatchError
from executor.record import store
from executor.record.manifest import MANIFEST_SCHEMA, run_status
from executor.record.manifest import loads as load_statement
from executor.snapshot.listing import Listing, diff_listings
from executor.spec import Tolerance
from executor.verification import STATEMENT_CAP

DIFF_SCHEMA = "rexec.diff/v1"
# Spec fields compared on their own lines; the rest go under "other".
_OWN_FIELDS = ("params", "paramOverrides", "seed", "command", "inputs", "name", "signing")


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
        return str(self.statement["predicate"]["runDetails"]["metadata"]["invocationId"])

    @property
    def spec(self) -> Mapping[str, Any]:
        spec: Mapping[str, Any] = self.statement["predicate"]["buildDefinition"][
            "externalParameters"
        ]["spec"]
        return spec

    @property
    def internal(self) -> Mapping[str, Any]:
        internal: Mapping[str, Any] = self.statement["predicate"]["buildDefinition"][
            "internalParameters"
        ]
        return internal

    @property
    def outputs(self) -> dict[str, str]:
        return {s["name"]: s["digest"]["sha256"] for s in self.statement.get("subject", [])}

    @property
    def outputs_dir(self) -> Path:
        return self.path / store.OUTPUTS

    @property
    def status(self) -> str | None:
        status = run_status(self.statement)
        return None if status is None else str(status.get("status"))

    @property
    def uses_gpu(self) -> bool:
        return bool(self.internal.get("gpuUuids"))

    @property
    def tolerances(self) -> tuple[Tolerance, ...]:
        entries = (self.spec.get("replay") or {}).get("tolerance") or []
        return tuple(
            Tolerance(str(t["pattern"]), float(t.get("rtol", 0)), float(t.get("atol", 0)))
            for t in entries
        )

    def dependency(self, name: str) -> Mapping[str, Any] | None:
        for dep in self.statement["predicate"]["buildDefinition"]["resolvedDependencies"]:
            if dep.get("name") == name:
                found: Mapping[str, Any] = dep
                return found
        return None

    def summary(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "path": str(self.path),
            "statementSha256": self.statement_sha256,
            "status": self.status,
            "lineage": self.internal.get("lineage"),
        }


def load_record(path: Path, *, payload: bytes | None = None) -> RunRecord:
    """Read ``RUN_DIR`` (or the record a ``statement.sigstore.json`` sits in).

    ``payload`` is the Statement exactly as its signature was verified
    (:func:`executor.verification.verify_record`); replay passes it so that
    nothing is read again after verification. Without it (``rexec diff``, which
    only describes) ``statement.json`` is read. Either way, each file read beside
    the Statement must have the digest the Statement gives it, so a record whose
    host capture or listings were edited is refused rather than believed.
    """
    record = path.parent if path.is_file() else path
    statement_file = record / store.STATEMENT
    if payload is None:
        if not statement_file.is_file():
            raise InputError(
                f"{path}: not a run record (no {store.STATEMENT})",
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
    digests = _byproduct_digests(statement)
    host = None
    if store.HOST in digests:
        host = _json(_signed_file(record / store.HOST, digests[store.HOST]), record / store.HOST)
    listings: dict[str, Listing] = {}
    for name, digest in sorted(digests.items()):
        if name.startswith(f"{store.INPUTS}/") and name.endswith(".listing.json"):
            key = name.removeprefix(f"{store.INPUTS}/").removesuffix(".listing.json")
            listings[key] = Listing.from_json(
                _signed_file(record / name, digest), where=str(record / name)
            )
    params = None
    if store.PARAMS in digests:
        params = _signed_file(record / store.PARAMS, digests[store.PARAMS])
    return RunRecord(
        path=record,
        statement=statement,
        statement_sha256=sha256_hex(payload),
        host=host,
        listings=listings,
        params_json=params,
    )


def _byproduct_digests(statement: Mapping[str, Any]) -> dict[str, str]:
    products = statement["predicate"].get("runDetails", {}).get("byproducts", [])
    found: dict[str, str] = {}
    for item in products if isinstance(products, list) else []:
        digest = (item.get("digest") or {}).get("sha256") if isinstance(item, dict) else None
        if isinstance(digest, str) and isinstance(item.get("name"), str) and "content" not in item:
            found[item["name"]] = digest
    return found


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


@dataclass(frozen=True)
class RecordDiff:
    a: RunRecord
    b: RunRecord
    inputs: Mapping[str, Any]
    environment: EnvDiff | None
    outputs: OutputComparison

    @property
    def inputs_same(self) -> bool:
        return all(section.get("same", True) for section in self.inputs.values())

    def to_json(self) -> dict[str, Any]:
        counts = {
            status: len(self.outputs.named(status))
            for status in ("identical", "within-tolerance", "different", "missing", "extra")
        }
        return {
            "schema": DIFF_SCHEMA,
            "a": self.a.summary(),
            "b": self.b.summary(),
            "same": {
                "inputs": self.inputs_same,
                "environment": self.environment is not None and not self.environment.differences,
                "outputs": self.outputs.bitwise,
                "status": self.a.status == self.b.status,
            },
            "inputs": dict(self.inputs),
            "environment": None if self.environment is None else self.environment.to_json(),
            "outputs": {"counts": counts, "files": self.outputs.to_json()},
        }


def diff_records(a: RunRecord, b: RunRecord) -> RecordDiff:
    environment = None
    if a.host is not None and b.host is not None:
        environment = classify(a.host, b.host, uses_gpu=a.uses_gpu or b.uses_gpu)
    outputs = compare_outputs(
        original=a.outputs,
        original_dir=a.outputs_dir,
        replay=b.outputs,
        replay_dir=b.outputs_dir,
        tolerances=a.tolerances,
    )
    return RecordDiff(a=a, b=b, inputs=diff_inputs(a, b), environment=environment, outputs=outputs)


def diff_inputs(a: RunRecord, b: RunRecord) -> dict[str, Any]:
    return {
        "image": _pair(_image(a), _image(b)),
        "code": _pair(_code(a), _code(b)),
        "snapshots": _snapshots(a, b),
        "params": _params(a, b),
        "seed": _pair(a.spec.get("seed"), b.spec.get("seed")),
        "command": _pair(a.spec.get("command"), b.spec.get("command")),
        "other": _other(a, b),
    }


def _pair(x: Any, y: Any) -> dict[str, Any]:
    return {"same": x == y, "a": x, "b": y}


def _image(r: RunRecord) -> dict[str, Any] | None:
    dep = r.dependency("image")
    if dep is None:
        return None
    return {"uri": dep.get("uri"), "digest": "sha256:" + str(dep["digest"].get("sha256"))}


def _code(r: RunRecord) -> dict[str, Any] | None:
    dep = r.dependency("code")
    if dep is None:
        return None
    digest = dict(dep["digest"])
    commit = digest.pop("gitCommit", None)
    algo, hexdigest = next(iter(digest.items())) if digest else ("", "")
    return {
        "gitCommit": commit,
        "treeDigest": f"{algo}:{hexdigest}" if algo else None,
        "dirty": (dep.get("annotations") or {}).get("dirty"),
    }


def _snapshot_digests(r: RunRecord) -> dict[str, str]:
    return {str(i["name"]): str(i["digest"]) for i in r.spec.get("inputs", [])}


def _snapshots(a: RunRecord, b: RunRecord) -> dict[str, Any]:
    da, db = _snapshot_digests(a), _snapshot_digests(b)
    entries = []
    for name in sorted(set(da) | set(db)):
        x, y = da.get(name), db.get(name)
        status = "same" if x == y else "added" if x is None else "removed" if y is None else ""
        files = None
        if not status:
            status = "changed"
            la, lb = a.listings.get(name), b.listings.get(name)
            if la is not None and lb is not None and la.algo == lb.algo:
                files = diff_listings(la, lb).to_json()
        entries.append({"name": name, "status": status, "a": x, "b": y, "files": files})
    return {"same": all(e["status"] == "same" for e in entries), "entries": entries}


def _params(a: RunRecord, b: RunRecord) -> dict[str, Any]:
    pa, pb = _flat(a.spec.get("params", {})), _flat(b.spec.get("params", {}))
    changed = [
        {"key": k, "a": pa.get(k), "b": pb.get(k)}
        for k in sorted(set(pa) | set(pb))
        if pa.get(k, _MISSING) != pb.get(k, _MISSING)
    ]
    return {
        "same": not changed,
        "changed": changed,
        "overrides": {"a": a.spec.get("paramOverrides", []), "b": b.spec.get("paramOverrides", [])},
    }


_MISSING = object()


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _other(a: RunRecord, b: RunRecord) -> dict[str, Any]:
    fa, fb = _flat(_strip(a.spec)), _flat(_strip(b.spec))
    changed = [
        {"key": k, "a": fa.get(k), "b": fb.get(k)}
        for k in sorted(set(fa) | set(fb))
        if fa.get(k, _MISSING) != fb.get(k, _MISSING)
    ]
    return {"same": not changed, "changed": changed}


def _strip(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in _OWN_FIELDS}
