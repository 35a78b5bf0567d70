"""``rexec pipeline run``: the stages of a pipeline.toml in order, reusing what did not change."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

from executor import pipelines, spec
from executor.cli._cluster import add_submit_options, submit_site
from executor.cli._json import print_json
from executor.cli._options import (
    add_runtime_option,
    add_signing_options,
    add_trust_options,
    sign_options,
    upstream_policy,
)
from executor.cli._render import console, safe
from executor.contracts import ContractViolation
from executor.errors import InputError, JobFailed
from executor.runtime import default_runtime

EPILOG = """\
examples:
  rexec pipeline run pipeline.toml --signing-key signing.key --key signing.pub
  rexec pipeline run pipeline.toml --key signing.pub --dry-run   (the plan: what runs, reused)
  rexec pipeline run pipeline.toml --key signing.pub --force train
  rexec pipeline run pipeline.toml --signing-key signing.key --key signing.pub \
      --submit --runs-dir /shared/runs        (each stage a Slurm job, after its upstream's)

pipeline.toml lists stage specs and nothing else:
  version = 1
  stages = ["extract.toml", "validate.toml", "train.toml", "evaluate.toml"]
Stages link by ordinary `from = "latest:<stage>:<path>"` inputs; each runs after
the stages it reads. A stage whose resolved inputs (image digest, code tree,
input digests and contracts, params, seed, determinism) equal an earlier
succeeded run's is reused, once that run's record verifies under --key or
--identity (else the signers in ~/.config/rexec/trust.toml); without a trust
policy every stage runs. An input from a run outside the pipeline is read only
from a record that verifies under that policy; a stage the pipeline ran is read
after its record verifies under the policy or the pipeline's own signing key.
The pipeline's own signed record (RUNS_DIR/pipelines/<id>/) says what ran, what
was reused and why; a pipeline stopped by a signal signs one too.
exit codes: 0 every stage ran or was reused, 2 bad input, 4 a data contract is
broken, 5 a stage's job failed
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec pipeline`` to the parser."""
    p = sub.add_parser(
        "pipeline",
        help="run a pipeline of specs in order, reusing stages whose inputs did not change",
        description="Run the stages of a pipeline.toml in dependency order (docs/pipelines.md).",
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    run = verbs.add_parser(
        "run",
        help="run (or reuse) every stage, in order",
        description=(
            "Run each stage of the pipeline after the stages it reads from, reusing an "
            "earlier verified run where the stage's inputs are the same, and sign a record "
            "of what was decided."
        ),
        epilog=EPILOG,
    )
    run.add_argument("pipeline", type=Path, help="the pipeline file (TOML)")
    run.add_argument(
        "--force", action="append", default=[], metavar="STAGE", help="run STAGE even if reusable"
    )
    run.add_argument(
        "--reuse-superseded",
        action="store_true",
        help="reuse a run a regeneration replaced (by default it warns and runs the stage)",
    )
    run.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="STAGE.KEY=VALUE",
        help="replace a stage's param (each of its variants takes it; recorded as an override)",
    )
    run.add_argument(
        "--allow-unpinned",
        action="store_true",
        help="pin each stage spec's tags, input digests and FROM bases now instead of refusing "
        "it (each stage's record says what was pinned; `rexec lock` pins the files instead)",
    )
    run.add_argument("--dry-run", action="store_true", help="print the plan; run nothing")
    run.add_argument(
        "--keep-going",
        action="store_true",
        help="after a failure, run the stages that do not need it",
    )
    run.add_argument(
        "--runs-dir", type=Path, default=Path("runs"), help="default: ./runs (shared, to --submit)"
    )
    add_submit_options(
        run,
        "submit each stage that must run as a Slurm job, after the jobs of the stages it reads "
        "(afterok); independent branches run in parallel; reuse is decided here",
    )
    add_trust_options(run, "whose earlier runs may be reused and read (default: the trust file)")
    add_signing_options(run, default=None)
    add_runtime_option(run)
    run.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    run.add_argument("-q", "--quiet", action="store_true", help="no job output or progress")
    run.set_defaults(handler=handle_run)

    def usage(args: argparse.Namespace) -> int:
        p.print_help(sys.stderr)
        return 2

    p.set_defaults(handler=usage)


def handle_run(args: argparse.Namespace) -> int:
    """Run the pipeline and print one line per stage."""

    def say(text: str) -> None:
        if not args.quiet:
            print(f"rexec: {text}", file=sys.stderr, flush=True)

    loader = None
    if args.allow_unpinned:  # each stage spec pinned now, as `rexec lock` would; recorded

        def loader(
            path: Path, overrides: pipelines.Overrides
        ) -> tuple[spec.RunSpec, Mapping[str, object] | None]:
            from executor import lock

            document = spec.read_document(path.resolve())[1]
            resolver = default_runtime(args.runtime or spec.engine_named(document))
            return lock.pin_at_run_time(path, resolver=resolver, say=say, overrides=list(overrides))

    params = [spec.parse_override(text) for text in args.param]
    pipe = pipelines.load_pipeline(args.pipeline, loader=loader, params=params)
    unknown = sorted(set(args.force) - {n for s in pipe.stages for n in (s.name, s.base)})
    if unknown:
        raise InputError(
            f"--force {unknown[0]}: no such stage",
            hint=f"the stages are: {', '.join(s.name for s in pipe.stages)}",
        )
    options = pipelines.PipelineOptions(
        runs_dir=args.runs_dir.resolve(),
        sign=sign_options(args),
        policy=upstream_policy(args),
        force=frozenset(args.force),
        reuse_superseded=args.reuse_superseded,
        dry_run=args.dry_run,
        keep_going=args.keep_going,
        echo_logs=not args.quiet,
        engine=args.runtime,
        say=say,
        site=submit_site(args),
    )
    outcomes, ledger = pipelines.run_pipeline(pipe, options)
    if args.json:
        doc = {
            "schema": pipelines.PIPELINE_SCHEMA,
            "pipeline": pipe.name,
            "dryRun": args.dry_run,
            "ledger": str(ledger) if ledger else None,
            "stages": [o.to_json() for o in outcomes],
        }
        print_json(doc)
    else:
        out = console()
        out.print(f"[bold]pipeline {safe(pipe.name)}[/]" + ("  (dry run)" if args.dry_run else ""))
        for o in outcomes:
            run = f"  {safe(o.run_id)}" if o.run_id else ""
            out.print(f"  {safe(o.stage):16} {o.decision:18}{run}  {safe(o.reason)}")
            for line in o.details[:10]:
                out.print(f"      {safe(line)}")
        if ledger:
            out.print(f"signed record: {safe(str(ledger))}")
    broken = [o for o in outcomes if o.decision == "contract-violated"]
    if broken:
        raise ContractViolation(
            f"stage {broken[0].stage}: {broken[0].reason}",
            details=list(broken[0].details),
            hint="correct the data or the contract, then run the pipeline again",
        )
    failed = [o for o in outcomes if o.decision == "failed"]
    if failed:
        raise JobFailed(f"stage {failed[0].stage} failed: {failed[0].reason}")
    return 0
