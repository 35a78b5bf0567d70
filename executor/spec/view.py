"""The spec as the Statement records it: JSON-able, no host paths."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from executor.canonical import canonical_json, sha256_hex
from executor.spec.model import RunSpec


def resolved_view(spec: RunSpec) -> dict[str, Any]:
    """The spec as resolved, for ``externalParameters``: JSON-able, no host paths
    (they differ between machines and say nothing about what ran)."""
    view: dict[str, Any] = {
        "version": spec.version,
        "name": spec.name,
        "command": list(spec.run.command),
        "workdir": spec.run.workdir,
        "user": spec.run.user,
        "env": dict(sorted(spec.run.env.items())),
        "secrets": sorted(spec.run.secrets),
        "seed": spec.run.seed,
        "paramsAs": spec.run.params_as,
        "scratchWorkdir": spec.run.scratch_workdir,
        **({"purpose": spec.run.purpose} if spec.run.purpose else {}),
        "timeoutSeconds": spec.run.timeout_s,
        "params": spec.params,
        "paramOverrides": [
            {"key": o.key, "default": o.default, "value": o.value} for o in spec.overrides
        ],
        "inputs": sorted(
            (
                {"name": i.name, "digest": i.digest, "mount": i.mount}
                | ({"from": i.from_ref} if i.from_ref else {})
                | ({"contract": i.contract.to_json()} if i.contract else {})
                for i in spec.inputs
            ),
            key=lambda d: d["name"],
        ),
        "outputs": {"mount": spec.outputs_mount}
        | ({"volatile": list(spec.volatile)} if spec.volatile else {}),
        "resources": {
            "cpus": spec.resources.cpus,
            "memoryBytes": spec.resources.memory_bytes,
            "gpus": list(spec.resources.gpus)
            if isinstance(spec.resources.gpus, tuple)
            else spec.resources.gpus,
            "pids": spec.resources.pids,
        },
        "determinism": {
            "frameworks": sorted(spec.determinism.frameworks),
            "strict": spec.determinism.strict,
            "automatic": spec.determinism.automatic,
        },
        "signing": {"method": spec.signing.method},
        "security": {
            "allowNetwork": spec.security.allow_network,
            "allowHostNetwork": spec.security.allow_host_network,
            "allowRoot": spec.security.allow_root,
            "allowWritableRoot": spec.security.allow_writable_root,
        },
    }
    if spec.engine is not None:
        view["runtime"] = {"engine": spec.engine}
    if spec.seed_override is not None:
        view["seedOverride"] = {
            "default": spec.seed_override.default,
            "value": spec.seed_override.value,
        }
    if spec.code:
        view["code"] = {"mount": spec.code.mount}
    if spec.checkpoint:
        view["checkpoint"] = {
            "mount": spec.checkpoint.mount,
            "graceSeconds": spec.checkpoint.grace_s,
        }
    if spec.tolerances:
        view["replay"] = {
            "tolerance": [
                {"pattern": t.pattern, "rtol": t.rtol, "atol": t.atol} for t in spec.tolerances
            ]
        }
    if spec.metrics:
        view["metrics"] = [source.to_json() for source in spec.metrics]
    # Make sure the view is what will be hashed: canonical JSON must accept it.
    canonical_json(view)
    return view


# What a stage's result cannot depend on: how it is signed, why it was run, where its metrics
# are read from, by which name an input
# was looked up (`latest:`/`run:` both resolve to the digest the key does hold).
_NOT_IN_KEY = ("signing", "purpose", "metrics")


def stage_key(view: Mapping[str, Any], *, image: str | None, code: str | None) -> str:
    """The digest of everything a run's outputs may depend on: the spec as resolved (its
    command, params, seed, inputs by digest and contract, resources, determinism), the
    image digest and the code tree. Two runs with one key are the same computation, so a
    pipeline may reuse the earlier one's outputs (docs/pipelines.md)."""
    doc = {k: v for k, v in view.items() if k not in _NOT_IN_KEY}
    doc["inputs"] = [
        {k: v for k, v in item.items() if k != "from"} for item in view.get("inputs", [])
    ]
    return sha256_hex(canonical_json({"spec": doc, "image": image, "code": code}))


def seed_key_of(view: Mapping[str, Any], *, image: str | None, code: str | None) -> str:
    """The stage key but for the seed: runs of one spec that differ only in their seed
    (``rexec run --seeds``) share it, and their spread is a metric's noise reference."""
    unseeded = {k: v for k, v in view.items() if k not in ("seed", "seedOverride")}
    return stage_key(unseeded, image=image, code=code)
