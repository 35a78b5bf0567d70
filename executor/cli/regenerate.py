"""``rexec regenerate``: re-run everything downstream of a corrected input, in order."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from executor import catalog, pipelines, safeio
from executor.cli._catalog import add_catalog_option
from executor.cli._cluster import add_submit_options, submit_site
from executor.cli._json import print_json
from executor.cli._options import (
    add_runtime_option,
    add_signing_options,
    add_trust_options,
    sign_options,
)
from executor.cli._render import console, safe
from executor.cli._replay_options import trust_policy
from executor.contracts import ContractViolation
from executor.errors import InputError, JobFailed

EPILOG = """\
examples:
  rexec regenerate sha256-tree-v1:5be7d7ad --with data/raw-fixed --key signing.pub --dry-run
  rexec regenerate sha256-tree-v1:5be7d7ad --with data/raw-fixed --key signing.pub \\
      --signing-key signing.key --report regeneration.html
  rexec regenerate --input data=data/raw-fixed --of <run> --key signing.pub
  rexec regenerate sha256-tree-v1:5be7d7ad --with /shared/raw-fixed --key signing.pub \\
      --signing-key signing.key --runs-dir /shared/runs --submit    (each run a Slurm job)

Finds every current run built on the old digest (directly, or through other runs'
outputs) in the catalog, checks every record and every pin that is not being
replaced before anything runs (all misses are listed together), then re-runs them
in order on the corrected data. A run whose outputs come out identical stops the
cascade below it (pruned); with --submit each run is a Slurm job queued after the
jobs it reads, and a job pruned on its node runs nothing (`rexec status` says so).
Old records stay, marked superseded; `rexec runs --stale`
lists current runs still built on a corrected digest.
exit codes: 0 done, 2 bad input or a missing pin, 3 a record does not verify,
4 a data contract is broken, 5 a job failed
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec regenerate`` to the parser."""
    p = sub.add_parser(
        "regenerate",
        help="re-run every run downstream of a corrected input, reusing what did not change",
        description="Regenerate everything built on a corrected input (docs/pipelines.md).",
        epilog=EPILOG,
    )
    p.add_argument("old", nargs="?", metavar="OLD_DIGEST", help="the digest being corrected")
    p.add_argument(
        "--with", dest="new", type=Path, metavar="NEW_PATH", help="the corrected snapshot"
    )
    p.add_argument("--input", metavar="NAME=NEW_PATH", help="with --of: that run's input NAME")
    p.add_argument("--of", metavar="RUN", help="the run whose --input is corrected")
    p.add_argument("--dry-run", action="store_true", help="check everything and print the plan")
    p.add_argument(
        "--keep-going", action="store_true", help="continue independent branches after a failure"
    )
    p.add_argument("--report", type=Path, metavar="FILE.html", help="write the side-by-side here")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="default: ./runs")
    trust = add_trust_options(p, "trust policy for the records being regenerated")
    trust.add_argument(
        "--no-verify", action="store_true", help="regenerate unverified records (recorded)"
    )
    add_signing_options(p, default="key")
    add_runtime_option(p)
    add_submit_options(
        p,
        "submit each run as a Slurm job after the jobs of the runs it reads (afterok); "
        "a job whose inputs come out of its upstream unchanged runs nothing (pruned)",
    )
    add_catalog_option(p)
    p.add_argument("--json", action="store_true", help="print the campaign summary as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no job output or progress")
    p.set_defaults(handler=handle)


def _what(args: argparse.Namespace) -> tuple[str | None, Path, str | None, str | None]:
    if args.of or args.input:
        name, sep, path = (args.input or "").partition("=")
        if not (args.of and sep and name and path) or args.old or args.new:
            raise InputError(
                "--input NAME=NEW_PATH goes with --of RUN, instead of OLD_DIGEST --with NEW_PATH",
                hint="rexec regenerate --input data=/data/fixed --of <run>",
            )
        return None, Path(path).resolve(), args.of, name
    if not (args.old and args.new):
        raise InputError(
            "name the digest being corrected and its correction: OLD_DIGEST --with NEW_PATH"
        )
    return args.old, args.new.resolve(), None, None


def handle(args: argparse.Namespace) -> int:
    """Plan, check, run and report the regeneration."""

    def say(text: str) -> None:
        if not args.quiet:
            print(f"rexec: {text}", file=sys.stderr, flush=True)

    old, new, of_run, name = _what(args)
    options = pipelines.RegenOptions(
        runs_dir=args.runs_dir.resolve(),
        sign=sign_options(args),
        policy=trust_policy(args),
        dry_run=args.dry_run,
        keep_going=args.keep_going,
        echo_logs=not args.quiet,
        engine=args.runtime,
        say=say,
        site=submit_site(args),
    )
    cat = catalog.open_catalog(args.catalog, create=False)
    try:
        campaign = pipelines.plan_regeneration(
            cat, old or "", new, of_run=of_run, input_name=name, options=options
        )
    finally:
        cat.close()
    pipelines.regenerate(campaign, options)
    doc = campaign.to_json()
    doc["dryRun"] = args.dry_run
    if args.report:
        safeio.write_atomic(args.report, pipelines.regeneration_html(doc).encode())
    if args.json:
        print_json(doc)
    else:
        out = console()
        out.print(
            f"[bold]regeneration {safe(campaign.id)}[/]"
            + ("  (dry run: nothing ran)" if args.dry_run else "")
        )
        out.print(f"  {safe(campaign.old_digest)} → {safe(campaign.new_digest)}")
        for step in campaign.steps:
            new_run = f" → {safe(step.new_run)}" if step.new_run else ""
            what = f"{step.decision}: {safe(step.reason)}"
            out.print(f"  {safe(step.name):14} {safe(step.old_run)}{new_run}  {what}")
            for m in step.metrics:
                if m["before"] != m["after"]:
                    out.print(
                        f"      {safe(m['file'])} {safe(m['key'])}: {m['before']} → {m['after']}"
                    )
        if args.report:
            out.print(f"report: {safe(str(args.report))}")
    broken = [s for s in campaign.steps if s.decision == "contract-violated"]
    if broken:
        raise ContractViolation(
            f"{broken[0].name}: {broken[0].reason}", details=list(broken[0].details)
        )
    failed = [s for s in campaign.steps if s.decision == "failed"]
    if failed:
        raise JobFailed(f"{failed[0].name} ({failed[0].old_run}) failed: {failed[0].reason}")
    return 0
