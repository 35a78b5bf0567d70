"""What `rexec tag`, `rexec note` and `rexec archive` share: a run named as everywhere
(id, prefix, record path), annotated in the catalog, and the result printed."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from executor import catalog
from executor.cli._json import print_json


def apply(args: argparse.Namespace, refs: Sequence[str], kind: str, values: Sequence[str]) -> int:
    """Each value added to (``args.remove``: taken from) each run; then what each holds."""
    cat = catalog.open_catalog(args.catalog, create=False)
    try:
        targets = [(ref, catalog.resolve_record(cat, ref)) for ref in refs]
        shown = {}
        for ref, statement in targets:
            run_id = (cat.record(statement) or {}).get("run_id", ref)
            for value in values:
                catalog.annotate(cat, statement, run_id, kind, value, remove=args.remove)
            shown[run_id] = catalog.annotations_of(cat, [statement])[statement]
    finally:
        cat.close()
    if args.json:
        print_json(
            {"schema": "rexec.annotations/v1", "runs": {k: v.to_json() for k, v in shown.items()}}
        )
        return 0
    for run_id, notes in shown.items():
        tags = " ".join(t["value"] for t in notes.tags) or "no tags"
        archived = "; archived" if notes.archived else ""
        print(f"{run_id}: {tags}; {len(notes.notes)} note(s){archived} (unsigned, this catalog)")
    return 0
