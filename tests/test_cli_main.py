"""The `rexec` entry point: what it imports for a given command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from executor import __version__


def test_version_imports_no_subcommand() -> None:
    """`rexec --version` prints the version without loading any subcommand (Docker, signing)."""
    code = (
        "import sys; from executor.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('executor.cli.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [f"rexec {__version__}", "[]"]


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["--help"], ["run", "verify", "replay", "snapshot", "keygen"]),
        (["snapshot", "hash", "--help"], ["--algo", "--rehash", "--json"]),
    ],
)
def test_help_still_shows_everything(
    argv: list[str], shown: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The `--version` shortcut leaves `--help` with the full parser."""
    from executor.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert [word for word in shown if word not in out] == []
