"""``rexec publish``: a run's outputs as an OCI artifact, its signed record attached."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from executor import registry
from executor.cli._json import print_json
from executor.cli._options import add_trust_options, trust_policy
from executor.outputs import display_text
from executor.record import load_record, status_gate, verify_record

EPILOG = """\
examples:
  rexec publish runs/<run-id> 127.0.0.1:5000/models/mnist:v1 --key signing.pub
  rexec verify 127.0.0.1:5000/models/mnist@sha256:… --key signing.pub --output deploy/

The record is verified first, and a run that did not succeed is refused (exit
5) unless --allow-failed. Each output file becomes one layer whose digest is the
output's sha256 (a signed subject); the record's Sigstore bundle, and each
approval of it, is attached to the artifact as an OCI 1.1 referrer (or under the
sha256-<hex> tag where the registry has no referrers API), so `rexec verify
REGISTRY/REPO@sha256:… --require-approval …` and tools that follow those
conventions find them. Publishing again after an approval attaches it too.
exit codes: 0 published, 2 bad input, 3 the record does not verify, 5 the run did
not succeed, 6 the registry failed
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec publish`` to the parser."""
    p = sub.add_parser(
        "publish",
        help="push a run's outputs to a registry as an OCI artifact with its signed record",
        description="Publish a verified run's outputs as an OCI artifact, the record attached.",
        epilog=EPILOG,
    )
    p.add_argument("target", type=Path, metavar="RUN_DIR", help="the run record to publish")
    p.add_argument("ref", metavar="REGISTRY/REPO:TAG", help="where to push")
    add_trust_options(p, "trust policy: the record must verify before it is published")
    p.add_argument(
        "--allow-failed",
        action="store_true",
        help="publish the outputs of a run that did not succeed (its status stays signed "
        "in the attached record, and `rexec verify` refuses it unless --allow-failed)",
    )
    p.add_argument("--json", action="store_true", help="print what was pushed as JSON")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Verify, push, attach, and print the artifact's digest."""
    ref = registry.parse_reference(args.ref)
    checked = status_gate(
        verify_record(args.target, trust_policy(args)), allow_unsuccessful=args.allow_failed
    )
    if checked.error is not None:
        raise checked.error
    record = load_record(args.target, payload=checked.payload)
    doc = registry.publish(record, ref, say=lambda t: print(f"rexec: {t}", file=sys.stderr))
    if args.json:
        print_json(doc)
    else:
        print(f"published {display_text(record.run_id)}: {doc['artifact']}")
        print(f"  {len(doc['layers'])} layer(s); record attached ({doc['attachedBy']})")
    return 0
