"""``rexec lock``: write a fully pinned copy of a spec."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from executor import catalog, determinism, lock, safeio, spec
from executor.cli._catalog import add_catalog_option
from executor.cli._json import print_json
from executor.cli._options import add_runtime_option, add_trust_options, upstream_policy
from executor.errors import InputError

EPILOG = """\
examples:
  rexec lock specs/demo.toml -o build/demo.lock.toml
  rexec run build/demo.lock.toml

Pins image.ref tags to registry digests (no layers are pulled), a build
argument that names a FROM base (FROM ${BASE_IMAGE}) to repo@sha256:…, every
[[inputs]] path to its tree digest, and [code] to its commit and tree digest.
An input taken from another run is pinned to one run: from = "latest:train:model"
becomes from = "run:<the newest succeeded train run>:model" with the digest
that run's record signs (looked up in --runs-dir, then the catalog). Only a
record that verifies under --key/--identity (or the signers listed in
~/.config/rexec/trust.toml) is pinned; others are skipped and named.
Relative paths are rewritten so the locked spec means the same from its own
directory. Without -o the locked spec is printed on stdout.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec lock`` to the parser."""
    p = sub.add_parser(
        "lock",
        help="resolve tags, data and code to digests and write a pinned spec",
        description=(
            "Resolve everything a spec names by a mutable name to a digest, once, and "
            "write the pinned spec. A locked spec runs the same image, data and code "
            "whatever happens to tags and directories afterwards."
        ),
        epilog=EPILOG,
    )
    p.add_argument("spec", type=Path, help="the run spec to lock (TOML)")
    p.add_argument("-o", "--output", type=Path, metavar="LOCKED", help="write the pinned spec here")
    p.add_argument(
        "--allow-dirty",
        action="store_true",
        help="pin code with uncommitted changes (its tree digest still pins the bytes)",
    )
    p.add_argument("--json", action="store_true", help="print what was pinned as JSON on stdout")
    p.add_argument(
        "--runs-dir",
        type=Path,
        default=Path("runs"),
        help="where `from` inputs' records are looked up first (default: ./runs)",
    )
    add_runtime_option(p)
    add_catalog_option(p)
    add_trust_options(p, "whose records `from` inputs may be pinned to (default: the trust file)")
    p.set_defaults(handler=handle)


def _from_pinner(args: argparse.Namespace, stack: contextlib.ExitStack) -> lock.FromPinner:
    """Pin ``from`` inputs to records that verify, opening the catalog only if one needs it."""
    opened: list[catalog.Catalog | None] = []
    policy = upstream_policy(args)

    def pin(ref: str) -> tuple[str, str]:
        if not opened:
            try:
                found = catalog.open_catalog(args.catalog, create=False)
                stack.callback(found.close)
                opened.append(found)
            except InputError:  # no catalog yet: the runs dir alone
                opened.append(None)
        return catalog.pin_from(
            ref,
            runs_dir=args.runs_dir.resolve(),
            catalog=opened[0],
            policy=policy,
            say=lambda text: print(f"rexec: {text}", file=sys.stderr),
        )

    return pin


def handle(args: argparse.Namespace) -> int:
    """Pin every tag, path and the code of a spec, and write the locked copy atomically."""
    from executor.runtime import default_runtime

    data, parsed = spec.read_document(args.spec)
    doc = lock.editable(data, fallback=parsed)  # its comments survive the lock
    source: Path = args.spec.resolve()
    with contextlib.ExitStack() as stack:
        locked = lock.lock_document(
            doc,
            base=source.parent,
            resolver=default_runtime(args.runtime or spec.engine_named(parsed)),
            allow_dirty=args.allow_dirty,
            pin_from=_from_pinner(args, stack),
        )
    target_dir = args.output.resolve().parent if args.output else source.parent
    lock.rebase_paths(locked.document, source_dir=source.parent, target_dir=target_dir)
    text = lock.dumps(locked.document, source=str(args.spec))
    # The result must be a spec this rexec accepts; check before writing it.
    checked = spec.loads(text.encode(), source=(args.output or source).resolve())
    threads = determinism.cpu_threads(checked.resources.cpus)
    for note in determinism.portability_notes(cpu_threads=threads):
        print(f"rexec: note: {note}", file=sys.stderr)
    if args.output:
        try:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            safeio.write_atomic(args.output, text.encode())
        except OSError as exc:
            raise InputError(
                f"-o {args.output}: cannot write the locked spec ({exc.strerror})",
                hint="choose a writable path; nothing was written",
            ) from exc
    for pin in locked.pins:
        print(f"rexec: pinned {pin.describe()}", file=sys.stderr)
    if args.json:
        print_json(
            {
                "output": str(args.output) if args.output else None,
                "pins": [p.to_json() for p in locked.pins],
            }
        )
    elif not args.output:
        sys.stdout.write(text)
    else:
        print(f"locked {args.spec} -> {args.output} ({len(locked.pins)} pins)")
    return 0
