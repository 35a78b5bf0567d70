"""``rexec run``: pin, verify, run, record and sign one training job."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from executor import runner, spec
from executor.cli._json import print_json
from executor.cli._options import (
    add_runtime_option,
    add_signing_options,
    add_trust_options,
    seed_value,
    sign_options,
    upstream_policy,
)
from executor.cli._seeds import print_spread, seed_list, seeds_value
from executor.errors import InputError, JobFailed
from executor.runtime import ContainerRuntime, default_runtime

EPILOG = """\
examples:
  rexec run specs/demo.toml
  rexec run specs/demo.toml --param learning_rate=0.1 --param epochs=50
  rexec run specs/demo.toml --seed 7
  rexec run specs/demo.toml --seeds 5          # seeds 42..46: is a change more than noise?
  rexec run specs/demo.toml --sign none --runs-dir /tmp/runs --json
  rexec run train.toml --key signing.pub       # its `from` inputs: records signed by this key

The job's stdout and stderr stream to this terminal's stderr and to
RUN_DIR/logs/. The record lands in RUNS_DIR/<run-id>/ only when complete.
A job that fails is still recorded and signed (with its status), and rexec
exits 5.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec run`` to the parser."""
    p = sub.add_parser(
        "run",
        help="run a spec in a hardened container and write a signed record",
        description=(
            "Read a TOML run spec, verify every input against its pin, run the job in a "
            "container with no network, a read-only root and no capabilities, hash the "
            "outputs and write an in-toto/SLSA manifest signed as a Sigstore bundle."
        ),
        epilog=EPILOG,
    )
    p.add_argument("spec", type=Path, help="the run spec (TOML); see docs/spec.md")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help='override a [params] value (VALUE is read as TOML: 0.1, true, "text"); '
        "the manifest records default and override",
    )
    p.add_argument(
        "--seed",
        type=seed_value,
        metavar="N",
        help="replace the spec's run.seed (0 to 2**32-1); recorded as an override beside "
        "the spec's seed, like --param",
    )
    p.add_argument(
        "--purpose",
        metavar="TEXT",
        help="why this run is made (recorded and signed; replaces [run] purpose)",
    )
    p.add_argument(
        "--seeds",
        type=seeds_value,
        metavar="N|S1,S2,…",
        help="run the spec once per seed (N seeds up from the spec's seed or --seed, or the "
        "seeds listed), each a signed run, and print each metric's mean and spread",
    )
    p.add_argument(
        "--runs-dir",
        type=Path,
        default=Path("runs"),
        help="where run records are written (default: ./runs)",
    )
    add_signing_options(p, default=None)
    add_trust_options(
        p,
        "whose records `from` inputs may read (each is verified first; default: the signers "
        "in ~/.config/rexec/trust.toml)",
    )
    add_runtime_option(p)
    p.add_argument(
        "--allow-dirty",
        action="store_true",
        help="run code with uncommitted changes (recorded as dirty=true)",
    )
    p.add_argument(
        "--allow-unpinned",
        action="store_true",
        help="pin tags, input digests and FROM bases at run time instead of refusing the spec "
        "(what was pinned is recorded; prefer `rexec lock`)",
    )
    p.add_argument(
        "--push",
        metavar="REGISTRY/REPO[:TAG]",
        help="push the job's image there before running and record the repository digest",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="check pins, image, that the command's program exists in the image and that "
        "the entry script's imports resolve there; start no job (exit 2 when not)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument(
        "-q", "--quiet", action="store_true", help="do not echo the job's output or progress"
    )
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run a spec end to end; a job that did not succeed is recorded, signed and exits 5."""
    if args.check:
        return _check(args)
    if args.seeds is None:
        result, run_spec = _run_once(args, seed=args.seed)
        _print_result(args, result)
        _raise_unless_succeeded(result, run_spec)
        return 0
    if isinstance(args.seeds, tuple) and args.seed is not None:
        raise InputError(
            "--seed and a list of --seeds both say which seeds to run",
            hint="give the list alone (--seeds 1,5,9) or a count and a start (--seed 1 --seeds 3)",
        )
    base = args.seed if args.seed is not None else _spec_seed(args)
    seeds = seed_list(args.seeds, base)
    results: list[tuple[runner.RunResult, spec.RunSpec]] = []
    for seed in seeds:
        if not args.quiet:
            print(f"rexec: seed {seed} ({len(results) + 1} of {len(seeds)})", file=sys.stderr)
        results.append(_run_once(args, seed=seed))
    from executor.compare import metric_spread, series_of  # --seeds only
    from executor.record import load_record

    spreads = metric_spread([series_of(load_record(r.run_dir)) for r, _ in results])
    if args.json:
        doc = {
            "seeds": seeds,
            "runs": [r.to_json() for r, _ in results],
            "spread": [s.to_json() for s in spreads],
        }
        print_json(doc)
    else:
        for result, _ in results:
            print(f"run {result.run_id}: {result.status.status}")
        print_spread(seeds, spreads)
    for result, run_spec in results:
        _raise_unless_succeeded(result, run_spec)
    return 0


def _check(args: argparse.Namespace) -> int:
    """``--check``: what would stop the job, found before it starts."""
    run_spec, options, runtime = _prepared(args, seed=args.seed)
    found = runner.check(run_spec, options=options, runtime=runtime)
    if args.json:
        print_json(found.to_json())
    else:
        where = found.found or "not found in the image"
        print(f"program: {found.program} ({where})")
        for name in found.modules:
            print(f"  import {name}: {'missing' if name in found.missing else 'ok'}")
        for note in found.notes:
            print(f"  note: {note}")
    problems = [] if found.found else [f"{found.program}: no such program in the image"]
    problems += [f"import {m}: not in the image's Python" for m in found.missing]
    if problems:
        raise InputError(
            f"{args.spec}: the job would fail at its start",
            details=problems,
            hint="add them to the image (its Dockerfile), or to the code directory",
        )
    return 0


def _spec_seed(args: argparse.Namespace) -> int:
    return spec.load(args.spec).run.seed


def _run_once(
    args: argparse.Namespace, *, seed: int | None
) -> tuple[runner.RunResult, spec.RunSpec]:
    run_spec, options, runtime = _prepared(args, seed=seed)
    return runner.run(run_spec, options=options, runtime=runtime), run_spec


def _prepared(
    args: argparse.Namespace, *, seed: int | None
) -> tuple[spec.RunSpec, runner.RunOptions, ContainerRuntime]:
    """The spec as the command line changes it, how it is run, and on which engine."""
    overrides = [spec.parse_override(text) for text in args.param]
    pinned_at_run_time: dict[str, object] | None = None
    if args.allow_unpinned:
        run_spec, pinned_at_run_time = _pin_at_run_time(args.spec, overrides, seed, args.runtime)
    else:
        run_spec = spec.load(args.spec, overrides=overrides, seed=seed)
    if args.purpose is not None:
        run_spec = spec.with_purpose(run_spec, args.purpose)
    runtime = default_runtime(args.runtime or run_spec.engine)
    sign = sign_options(args, method=run_spec.signing.method, key=run_spec.signing.key)

    def say(text: str) -> None:
        if not args.quiet:
            print(f"rexec: {text}", file=sys.stderr, flush=True)

    options = runner.RunOptions(
        runs_dir=args.runs_dir.resolve(),
        sign=sign,
        allow_dirty=args.allow_dirty,
        echo_logs=not args.quiet,
        say=say,
        allow_unpinned=args.allow_unpinned,
        pinned_at_run_time=pinned_at_run_time,
        push=args.push,
        upstream=upstream_policy(args) if any(i.from_ref for i in run_spec.inputs) else None,
    )
    return run_spec, options, runtime


def _print_result(args: argparse.Namespace, result: runner.RunResult) -> None:
    if args.json:
        print_json(result.to_json())
        return
    print(f"run {result.run_id}: {result.status.status}")
    print(f"record: {result.run_dir}")
    for subject in result.subjects:
        print(f"  {subject.sha256[:16]}  {subject.name}")


def _raise_unless_succeeded(result: runner.RunResult, run_spec: spec.RunSpec) -> None:
    if result.status.status != "succeeded":
        raise JobFailed(
            f"the job {result.status.status} (exit code {result.status.exit_code}); "
            f"the failure is recorded and signed in {result.run_dir}",
            hint=runner.failure_hint(result.run_dir, outputs_mount=run_spec.outputs_mount),
        )


def _pin_at_run_time(
    path: Path, overrides: list[tuple[str, object]], seed: int | None, engine: str | None
) -> tuple[spec.RunSpec, dict[str, object]]:
    """What `rexec lock` would pin, resolved in memory now; the record says so."""
    from executor import lock

    document = spec.read_document(path.resolve())[1]
    return lock.pin_at_run_time(
        path,
        resolver=default_runtime(engine or spec.engine_named(document)),
        say=lambda text: print(f"rexec: {text}", file=sys.stderr),
        overrides=overrides,
        seed=seed,
    )
