"""The `rexec` entry point: what it imports for a given command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from executor import __version__


def python(code: str) -> list[str]:
    """The lines a fresh interpreter prints running ``code`` (which must succeed)."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_version_imports_no_subcommand() -> None:
    """`rexec --version` prints the version without loading any subcommand (Docker, signing)."""
    code = (
        "import sys; from executor.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('executor.cli.')))"
    )
    assert python(code) == [f"rexec {__version__}", "[]"]


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


def test_help_wraps_paragraphs_and_keeps_examples(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A one-line description is wrapped to the terminal's width; an epilog of
    several lines (examples laid out by hand) is printed as written."""
    from executor.cli import EPILOG, main

    monkeypatch.setenv("COLUMNS", "60")
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    paragraph = out.split("\n\n")[1]  # after the usage lines: the description
    assert max(len(line) for line in paragraph.splitlines()) <= 58  # COLUMNS - 2, as argparse
    assert len(paragraph.splitlines()) > 1
    assert " ".join(paragraph.split()).startswith("Read a TOML run spec, verify every input")
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert EPILOG in out  # its lines of up to 80 characters, unwrapped at 60
    assert max(len(line) for line in EPILOG.splitlines()) > 60


def test_parsing_does_not_import_shutil() -> None:
    """argparse's default formatter imports shutil (with bz2 and lzma) for the width."""
    code = (
        "import sys; from executor.cli import build_parser\n"
        "build_parser(only='snapshot').parse_args(['snapshot', 'hash', '.'])\n"
        "print('shutil' in sys.modules)"
    )
    assert python(code) == ["False"]


ENTRY = (
    "import atexit, gc, sys\n"
    "atexit.register(lambda: print('at exit, frozen:', gc.get_freeze_count() > 0))\n"
    "from executor.cli import entry\n"
    "sys.argv = ['rexec', *sys.argv[1:]]\n"
    "entry()\n"
)


@pytest.mark.parametrize(("args", "code"), [(["snapshot", "hash"], 0), (["snapshot", "verify"], 4)])
def test_program_exits_with_main_code_after_freezing(
    tmp_path: Path, args: list[str], code: int
) -> None:
    """The `rexec` program freezes what is alive out of the final garbage collections;
    exit codes, output and atexit handlers are as they were."""
    (tmp_path / "a").write_bytes(b"x")
    wrong = ["sha256-tree-v1:" + "0" * 64] if code else []
    out = subprocess.run(
        [sys.executable, "-c", ENTRY, *args, str(tmp_path), *wrong],
        capture_output=True,
        text=True,
        env=os.environ | {"REXEC_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert out.returncode == code
    lines = out.stdout.splitlines()
    assert lines[-1] == "at exit, frozen: True"
    if code == 0:
        assert lines[0].startswith("sha256-tree-v1:")
    else:
        assert "pinned sha256-tree-v1:0000" in out.stderr


def test_diff_says_same_tree_other_commit_and_names_argv_words() -> None:
    from executor.cli._render import input_lines

    tree = "sha256-tree-v1:" + "c" * 64

    def pair(a: object, b: object) -> dict[str, object]:
        return {"same": a == b, "a": a, "b": b}

    inputs = {
        "image": pair(1, 1),
        "code": pair(
            {"gitCommit": "a" * 40, "treeDigest": tree, "dirty": False},
            {"gitCommit": "b" * 40, "treeDigest": tree, "dirty": False},
        ),
        "seed": pair(1, 1) | {"overrides": {"a": None, "b": None}},
        "command": pair(["t"], ["t"]),
        "argv": pair(["t", "--lr", "0.1"], ["t", "--lr", "0.2"]),
        "snapshots": {"entries": []},
        "params": {"same": True, "changed": [], "overrides": {"a": [], "b": []}},
        "other": {"changed": []},
    }
    lines = [line for line, _ in input_lines(inputs)]
    assert f"code: same tree {tree}, other commit {'a' * 40} → {'b' * 40}" in lines
    assert 'argv[2]: "0.1" → "0.2"' in lines


# Commands that print no data, and why: each other command takes --json.
NO_JSON = {
    "logs": "prints the job's own log text, as Slurm wrote it",
    "report": "writes one HTML file and names it",
    "ui": "serves pages until stopped",
    "slurm-node": "run by the batch script, never by a person",
}


def _subcommands() -> dict[str, object]:
    import argparse

    from executor.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_that_prints_data_takes_json() -> None:
    """One flag for one JSON document, whatever the command (lineage once took only
    --format json)."""
    lacking = []
    for name, sub in _subcommands().items():
        options = {o for a in sub._actions for o in a.option_strings}  # type: ignore[attr-defined]
        nested = [a for a in sub._actions if a.choices and not a.option_strings]  # type: ignore[attr-defined]
        if nested and "--json" not in options:  # a group (catalog, snapshot): its leaves
            for leaf_name, leaf in next(iter(nested)).choices.items():
                leaf_options = {o for a in leaf._actions for o in a.option_strings}
                if "--json" not in leaf_options and f"{name} {leaf_name}" not in NO_JSON:
                    lacking.append(f"{name} {leaf_name}")
            continue
        if "--json" not in options and name not in NO_JSON:
            lacking.append(name)
    assert lacking == []


def test_the_old_name_log_is_runs() -> None:
    from executor.cli import build_parser

    parsed = [build_parser().parse_args([word, "--name", "train"]) for word in ("runs", "log")]
    assert parsed[0].handler is parsed[1].handler and parsed[1].name == "train"


def test_lineage_json_is_format_json() -> None:
    from executor.cli import build_parser

    args = build_parser().parse_args(["lineage", "some-run", "--json"])
    assert args.format == "json"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["lineage", "some-run", "--json", "--format", "dot"])


def test_keygen_and_snapshot_verify_print_one_json_document(tmp_path: Path) -> None:
    import json

    def rexec(*words: str) -> dict[str, object]:
        out = subprocess.run(
            [sys.executable, "-m", "executor", *words], capture_output=True, text=True, check=True
        )
        doc: dict[str, object] = json.loads(out.stdout)
        return doc

    keys = rexec("keygen", "--out", str(tmp_path / "k"), "--json")
    assert keys["public_key"] == str(tmp_path / "k.pub") and Path(str(keys["public_key"])).is_file()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("a")
    pinned = rexec("snapshot", "hash", str(tmp_path / "data"), "--json", "-q")["digest"]
    checked = rexec("snapshot", "verify", str(tmp_path / "data"), str(pinned), "--json", "-q")
    assert checked["matches"] is True and checked["digest"] == pinned
