"""``rexec export``: one run in one file an auditor can verify and replay offline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from executor import export
from executor.cli._json import print_json
from executor.cli._options import add_runtime_option, add_trust_options, trust_policy
from executor.errors import InputError
from executor.outputs import display_text
from executor.record import load_record, verify_record
from executor.runtime import default_runtime

EPILOG = """\
examples:
  rexec export runs/<run-id> -o run.tar --key signing.pub
  rexec export runs/<run-id> -o run.tar --key signing.pub --without-inputs   data may not leave
  # on a machine with none of it:
  rexec verify run.tar --key signing.pub
  rexec replay run.tar --key signing.pub --signing-key auditor.key

The archive holds the record, the image (docker save, checked on the other side
against the image id the record signs), each input snapshot and the code tree.
Nothing in it is trusted when it is read back: it is unpacked without links or
paths outside it, and every part is checked against the verified record.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec export`` to the parser."""
    p = sub.add_parser(
        "export",
        help="write a run (record, image, inputs, code) as one audit bundle",
        description="Export a verified run as one self-contained tar for audits elsewhere.",
        epilog=EPILOG,
    )
    p.add_argument("target", type=Path, metavar="RUN_DIR", help="the run record to export")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="RUN.tar")
    p.add_argument(
        "--without-inputs",
        action="store_true",
        help="leave the input snapshots out (data that may not leave)",
    )
    add_trust_options(p, "trust policy: the record must verify before it is exported")
    add_runtime_option(p)
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Verify, then write the bundle; print its parts and sizes."""
    if args.output.exists():
        raise InputError(f"-o {args.output}: exists", hint="name a new file; nothing was written")
    checked = verify_record(args.target, trust_policy(args))
    if checked.error is not None:
        raise checked.error
    record = load_record(args.target, payload=checked.payload)
    runtime = default_runtime(args.runtime or record.engine)
    doc = export.export_run(
        record,
        runtime,
        args.output,
        without_inputs=args.without_inputs,
        say=lambda t: print(f"rexec: {t}", file=sys.stderr),
    )
    if args.json:
        print_json(doc)
    else:
        print(f"exported {display_text(record.run_id)} to {args.output} ({doc['bytes'] >> 20} MiB)")
        for part, size in sorted(doc["sizes"].items()):
            print(f"  {part:24} {size:>14,} bytes")
        if doc["withoutInputs"]:
            left = ", ".join(doc["withoutInputs"])
            print(f"  not included: {left} (replay needs --input NAME=PATH)")
    return 0
