"""``rexec show RUN|DIGEST``: everything the catalog knows about a run or a file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from executor import catalog
from executor.cli._catalog import add_catalog_option
from executor.cli._json import print_json
from executor.cli._render import console, safe
from executor.errors import RexecError
from executor.metrics import Series
from executor.record import load_record


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec show`` to the parser."""
    p = sub.add_parser(
        "show",
        help="a run (or a digest): what it read, who produced that, what it made, who used it",
        description=(
            "Show a run from the catalog, by run id, unique prefix or record path, with its "
            "inputs (and the runs that produced them), outputs (and the runs that consumed "
            "them), params and metrics; or a digest (≥ 8 hex), with who produced and used it."
        ),
        epilog="examples:\n  rexec show 20261201T1200\n  rexec show sha256:8adcb63d\n",
    )
    p.add_argument("ref", metavar="RUN|DIGEST")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    add_catalog_option(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Print what is known about the run or digest."""
    cat = catalog.open_catalog(args.catalog, create=False)
    try:
        doc = catalog.show(cat, args.ref)
    finally:
        cat.close()
    if "run" in doc:
        doc["series"] = [s.numbers() for s in _series(doc["run"]["path"])]
    if args.json:
        print_json({"schema": "rexec.show/v1", **doc})
        return 0
    out = console()
    if "digest" in doc:
        out.print(f"[bold]{safe(doc['digest'])}[/]")
        for r in doc["producedBy"]:
            out.print(f"  produced by {safe(r['run_id'])} as {safe(r['name'])}")
        for r in doc["consumedBy"]:
            out.print(f"  consumed by {safe(r['run_id'])} as {safe(r['name'])}")
        return 0
    if "conflict" in doc:
        _print_conflict(doc)
        return 0
    run = doc["run"]
    head = f"{safe(str(run['status']))}  ({safe(str(run['kind']))})"
    out.print(f"[bold]{safe(run['run_id'])}[/]  {head}")
    for key in (
        "name",
        "started",
        "finished",
        "seed",
        "image",
        "code_commit",
        "engine",
        "purpose",
        "invoker",
        "signer_kind",
        "signer",
        "verification",
        "path",
        "partial",
    ):
        if key == "partial" and not run.get(key):
            continue
        out.print(f"  {key}: {safe(str(run.get(key)))}")
    for other in doc["otherClaims"]:
        out.print(f"  [red]conflict:[/] another record claims this run id too: {_claimed(other)}")
    for old in doc["supersedes"]:
        out.print(f"  supersedes: {safe(old['run_id'])} (regenerated from it)")
    for new in doc["supersededBy"]:
        if new["verified"]:
            out.print(
                f"  [yellow]superseded by: {safe(new['run_id'])}[/] (a regeneration replaced "
                f"it; {safe(new['verification'])})"
            )
        else:
            out.print(f"  claimed superseded by {_claimed(new)}")
    notes = doc["annotations"]
    if notes["tags"] or notes["notes"] or notes["archived"]:
        out.print("[bold]annotations[/] (unsigned: this catalog's, not the record's)")
        if notes["tags"]:
            out.print(f"  tags: {safe(' '.join(t['value'] for t in notes['tags']))}")
        for n in notes["notes"]:
            out.print(
                f"  note by {safe(str(n['author']))} at {safe(str(n['at']))}: {safe(n['value'])}"
            )
        if notes["archived"]:
            a = notes["archived"]
            out.print(f"  archived by {safe(str(a['author']))} at {safe(str(a['at']))}")
    out.print("[bold]inputs[/]")
    for item in doc["inputs"]:
        by = ", ".join(item["producedBy"]) or "no run in the catalog"
        out.print(f"  {safe(item['name'])}  {safe(item['digest'])}  ← {safe(by)}")
    out.print("[bold]outputs[/]")
    for item in doc["outputs"]:
        by = ", ".join(item["consumedBy"]) or "not used by a run in the catalog"
        out.print(f"  {safe(item['name'])}  {safe(item['digest'])}  → {safe(by)}")
    out.print("[bold]approvals[/] (`rexec verify --require-approval` is the gate)")
    for a in doc["approvals"]:
        who = f"{a['approver_kind']} {a['approver']}"
        when = safe(str(a["verified_at"]))
        if a["verified"]:
            out.print(
                f"  {safe(str(a['result']))} by {safe(who)} at {when} ({safe(a['verification'])})"
            )
        else:
            state = safe(a["verification"] or "not verified")
            out.print(f"  claimed {safe(str(a['result']))} by {safe(who)} at {when} ({state})")
    if not doc["approvals"]:
        out.print("  none")
    out.print("[bold]replays[/]")
    for r in doc["replays"]:
        verdict = safe(str(r["verdict"] or "no verdict"))
        if r["verified"]:
            out.print(f"  {safe(r['run_id'])}: {verdict} ({safe(r['verification'])})")
        else:
            out.print(f"  {safe(r['run_id'])}: claimed {verdict}, {_claimed(r)}")
    if not doc["replays"]:
        out.print("  none")
    out.print("[bold]params[/]")
    for p in doc["params"]:
        mark = " (overridden)" if p["overridden"] else ""
        out.print(f"  {safe(p['key'])} = {safe(p['value'])}{mark}")
    out.print("[bold]metrics[/] (run value; for a series, what its chart shows)")
    for s in doc["series"]:
        line = f"  {safe(s['source'])} {safe(s['name'])} = {s['value']:.6g}"
        if s["points"] > 1:
            line += (
                f" ({s['summary']} of {s['points']} points, steps {s['firstStep']:g}→"
                f"{s['lastStep']:g}: first {s['first']:.6g}, min {s['min']:.6g}, "
                f"max {s['max']:.6g}, last {s['last']:.6g})"
            )
        out.print(line)
    if not doc["series"]:  # the record is not readable here: the catalog's summaries
        for m in doc["metrics"]:
            out.print(f"  {safe(m['file'])} {safe(m['key'])} = {m['value']:.6g}")
    return 0


def _series(path: str) -> list[Series]:
    """The record's metrics, read from its signed files (none when it is not readable)."""
    from executor.compare import series_of  # only a run's page needs it

    try:
        return series_of(load_record(Path(path)))
    except (RexecError, OSError):
        return []


def _claimed(link: dict[str, Any]) -> str:
    """A link to another record that did not verify: a claim by its signer, never a fact."""
    state = link["verification"] or "not verified: `rexec catalog index --verify` checks it"
    return safe(
        f"{link['run_id']} (statement {link['statement_sha256'][:16]}…), a claim by "
        f"{link['signer']} ({state})"
    )


def _print_conflict(doc: dict[str, Any]) -> None:
    out = console()
    records = doc["records"]
    out.print(f"[bold red]conflict:[/] {len(records)} records claim run {safe(doc['conflict'])}")
    for r in records:
        out.print(f"  statement sha256:{safe(r['statement_sha256'])}")
        out.print(f"    path:         {safe(r['path'])}")
        out.print(f"    signer:       {safe(r['signer'])}")
        out.print(f"    verification: {safe(r['verification'] or 'not verified')}")
        out.print(f"    status:       {safe(str(r['status']))}, started {safe(str(r['started']))}")
    out.print(
        "Only a record that verifies under your trust policy is that run: "
        "`rexec verify PATH --key PUB` tells which. Name one by its path or sha256:<statement>."
    )
