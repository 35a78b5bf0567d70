"""Reading a decoded run spec: typed tables, key paths, every problem at once.

:func:`executor.spec.loads` decodes the TOML; this module walks the document
table by table. Each read goes through :class:`Table`, which checks the type,
remembers which keys were consumed (so unknown keys become errors) and
reports problems to one :class:`Errors` under their full key path
(``inputs[1].digest``), raised together at the end.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from executor.contracts import parse_contract
from executor.errors import SpecError
from executor.metrics import parse_sources
from executor.spec._sections import (
    parse_checkpoint,
    parse_image,
    parse_outputs,
    parse_replay,
    parse_resources,
    parse_small_tables,
)
from executor.spec._table import (
    Errors,
    Table,
    _kind_name,
    container_path,
    declared_names,
    host_path,
)
from executor.spec.argv import check_command
from executor.spec.model import (
    COMMIT_RE,
    ENGINES,
    ENV_NAME_RE,
    FROM_RE,
    LOCK_HINT,
    MAX_TIMEOUT_S,
    NAME_RE,
    RESERVED_MOUNTS,
    SECRET_NAME_RE,
    SPEC_VERSION,
    TREE_DIGEST_RE,
    UNRESOLVED_DIGEST,
    Checkpoint,
    CodeSpec,
    InputSpec,
    ParamOverride,
    RunSection,
    RunSpec,
    parse_duration,
    parse_user,
    reserved_env,
)


def _parse_run(top: Table) -> RunSection | None:
    run = top.table("run", required=True)
    if run is None:
        return None
    command = run.get("command", list, required=True) or []
    if command and not all(isinstance(c, str) for c in command):
        top.errors.add("run.command", "expected an array of strings")
    elif run.data.get("command") == []:
        top.errors.add("run.command", "must not be empty")
    for i, word in enumerate(command):
        if isinstance(word, str) and "\0" in word:
            top.errors.add(f"run.command[{i}]", "holds a NUL character, which no argv can carry")
    workdir = container_path(run, "workdir", "/")
    env = run.get("env", dict) or {}
    for key, value in env.items():
        if not ENV_NAME_RE.match(key):
            top.errors.add(f"run.env.{key}", "not a valid environment variable name")
        elif reserved := reserved_env(key):
            top.errors.add(f"run.env.{key}", reserved)
        elif SECRET_NAME_RE.search(key):
            top.errors.add(
                f"run.env.{key}",
                "looks like a secret; a spec's env ends up in the signed manifest. "
                f'List it in `run.secrets = ["{key}"]` to pass it from your environment unrecorded',
            )
        if not isinstance(value, str):
            top.errors.add(f"run.env.{key}", "expected a string value (explicit values only)")
        elif "\0" in value:
            top.errors.add(
                f"run.env.{key}", "holds a NUL character, which no environment can carry"
            )
    secrets = run.get("secrets", list) or []
    for i, name in enumerate(secrets):
        if not isinstance(name, str) or not ENV_NAME_RE.match(name):
            top.errors.add(f"run.secrets[{i}]", "expected an environment variable name")
        elif reserved := reserved_env(name):
            top.errors.add(f"run.secrets[{i}]", f"{name}: {reserved}")
    seed = run.get("seed", int, required=True)
    if seed is not None and not 0 <= seed < 2**32:
        top.errors.add("run.seed", "expected an integer in [0, 2**32)")
    timeout_raw = run.get("timeout", (int, float, str))
    timeout_s = 3600.0
    if timeout_raw is not None:
        try:
            timeout_s = parse_duration(timeout_raw)
            if not 0 < timeout_s <= MAX_TIMEOUT_S:
                raise ValueError(
                    f"expected a positive duration of at most 30 days, got {timeout_raw!r}"
                )
        except ValueError as exc:
            top.errors.add("run.timeout", str(exc))
            timeout_s = 3600.0
    params_as = run.get("params_as", str) or "json"
    scratch = bool(run.get("scratch_workdir", bool))
    purpose = run.get("purpose", str)
    if purpose is not None and (len(purpose) > 500 or not purpose.isprintable()):
        top.errors.add("run.purpose", "expected one line of printable text, at most 500 characters")
    user = run.get("user", str)
    if user is not None:
        try:
            uid, gid = parse_user(user)
            user = f"{uid}:{gid}"
        except ValueError as exc:
            top.errors.add("run.user", str(exc))
            user = None
    run.finish()
    return RunSection(
        command=tuple(c for c in command if isinstance(c, str)),
        workdir=workdir or "/",
        env={k: v for k, v in env.items() if isinstance(v, str)},
        secrets=tuple(s for s in secrets if isinstance(s, str)),
        seed=seed if isinstance(seed, int) else 0,
        timeout_s=timeout_s,
        user=user,
        params_as=params_as,
        scratch_workdir=scratch,
        purpose=purpose,
    )


def _parse_inputs(top: Table, base: Path) -> tuple[InputSpec, ...]:
    top.seen.add("inputs")
    raw = top.data.get("inputs", [])
    if not isinstance(raw, list):
        top.errors.add("inputs", "expected an array of tables ([[inputs]])")
        return ()
    inputs: list[InputSpec] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            top.errors.add(f"inputs[{i}]", "expected a table")
            continue
        tab = Table(item, f"inputs[{i}]", top.errors)
        name = tab.get("name", str, required=True)
        if name is not None and not NAME_RE.match(name):
            top.errors.add(f"inputs[{i}].name", "use letters, digits, '.', '_' or '-'")
        from_ref = tab.get("from", str)
        if from_ref is not None:
            path = _from_input(from_ref, f"inputs[{i}]", tab, top.errors)
        else:
            path = host_path(tab, "path", base)
        if "digest" not in item and from_ref is None:
            tab.seen.add("digest")
            top.errors.add(f"inputs[{i}].digest", f"missing: the input is not pinned. {LOCK_HINT}")
        digest = tab.get("digest", str) or (UNRESOLVED_DIGEST if from_ref is not None else None)
        if digest is not None and digest != UNRESOLVED_DIGEST and not TREE_DIGEST_RE.match(digest):
            top.errors.add(
                f"inputs[{i}].digest",
                f"expected 'sha256-tree-v1:<64 hex>' (or blake3-tree-v1), got {digest!r}; "
                "print the digest with `rexec snapshot hash PATH`",
            )
        mount = container_path(tab, "mount", required=True)
        contract = None
        if "contract" in item:
            tab.seen.add("contract")
            contract = parse_contract(item["contract"], f"inputs[{i}].contract", top.errors.add)
        tab.finish()
        if name and path and digest and mount:
            inputs.append(
                InputSpec(name, path, digest, mount, from_ref=from_ref, contract=contract)
            )
    return tuple(inputs)


def _from_input(ref: str, key: str, tab: Table, errors: Errors) -> Path | None:
    """``from``: an earlier run's output directory; resolved before the run, not here."""
    if "path" in tab.data:
        tab.seen.add("path")
        errors.add(key, "set `path` or `from`, not both")
        return None
    match = FROM_RE.match(ref)
    rel = match.group(3) if match else ""
    if match is None or rel.startswith("/") or ".." in rel.split("/"):
        errors.add(
            f"{key}.from",
            f"expected 'run:<run-id>:<path under its outputs>' or 'latest:<name>:<path>', "
            f"got {ref!r}",
        )
        return None
    return Path(UNRESOLVED_DIGEST)  # replaced by the record's outputs/<path> when resolved


def _json_value(value: Any, key: str, errors: Errors) -> Any:
    """Params go to the job as JSON; TOML dates and times have no JSON form."""
    if isinstance(value, dict):
        return {k: _json_value(v, f"{key}.{k}", errors) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v, f"{key}[{i}]", errors) for i, v in enumerate(value)]
    if isinstance(value, str | int | float | bool):
        return value
    errors.add(key, f"{type(value).__name__} values cannot be passed as JSON; use a string")
    return None


def _apply_overrides(
    params: dict[str, Any], overrides: Sequence[tuple[str, Any]], errors: Errors
) -> tuple[ParamOverride, ...]:
    applied = []
    for key, value in overrides:
        if key not in params:
            errors.add(
                f"--param {key}",
                f"no such parameter in [params] (known: {', '.join(sorted(params)) or 'none'}); "
                "add it to the spec first so its default is recorded",
            )
            continue
        default = params[key]
        if isinstance(default, float) and type(value) is int:
            value = float(value)  # --param lr=1 for a float default means 1.0
        if type(value) is not type(default):
            errors.add(
                f"--param {key}",
                f"expected {_kind_name(type(default))} like the default {default!r}, "
                f"got {value!r}; quote a string that looks like a number: --param {key}='\"…\"'",
            )
            continue
        applied.append(ParamOverride(key=key, default=default, value=value))
        params[key] = value
    return tuple(applied)


def parse_document(
    doc: dict[str, Any],
    *,
    source: Path,
    source_sha256: str,
    overrides: Sequence[tuple[str, Any]] = (),
    seed: int | None = None,
) -> RunSpec:
    """A decoded TOML document to a :class:`RunSpec`, or one SpecError listing every problem.

    ``overrides`` are ``--param`` values, ``seed`` is ``--seed``: each replaces the
    spec's value, and the spec's is recorded beside it.
    """
    errors = Errors(source)
    base = source.parent
    top = Table(doc, "", errors)
    version = top.get("version", int, required=True)
    if version is not None and version != SPEC_VERSION:
        errors.add("version", f"this rexec reads spec version {SPEC_VERSION}, got {version}")
    name = top.get("name", str, required=True)
    if name is not None and not NAME_RE.match(name):
        errors.add("name", "use letters, digits, '.', '_' or '-' (at most 63)")
    image = parse_image(top, base)
    run = _parse_run(top)
    inputs = _parse_inputs(top, base)
    code_tab = top.table("code")
    code = None
    if code_tab is not None:
        code_path = host_path(code_tab, "path", base)
        code_mount = container_path(code_tab, "mount", "/code")
        commit = code_tab.get("commit", str)
        if commit is not None and not COMMIT_RE.match(commit):
            errors.add("code.commit", f"expected a full git commit id (40 hex), got {commit!r}")
        tree = code_tab.get("tree", str)
        if tree is not None and not TREE_DIGEST_RE.match(tree):
            errors.add("code.tree", f"expected 'sha256-tree-v1:<64 hex>', got {tree!r}")
        code_tab.finish()
        if code_path and code_mount:
            code = CodeSpec(code_path, code_mount, commit, tree)
    outputs_mount, volatile = parse_outputs(top)
    params = _json_value(top.get("params", dict) or {}, "params", errors)
    applied = _apply_overrides(params, overrides, errors)
    seed_override = None
    if seed is not None and run is not None:
        seed_override = ParamOverride(key="seed", default=run.seed, value=seed)
        run = dataclasses.replace(run, seed=seed)
    if run is not None:
        check_command(
            run.command,
            env=run.env,  # env values take the command's placeholders
            params=params,
            params_as=run.params_as,
            inputs=declared_names(top, "inputs"),  # pinned or not: a missing pin is one problem
            has_code=code is not None,
            add_error=errors.add,
        )
    resources = parse_resources(top)
    determinism, signing, security = parse_small_tables(top, base)
    tolerances = parse_replay(top)
    checkpoint = parse_checkpoint(top)
    declared = parse_sources(top.get("metrics", list) or [], "metrics", errors.add)
    engine = None
    runtime_tab = top.table("runtime")
    if runtime_tab is not None:
        engine = runtime_tab.get("engine", str)
        runtime_tab.finish()
        if engine is not None and engine not in ENGINES:
            errors.add("runtime.engine", f"expected one of {', '.join(map(repr, ENGINES))}")
    top.finish()
    if run is not None and run.user is not None and not security.allow_root:
        uid, gid = parse_user(run.user)
        if 0 in (uid, gid):
            which = "uid 0 is root" if uid == 0 else "gid 0 is root's group"
            errors.add(
                "run.user",
                f"{which}: running the job so needs `[security] allow_root = true` "
                "(recorded); prefer a non-root uid, the outputs directory is made writable for it",
            )
    _check_mounts(inputs, code, outputs_mount, errors, checkpoint)
    if run is not None and run.scratch_workdir:
        _check_scratch(run.workdir, inputs, outputs_mount, errors)
    _check_unique(inputs, "name", lambda i: i.name, errors)
    errors.raise_if_any()
    assert name is not None and version is not None and run is not None
    return RunSpec(
        source=source,
        source_sha256=source_sha256,
        version=version,
        name=name,
        image=image,
        run=run,
        inputs=inputs,
        code=code,
        outputs_mount=outputs_mount,
        params=params,
        overrides=applied,
        resources=resources,
        determinism=determinism,
        signing=signing,
        security=security,
        tolerances=tolerances,
        seed_override=seed_override,
        engine=engine,
        checkpoint=checkpoint,
        metrics=declared,
        volatile=volatile,
    )


def _check_scratch(workdir: str, inputs: Sequence[InputSpec], outputs: str, errors: Errors) -> None:
    """A scratch workdir is mounted at the workdir: it must be a place a mount can go."""
    if workdir == "/":
        errors.add(
            "run.scratch_workdir",
            "the workdir is /, which cannot be replaced by a scratch directory; "
            "set run.workdir to the directory the program writes into",
        )
    for top in (outputs, "/tmp"):
        if _under(workdir, top):
            errors.add(
                "run.scratch_workdir",
                f"the workdir {workdir} is inside {top}, which is writable already; "
                "remove scratch_workdir",
            )
    for top in RESERVED_MOUNTS:
        if top != "/tmp" and _under(workdir, top):
            errors.add(
                "run.scratch_workdir",
                f"the workdir {workdir} is inside {top}, where no scratch directory can go",
            )
    for item in inputs:
        if _under(workdir, item.mount):
            errors.add(
                "run.scratch_workdir",
                f"the workdir {workdir} is inside input {item.name!r} ({item.mount}), which "
                "stays read-only; choose another workdir",
            )


def _check_mounts(
    inputs: Sequence[InputSpec],
    code: CodeSpec | None,
    outputs: str,
    errors: Errors,
    checkpoint: Checkpoint | None = None,
) -> None:
    """Two mounts at one target would silently hide one of them."""
    targets = [(f"inputs[{i}].mount", s.mount) for i, s in enumerate(inputs)]
    if code:
        targets.append(("code.mount", code.mount))
    targets.append(("outputs.mount", outputs))
    if checkpoint:
        targets.append(("checkpoint.mount", checkpoint.mount))
    seen: dict[str, str] = {}
    for key, target in targets:
        reserved = next((r for r in RESERVED_MOUNTS if _under(target, r)), None)
        if target in seen:
            errors.add(key, f"{target} is already the target of {seen[target]}")
        elif target == "/":
            errors.add(key, "cannot mount over the container's root")
        elif reserved is not None:
            errors.add(
                key,
                f"{target} is under {reserved}, which the engine or rexec owns; "
                "choose another target, such as /data or /outputs",
            )
        else:
            outer = next(
                (k for t, k in seen.items() if _under(target, t) or _under(t, target)), None
            )
            if outer is not None:
                errors.add(
                    key,
                    f"{target} nests with the target of {outer}: one mount would hide "
                    "or write into the other; give each its own directory",
                )
        seen.setdefault(target, key)


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _check_unique(
    items: Sequence[InputSpec], what: str, key: Callable[[InputSpec], str], errors: Errors
) -> None:
    seen: set[str] = set()
    for i, item in enumerate(items):
        value = key(item)
        if value in seen:
            errors.add(f"inputs[{i}].{what}", f"{value!r} is used twice")
        seen.add(value)


def with_purpose(run_spec: RunSpec, purpose: str) -> RunSpec:
    """``rexec run --purpose TEXT``: the spec with its purpose replaced (checked as the key is)."""
    if not purpose or len(purpose) > 500 or not purpose.isprintable():
        raise SpecError(
            "--purpose: expected one line of printable text, at most 500 characters",
            hint='e.g. --purpose "candidate model for release 1.4"',
        )
    return dataclasses.replace(run_spec, run=dataclasses.replace(run_spec.run, purpose=purpose))
