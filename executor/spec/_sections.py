"""Reading the spec's smaller tables: [image], [resources], [determinism], [signing],
[security], [replay] and [checkpoint], each into its model type with every problem reported.
"""

from __future__ import annotations

from pathlib import Path

from executor.signing import SigningMethod
from executor.spec._table import Table, container_path, host_path
from executor.spec.model import (
    FRAMEWORKS,
    IMAGE_DIGEST_RE,
    IMAGE_ID_RE,
    LOCK_HINT,
    MAX_CPUS,
    MAX_GRACE_S,
    MAX_MEMORY,
    MAX_PIDS,
    MIN_MEMORY,
    SIGNING_METHODS,
    ArchiveSpec,
    BuildSpec,
    Checkpoint,
    Determinism,
    ImageSpec,
    Resources,
    Security,
    Signing,
    Tolerance,
    parse_duration,
    parse_size,
)


def parse_image(top: Table, base: Path) -> ImageSpec:
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
        archive_path = host_path(archive_tab, "path", base)
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
        dockerfile = host_path(build_tab, "dockerfile", base)
        context = host_path(build_tab, "context", base)
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


def parse_resources(top: Table) -> Resources:
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


def parse_small_tables(top: Table, base: Path) -> tuple[Determinism, Signing, Security]:
    det = top.table("determinism")
    frameworks: list[str] = ["numpy"]
    strict = True
    automatic = True
    if det is not None:
        frameworks = det.get("frameworks", list) or []
        for i, fw in enumerate(frameworks):
            if fw not in FRAMEWORKS:
                top.errors.add(f"determinism.frameworks[{i}]", f"expected one of {FRAMEWORKS}")
        value = det.get("strict", bool)
        strict = True if value is None else value
        auto = det.get("automatic", bool)
        automatic = True if auto is None else auto
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
        key = host_path(sign, "key", base, required=False)
        sign.finish()
    sec = top.table("security")
    security = Security()
    if sec is not None:
        security = Security(
            allow_network=bool(sec.get("allow_network", bool)),
            allow_host_network=bool(sec.get("allow_host_network", bool)),
            allow_root=bool(sec.get("allow_root", bool)),
            allow_writable_root=bool(sec.get("allow_writable_root", bool)),
        )
        sec.finish()
        if security.allow_network and security.allow_host_network:
            top.errors.add(
                "security.allow_host_network",
                "both allow_network (a bridge) and allow_host_network (the host's network) "
                "are true: keep the one the job needs",
            )
    return (
        Determinism(tuple(f for f in frameworks if f in FRAMEWORKS), strict, automatic),
        Signing(method, key),
        security,
    )


def parse_replay(top: Table) -> tuple[Tolerance, ...]:
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


def parse_checkpoint(top: Table) -> Checkpoint | None:
    """``[checkpoint] mount = "/checkpoint"`` (and ``grace``, ``"30s"`` unless said)."""
    tab = top.table("checkpoint")
    if tab is None:
        return None
    mount = container_path(tab, "mount", required=True)
    raw = tab.get("grace", (int, float, str))
    tab.finish()
    grace = 30.0
    if raw is not None:
        try:
            grace = parse_duration(raw)
        except ValueError as exc:
            top.errors.add("checkpoint.grace", str(exc))
        else:
            if not 1 <= grace <= MAX_GRACE_S:
                top.errors.add(
                    "checkpoint.grace",
                    f"expected 1 s to {MAX_GRACE_S:.0f} s, got {raw!r}: time the job needs to "
                    "write its checkpoint, and Slurm's --signal warning must leave it",
                )
    return Checkpoint(mount, grace) if mount else None


def parse_outputs(top: Table) -> tuple[str, tuple[str, ...]]:
    """``[outputs]``: where the job writes (``mount``) and which outputs are ``volatile``:
    names (fnmatch patterns over a path or a file name) whose bytes change from run to run
    by nature (a TensorBoard event file holds the time and the host). They are hashed and
    signed as every output; replay and diff report them as volatile, not as a difference."""
    tab = top.table("outputs")
    if tab is None:
        return "/outputs", ()
    mount = container_path(tab, "mount", "/outputs") or "/outputs"
    raw = tab.get("volatile", list) or []
    tab.finish()
    for i, item in enumerate(raw):
        if not isinstance(item, str) or not item or "\0" in item:
            top.errors.add(
                f"outputs.volatile[{i}]", 'expected a pattern like "events.out.tfevents.*"'
            )
    return mount, tuple(p for p in raw if isinstance(p, str) and p and "\0" not in p)
