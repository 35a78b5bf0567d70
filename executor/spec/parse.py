"""Reading a decoded run spec: typed tables, key paths, every problem at once.

:func:`executor.spec.loads` decodes the TOML; this module walks the document
table by table. Each read goes through :class:`Table`, which checks the type,
remembers which keys were consumed (so unknown keys become errors) and
reports problems to one :class:`Errors` under their full key path
(``inputs[1].digest``), raised together at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from executor.signing.types import SigningMethod
from executor.spec._table import Errors, Table, _kind_name
from executor.spec.model import (
    COMMIT_RE,
    ENV_NAME_RE,
    FRAMEWORKS,
    IMAGE_DIGEST_RE,
    IMAGE_ID_RE,
    LOCK_HINT,
    MAX_CPUS,
    MAX_MEMORY,
    MAX_PIDS,
    MAX_TIMEOUT_S,
    MIN_MEMORY,
    NAME_RE,
    RESERVED_ENV_NAMES,
    RESERVED_ENV_PREFIX,
    RESERVED_MOUNTS,
    SECRET_NAME_RE,
    SIGNING_METHODS,
    SPEC_VERSION,
    TREE_DIGEST_RE,
    ArchiveSpec,
    BuildSpec,
    CodeSpec,
    Determinism,
    ImageSpec,
    InputSpec,
    ParamOverride,
    Resources,
    RunSection,
    RunSpec,
    Security,
    Signing,
    Tolerance,
    parse_duration,
    parse_size,
    parse_user,
)


def _container_path(
    table: Table, name: str, default: str | None = None, *, required: bool = False
) -> str | None:
    value = table.get(name, str, required=required and default is None)
    if value is None:
        return default
    if not value.startswith("/") or ".." in PurePosixPath(value).parts or "\0" in value:
        table.errors.add(table.key(name), f"expected an absolute container path, got {value!r}")
        return default
    return str(PurePosixPath(value))


def _host_path(table: Table, name: str, base: Path, *, required: bool = True) -> Path | None:
    value: str | None = table.get(name, str, required=required)
    if value is None:
        return None
    return (base / value).resolve()


def _parse_image(top: Table, base: Path) -> ImageSpec:
    image = top.table("image", required=True)
    if image is None:
        return ImageSpec()
    ref = image.get("ref", str)
    build_tab = image.table("build")
    archive_tab = image.table("archive")
    image.finish()
    if [ref, build_tab, archive_tab].count(None) != 2:
        top.errors.add(
            "image",
            "set exactly one of `ref` (a pinned image), `build` (a Dockerfile) "
            "or `archive` (a `docker save` tar)",
        )
    archive = None
    if archive_tab is not None:
        archive_path = _host_path(archive_tab, "path", base)
        archive_id = archive_tab.get("id", str, required=True)
        archive_tab.finish()
        if archive_id is not None and not IMAGE_ID_RE.match(archive_id):
            top.errors.add(
                "image.archive.id",
                f"expected the image id 'sha256:<64 hex>', got {archive_id!r}; "
                "`docker inspect --format '{{.Id}}' IMAGE` prints it",
            )
        elif archive_path and archive_id:
            archive = ArchiveSpec(archive_path, archive_id)
    build = None
    if build_tab is not None:
        dockerfile = _host_path(build_tab, "dockerfile", base)
        context = _host_path(build_tab, "context", base)
        args = build_tab.get("args", dict) or {}
        for key, value in args.items():
            if not isinstance(value, str):
                top.errors.add(f"image.build.args.{key}", "expected a string")
        target = build_tab.get("target", str)
        allow_from = bool(build_tab.get("allow_unpinned_from", bool))
        build_tab.finish()
        if dockerfile and context:
            build = BuildSpec(dockerfile, context, dict(args), target, allow_from)
    if ref is not None and not IMAGE_DIGEST_RE.search(ref):
        top.errors.add(
            "image.ref",
            f"{ref!r} is not pinned: a reference must end in @sha256:<64 hex>. {LOCK_HINT}",
        )
    return ImageSpec(ref=ref, build=build, archive=archive)


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
    workdir = _container_path(run, "workdir", "/")
    env = run.get("env", dict) or {}
    for key, value in env.items():
        if not ENV_NAME_RE.match(key):
            top.errors.add(f"run.env.{key}", "not a valid environment variable name")
        elif reserved := _reserved_env(key):
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
        elif reserved := _reserved_env(name):
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
        path = _host_path(tab, "path", base)
        if "digest" not in item:
            tab.seen.add("digest")
            top.errors.add(f"inputs[{i}].digest", f"missing: the input is not pinned. {LOCK_HINT}")
        digest = tab.get("digest", str)
        if digest is not None and not TREE_DIGEST_RE.match(digest):
            top.errors.add(
                f"inputs[{i}].digest",
                f"expected 'sha256-tree-v1:<64 hex>' (or blake3-tree-v1), got {digest!r}; "
                "print the digest with `rexec snapshot hash PATH`",
            )
        mount = _container_path(tab, "mount", required=True)
        tab.finish()
        if name and path and digest and mount:
            inputs.append(InputSpec(name, path, digest, mount))
    return tuple(inputs)


def _parse_resources(top: Table) -> Resources:
    tab = top.table("resources")
    if tab is None:
        return Resources(cpus=None, memory_bytes=None, gpus=None, pids=512)
    cpus = tab.get("cpus", (int, float))
    if cpus is not None and not 0 < cpus <= MAX_CPUS:  # NaN fails this too
        top.errors.add("resources.cpus", f"expected a number of CPUs in (0, {MAX_CPUS:g}]")
        cpus = None
    memory_raw = tab.get("memory", (int, str))
    memory = None
    if memory_raw is not None:
        try:
            memory = parse_size(memory_raw)
            if not MIN_MEMORY <= memory <= MAX_MEMORY:
                raise ValueError(
                    f"expected at least 6 MiB (the engine's minimum), got {memory_raw!r}; "
                    "write sizes like '512m' or '4g'"
                )
        except ValueError as exc:
            top.errors.add("resources.memory", str(exc))
            memory = None
    gpus_raw = tab.get("gpus", (str, int, list))
    gpus: str | int | tuple[str, ...] | None = None
    if isinstance(gpus_raw, str):
        if gpus_raw != "all":
            top.errors.add("resources.gpus", 'expected "all", a count, or a list of GPU UUIDs')
        gpus = gpus_raw
    elif isinstance(gpus_raw, int):
        if gpus_raw < 0:
            top.errors.add("resources.gpus", "expected a non-negative count")
        gpus = gpus_raw or None
    elif isinstance(gpus_raw, list):
        if not all(isinstance(g, str) and g.startswith(("GPU-", "MIG-")) for g in gpus_raw):
            top.errors.add("resources.gpus", "expected GPU UUIDs like 'GPU-1a2b…' or 'MIG-…'")
        gpus = tuple(str(g) for g in gpus_raw) or None
    pids = tab.get("pids", int)
    if pids is not None and not 16 <= pids <= MAX_PIDS:
        top.errors.add("resources.pids", f"expected from 16 to {MAX_PIDS}")
        pids = None
    tab.finish()
    return Resources(
        cpus=float(cpus) if cpus is not None else None,
        memory_bytes=memory,
        gpus=gpus,
        pids=pids or 512,
    )


def _parse_small_tables(top: Table, base: Path) -> tuple[Determinism, Signing, Security]:
    det = top.table("determinism")
    frameworks: list[str] = ["numpy"]
    strict = True
    if det is not None:
        frameworks = det.get("frameworks", list) or []
        for i, fw in enumerate(frameworks):
            if fw not in FRAMEWORKS:
                top.errors.add(f"determinism.frameworks[{i}]", f"expected one of {FRAMEWORKS}")
        value = det.get("strict", bool)
        strict = True if value is None else value
        det.finish()
    sign = top.table("signing")
    method: SigningMethod = "key"
    key = None
    if sign is not None:
        method = sign.get("method", str) or "key"
        if method not in SIGNING_METHODS:
            top.errors.add(
                "signing.method", f'expected one of "key", "sigstore", "none"; got {method!r}'
            )
        key = _host_path(sign, "key", base, required=False)
        sign.finish()
    sec = top.table("security")
    security = Security()
    if sec is not None:
        security = Security(
            allow_network=bool(sec.get("allow_network", bool)),
            allow_root=bool(sec.get("allow_root", bool)),
            allow_writable_root=bool(sec.get("allow_writable_root", bool)),
        )
        sec.finish()
    return (
        Determinism(tuple(f for f in frameworks if f in FRAMEWORKS), strict),
        Signing(method, key),
        security,
    )


def _parse_replay(top: Table) -> tuple[Tolerance, ...]:
    tab = top.table("replay")
    if tab is None:
        return ()
    raw = tab.get("tolerance", list) or []
    tab.finish()
    tolerances = []
    for i, item in enumerate(raw):
        key = f"replay.tolerance[{i}]"
        if not isinstance(item, dict):
            top.errors.add(key, "expected a table with pattern, rtol, atol")
            continue
        entry = Table(item, key, top.errors)
        pattern = entry.get("pattern", str, required=True)
        rtol = entry.get("rtol", (int, float))
        atol = entry.get("atol", (int, float))
        entry.finish()
        if rtol is None and atol is None:
            top.errors.add(key, "set rtol, atol or both")
        for name, value in (("rtol", rtol), ("atol", atol)):
            if value is not None and value < 0:
                top.errors.add(f"{key}.{name}", "expected a non-negative number")
        if pattern:
            tolerances.append(Tolerance(pattern, float(rtol or 0.0), float(atol or 0.0)))
    return tuple(tolerances)


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
) -> RunSpec:
    """A decoded TOML document to a :class:`RunSpec`, or one SpecError listing every problem."""
    errors = Errors(source)
    base = source.parent
    top = Table(doc, "", errors)
    version = top.get("version", int, required=True)
    if version is not None and version != SPEC_VERSION:
        errors.add("version", f"this rexec reads spec version {SPEC_VERSION}, got {version}")
    name = top.get("name", str, required=True)
    if name is not None and not NAME_RE.match(name):
        errors.add("name", "use letters, digits, '.', '_' or '-' (at most 63)")
    image = _parse_image(top, base)
    run = _parse_run(top)
    inputs = _parse_inputs(top, base)
    code_tab = top.table("code")
    code = None
    if code_tab is not None:
        code_path = _host_path(code_tab, "path", base)
        code_mount = _container_path(code_tab, "mount", "/code")
        commit = code_tab.get("commit", str)
        if commit is not None and not COMMIT_RE.match(commit):
            errors.add("code.commit", f"expected a full git commit id (40 hex), got {commit!r}")
        tree = code_tab.get("tree", str)
        if tree is not None and not TREE_DIGEST_RE.match(tree):
            errors.add("code.tree", f"expected 'sha256-tree-v1:<64 hex>', got {tree!r}")
        code_tab.finish()
        if code_path and code_mount:
            code = CodeSpec(code_path, code_mount, commit, tree)
    out_tab = top.table("outputs")
    outputs_mount = "/outputs"
    if out_tab is not None:
        outputs_mount = _container_path(out_tab, "mount", "/outputs") or "/outputs"
        out_tab.finish()
    params = _json_value(top.get("params", dict) or {}, "params", errors)
    applied = _apply_overrides(params, overrides, errors)
    resources = _parse_resources(top)
    determinism, signing, security = _parse_small_tables(top, base)
    tolerances = _parse_replay(top)
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
    _check_mounts(inputs, code, outputs_mount, errors)
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
    )


def _check_mounts(
    inputs: Sequence[InputSpec], code: CodeSpec | None, outputs: str, errors: Errors
) -> None:
    """Two mounts at one target would silently hide one of them."""
    targets = [(f"inputs[{i}].mount", s.mount) for i, s in enumerate(inputs)]
    if code:
        targets.append(("code.mount", code.mount))
    targets.append(("outputs.mount", outputs))
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


def _reserved_env(name: str) -> str | None:
    if name.startswith(RESERVED_ENV_PREFIX):
        return "names starting with REXEC_ are set by rexec itself"
    if name in RESERVED_ENV_NAMES:
        return (
            "set by rexec itself (determinism, helper path or home); "
            "the value the record claims is rexec's, so it cannot be replaced"
        )
    return None


def _check_unique(
    items: Sequence[InputSpec], what: str, key: Callable[[InputSpec], str], errors: Errors
) -> None:
    seen: set[str] = set()
    for i, item in enumerate(items):
        value = key(item)
        if value in seen:
            errors.add(f"inputs[{i}].{what}", f"{value!r} is used twice")
        seen.add(value)
