"""Preflight: every input checked against its pin before anything runs.

Snapshots are re-hashed, the code resolved and checked, GPUs resolved to UUIDs,
secrets and CPUs checked against this host, and the runs directory kept out of
every input. A failure here leaves nothing behind: no image built, no container.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executor import contracts, snapshot, spec
from executor.code import ResolvedCode, check_code_pins, resolve_code
from executor.errors import InputError, MismatchError, RexecError
from executor.host import resolve_gpus
from executor.progress import Say
from executor.runtime import ContainerRuntime
from executor.signing import TrustPolicy


@dataclass(frozen=True)
class Preflight:
    """Preflight's value: every input checked against its pin."""

    snapshots: Mapping[str, snapshot.Snapshot]
    code: ResolvedCode | None
    gpu_uuids: tuple[str, ...]
    engine: Mapping[str, Any]


def check_runs_dir(run_spec: spec.RunSpec, runs_dir: Path) -> None:
    """The job writes into the runs dir: inside an input, it would change that input
    under its own feet (and a read-only mount would not stop it).

    The other way round is how runs chain: an input may be a directory of an
    earlier record (``runs/<id>/outputs/model``). A committed record is never
    written again, and this run writes only into its own new staging directory.
    """
    runs = runs_dir.resolve()
    for index, item in enumerate(run_spec.inputs):
        path = item.path.resolve()
        if runs == path or path in runs.parents:
            raise InputError(
                f"--runs-dir {runs_dir} overlaps inputs[{index}].path {item.path} "
                f"(input {item.name!r}): the job's outputs would be written into its own input",
                hint="keep the runs directory outside every input (the default is ./runs)",
            )


def preflight(
    run_spec: spec.RunSpec,
    *,
    runtime: ContainerRuntime,
    allow_dirty: bool,
    say: Say,
    allocated_gpus: tuple[str, ...] | None = None,
    vouched: Mapping[str, snapshot.Vouched] | None = None,
) -> Preflight:
    """Check every input against its pin before anything runs.

    ``allocated_gpus``: the GPUs a scheduler gave this job (UUIDs), used instead
    of resolving ``[resources] gpus`` on a host the job does not own.
    """
    _check_secrets(run_spec)  # the checks that take no time first
    _check_cpus(run_spec)
    engine = runtime.engine_info()
    snapshots, code = check_pins(run_spec, allow_dirty=allow_dirty, say=say, vouched=vouched)
    gpus = resolve_gpus(run_spec.resources.gpus) if allocated_gpus is None else allocated_gpus
    return Preflight(snapshots=snapshots, code=code, gpu_uuids=gpus, engine=engine)


def check_pins(
    run_spec: spec.RunSpec,
    *,
    allow_dirty: bool,
    say: Say,
    vouched: Mapping[str, snapshot.Vouched] | None = None,
) -> tuple[dict[str, snapshot.Snapshot], ResolvedCode | None]:
    """Every input snapshot and the code against their pins; no engine needed.

    ``rexec submit`` runs this on the submit host, before anything is queued,
    and the node runs it again (through :func:`preflight`) before its container:
    an input ``vouched`` for by the submit host is checked by lstat alone, and
    re-hashed only if any entry differs.
    """
    snapshots: dict[str, snapshot.Snapshot] = {}
    for index, item in enumerate(run_spec.inputs):
        if not item.path.is_dir():
            raise InputError(
                f"inputs[{index}].path: {item.path} is not a directory (input {item.name!r})",
                hint="paths in a spec are relative to the spec file's directory",
            )
        snapshots[item.name] = _verified(item, (vouched or {}).get(item.name), say)
        snapshot.keep_listing(snapshots[item.name].listing)
        if item.contract is not None:  # the verified bytes, by the verified listing's names
            say(f"checking input {item.name} against its data contract")
            files = [
                os.fsdecode(e.path) for e in snapshots[item.name].listing.entries if e.type == "f"
            ]
            contracts.enforce(item.name, item.path, files, item.contract)
    code = None
    if run_spec.code is not None:
        code = resolve_code(run_spec.code.path, mount=run_spec.code.mount, allow_dirty=allow_dirty)
        say(f"code {code.repo_path} at {code.commit} ({code.tree_digest})")
        check_code_pins(
            commit=run_spec.code.commit,
            tree=run_spec.code.tree,
            actual_commit=code.commit,
            actual_tree=code.tree_digest,
            say=say,
        )
    return snapshots, code


def _verified(
    item: spec.InputSpec, vouched: snapshot.Vouched | None, say: Say
) -> snapshot.Snapshot:
    if vouched is not None:
        found = snapshot.check_vouched(item.path, item.digest, vouched)
        if found is not None:
            say(
                f"input {item.name}: every file as the submit host hashed it "
                f"(lstat, {found.seconds:.3f} s)"
            )
            return found
        say(f"input {item.name}: changed since it was submitted (lstat); hashing it")
    say(f"verifying input {item.name} against {item.digest}")
    reference = vouched.listing if vouched is not None else None  # names what changed
    return snapshot.verify_tree(item.path, item.digest, reference=reference)


def _check_cpus(run_spec: spec.RunSpec) -> None:
    """The engine refuses more CPUs than the host has, but only once it creates the container."""
    wanted, have = run_spec.resources.cpus, os.cpu_count() or 1
    if wanted is not None and wanted > have:
        raise InputError(
            f"resources.cpus: {wanted:g} CPUs requested, this host has {have}",
            hint=f"ask for at most {have}; the record notes the CPU count a run had",
        )


def _check_secrets(run_spec: spec.RunSpec) -> None:
    missing = [name for name in run_spec.run.secrets if name not in os.environ]
    if missing:
        raise InputError(
            f"run.secrets: {', '.join(missing)} not set in the environment",
            hint="export them before `rexec run`; the job gets their values, never the record",
        )


def inputs_changed(
    run_spec: spec.RunSpec, say: Say, vouched: Mapping[str, snapshot.Vouched] | None = None
) -> MismatchError | None:
    """Every input again, after the job: the record must not claim a pinned digest for
    data that changed while the job read it. The stat cache (or the stamps) makes this
    cheap."""
    for item in run_spec.inputs:
        stamped = (vouched or {}).get(item.name)
        if stamped is not None and snapshot.check_vouched(item.path, item.digest, stamped):
            continue
        try:
            snapshot.verify_tree(item.path, item.digest)
        except MismatchError as exc:
            say(f"input {item.name} changed while the job ran")
            return MismatchError(
                f"input {item.name!r} ({item.path}) changed while the job ran: {exc.message}",
                details=exc.details,
                hint="something on the host wrote into the input during the run; "
                "the outputs were computed from data that no longer matches its pin",
            )
        except RexecError as exc:
            return MismatchError(f"input {item.name!r} cannot be re-checked: {exc.message}")
    return None


def resolve_from_inputs(
    run_spec: spec.RunSpec,
    *,
    runs_dir: Path,
    policy: TrustPolicy | None,
    verified: Mapping[str, Any] | None,
    say: Say,
) -> spec.RunSpec:
    """``from = "run:…"`` inputs: their directory and signed tree, from a record found in the
    runs dir or the catalog that verifies under the caller's trust policy."""
    if not any(i.from_ref and not i.from_run for i in run_spec.inputs):
        return run_spec
    from executor import catalog  # only for `from` inputs: a tenth of rexec's start-up

    try:
        cat: catalog.Catalog | None = catalog.open_catalog(create=False)
    except InputError:  # no catalog yet: the runs dir alone
        cat = None
    try:
        return catalog.resolve_inputs(
            run_spec, runs_dir=runs_dir, catalog=cat, policy=policy, verified=verified, say=say
        )
    finally:
        if cat is not None:
            cat.close()
