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
from typing import Any

from executor.compare.env import EnvDiff, classify
from executor.compare.outputs import OutputComparison, compare_outputs
from executor.record import RunRecord
from executor.snapshot import diff_listings

DIFF_SCHEMA = "rexec.diff/v1"
# Spec fields compared on their own lines; the rest go under "other".
_OWN_FIELDS = (
    "params",
    "paramOverrides",
    "seed",
    "seedOverride",
    "command",
    "inputs",
    "name",
    "signing",
)


@dataclass(frozen=True)
class RecordDiff:
    """What differs between two records, section by section."""

    a: RunRecord
    b: RunRecord
    inputs: Mapping[str, Any]
    environment: EnvDiff | None
    outputs: OutputComparison

    @property
    def inputs_same(self) -> bool:
        """True when both runs read the very same input snapshots."""
        return all(section.get("same", True) for section in self.inputs.values())

    def to_json(self) -> dict[str, Any]:
        """The JSON form (``rexec.diff/v1``, documented in docs/replay.md)."""
        counts = {
            status: len(self.outputs.named(status))
            for status in (
                "identical",
                "volatile",
                "within-tolerance",
                "different",
                "missing",
                "extra",
            )
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
    """Diff two records read from disk; A is the reference side."""
    environment = None
    if a.host is not None and b.host is not None:
        environment = classify(a.host, b.host, uses_gpu=a.uses_gpu or b.uses_gpu)
    outputs = compare_outputs(
        original=a.outputs,
        original_dir=a.outputs_dir,
        replay=b.outputs,
        replay_dir=b.outputs_dir,
        tolerances=a.tolerances,
        volatile=a.volatile,
    )
    return RecordDiff(a=a, b=b, inputs=diff_inputs(a, b), environment=environment, outputs=outputs)


def diff_inputs(a: RunRecord, b: RunRecord) -> dict[str, Any]:
    """The inputs of two runs side by side, with the files that changed inside snapshots."""
    return {
        "image": _pair(_image(a), _image(b)),
        "code": _pair(_code(a), _code(b)),
        "snapshots": _snapshots(a, b),
        "params": _params(a, b),
        "seed": _pair(a.spec.get("seed"), b.spec.get("seed"))
        | {"overrides": {"a": a.spec.get("seedOverride"), "b": b.spec.get("seedOverride")}},
        "command": _pair(a.spec.get("command"), b.spec.get("command")),
        # The argv that ran: the command with its placeholders filled and params as flags.
        "argv": _pair(a.internal.get("argv"), b.internal.get("argv")),
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
