"""The ``rexec`` command.

One module per subcommand, each with ``register(sub)`` and a handler that
returns an exit code. ``main`` catches :class:`~executor.errors.RexecError`
exactly once; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import gc as _gc  # not `gc`: the `rexec gc` subcommand module takes that name here
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from executor._version import __version__
from executor.errors import ExitCode, Interrupted, RexecError

__all__ = ["build_parser", "entry", "main"]

# Old names that still work, and the subcommand module that answers them.
ALIASES = {"log": "runs"}
# Subcommand modules, in the order `rexec --help` lists them.
SUBCOMMANDS = (
    "run",
    "verify",
    "replay",
    "diff",
    "rerun",
    "lock",
    "snapshot",
    "env",
    "keygen",
    "gc",
    "submit",
    "status",
    "logs",
    "cancel",
    "slurm_node",
    "catalog",
    "runs",
    "show",
    "lineage",
    "compare",
    "tag",
    "note",
    "archive",
    "pipeline",
    "regenerate",
    "ui",
    "report",
    "approve",
    "publish",
    "export",
)

EPILOG = """\
words (each means one thing, from command to folder to record):
  spec        the TOML that says what to run, on what (specs/*.toml; `rexec lock` pins it)
  record      one run's signed directory, runs/<run-id>: the Statement, its signature,
              outputs, logs (verify, replay, rerun, diff, approve, publish, export take one)
  catalog     the index of records, never an authority: what it lists is verified when
              used (runs, show, lineage, compare, ui, report, regenerate read it)
  submission  a run queued on Slurm by `submit` (status, logs, cancel take one)
  pipeline    stages in order, each a run (`pipeline run`); a stage whose computation did
              not change is reused, its record verified
  diff        two records, file by file, from their signed bytes; compare: several runs
              side by side, from the catalog
  runs        the catalog's ledger (`log` is its old name); logs: a submission's Slurm log
  show        a run or digest in the catalog; status: a submission's state on Slurm

exit codes:
  0  success
  1  internal error (a bug in rexec; please report it with -v output)
  2  bad input: the spec, an argument or a file you named
  3  signature or trust policy does not hold
  4  content differs from its pin or signed digest (snapshot, image, output)
  5  the job ran and failed (non-zero exit, timeout, out of memory)
  6  infrastructure unreachable (Docker engine, registry, Slurm, Sigstore)
  7  replay finished and did not reproduce the original outputs

typical use:
  rexec keygen                         create a local signing key (air-gapped)
  rexec snapshot hash data/            print the digest to pin an input
  rexec run specs/demo.toml            pin, verify, run, record and sign
  rexec verify runs/<run-id> --key K   prove a record is intact and signed
  rexec replay runs/<run-id> --key K   re-run from the manifest; signed verdict
  rexec diff runs/<a> runs/<b>         what differs between two runs
  rexec rerun runs/<id> --input data=NEW --key K   the same run on corrected data
  rexec submit locked.toml --partition gpu   the same run on a Slurm cluster
  rexec status RUN_ID --wait           its state per task, then the final one
"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """A text of several lines as written (examples laid out by hand); one line, wrapped.

    The width comes from ``$COLUMNS`` or the terminal, as argparse's own
    default would, but without the ``shutil`` import argparse makes for it,
    with ``bz2`` and ``lzma``: a few ms of every ``rexec`` start.
    """

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        super().__init__(prog, indent_increment, max_help_position, width or _columns() - 2)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)


class Parser(argparse.ArgumentParser):
    """rexec's parser; subcommands' parsers are made of the same class, so they share it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def _columns() -> int:
    """Terminal width as ``shutil.get_terminal_size`` finds it: $COLUMNS, stdout, else 80."""
    try:
        if (columns := int(os.environ.get("COLUMNS", ""))) > 0:
            return columns
    except ValueError:
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns if sys.__stdout__ else 80
    except (AttributeError, ValueError, OSError):
        return 80


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or with ``only`` just that subcommand: each subcommand
    module imports what it needs, and `rexec snapshot hash` should not pay for
    importing the Docker client and the signing stack."""
    parser = Parser(
        prog="rexec",
        description=(
            "Run ML training in a hardened container with every input pinned, "
            "record what ran on what, sign the record, and verify or replay it later."
        ),
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"rexec {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show tracebacks and debug detail"
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in SUBCOMMANDS:
        if only is not None and name != only:
            continue
        # A missing subcommand module is a bug in rexec: it fails loudly, never vanishes.
        importlib.import_module(f"executor.cli.{name}").register(sub)
    return parser


def entry() -> None:
    """The ``rexec`` program: :func:`main`, then exit with its code.

    Before the interpreter is torn down, everything still alive is frozen
    out of the garbage collector: its final collections would otherwise walk
    every module's objects once more, 3 to 4 ms of the 6 ms teardown of
    ``rexec snapshot hash`` (a tenth of its run on a small tree). Files are
    closed by then (every handler uses ``with``), and ``atexit`` handlers
    and the flushing of stdout and stderr happen as usual.
    """
    code = main()
    _gc.freeze()
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the subcommand, and map every RexecError to its exit code."""
    words = list(sys.argv[1:] if argv is None else argv)
    first = next((w for w in words if not w.startswith("-")), None)
    # Only the named subcommand's module is imported; `--version` alone needs none.
    module = first.replace("-", "_") if first else None  # `slurm-node` lives in slurm_node
    module = ALIASES.get(module or "", module)
    only = module if module in SUBCOMMANDS else ("" if "--version" in words else None)
    parser = build_parser(only=only)
    args = parser.parse_args(words)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return int(ExitCode.BAD_INPUT)
    previous = _stop_on_signals()
    try:
        return int(handler(args))
    except RexecError as exc:
        if args.verbose:
            import traceback

            traceback.print_exc()
        print(exc.render(), file=sys.stderr)
        return int(exc.exit_code)
    except BrokenPipeError:
        # `rexec … | head`: the reader left. Say nothing more, as other tools do.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    except OSError as exc:
        # A file the user named (or the disk) said no: say which and why, not a traceback.
        if args.verbose:
            import traceback

            traceback.print_exc()
        if exc.errno is None and exc.filename is None:
            # Not a file: a connection (an HTTP client's error is an OSError too).
            print(f"error: a connection broke: {exc}", file=sys.stderr)
            print("hint: check that the engine, registry or service is up", file=sys.stderr)
            return int(ExitCode.INFRASTRUCTURE)
        where = exc.filename if exc.filename is not None else "a file"
        print(f"error: {where}: {exc.strerror or exc}", file=sys.stderr)
        print("hint: check the path, its permissions and the free space", file=sys.stderr)
        return int(ExitCode.BAD_INPUT)
    except KeyboardInterrupt as exc:
        name = getattr(exc, "signal_name", "SIGINT")
        print(f"interrupted ({name})", file=sys.stderr)
        return 128 + _SIGNALS.get(name, 2)
    finally:
        import signal

        for signum, handler_before in previous.items():
            signal.signal(signum, handler_before)


_SIGNALS = {"SIGINT": 2, "SIGHUP": 1, "SIGTERM": 15, "SIGUSR2": 12}


def _stop_on_signals() -> dict[int, Any]:
    """SIGINT, SIGTERM and SIGHUP stop rexec: the job's container is stopped
    and an ``interrupted`` record is signed, instead of an orphan left running.
    SIGUSR2, a scheduler's pre-emption warning, does the same and signs
    ``preempted``. Returns the handlers they replace."""
    import signal

    def stop(signum: int, frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    # SIGINT too: a rexec started in the background inherits SIGINT ignored, and
    # `kill -INT` must still stop its job rather than be dropped.
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR2)
    return {signum: signal.signal(signum, stop) for signum in signals}


if __name__ == "__main__":  # pragma: no cover
    entry()
