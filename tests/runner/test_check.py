"""`run --check` believes the image's answer only so far: a printable path, and only the
modules it was asked about (a hostile image cannot put terminal escapes or names in)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

from executor import runner, spec
from executor.signing import SignOptions
from tests.fakes import FakeRuntime


class Answering(FakeRuntime):
    def __init__(self, answer: object) -> None:
        super().__init__()
        self.answer = answer
        self.asked: list[str] = []

    def run_capture(self, image: str, command: Sequence[str], *, user: str) -> str:
        if "importlib.util" not in " ".join(command):  # the image's inventory, as ever
            return super().run_capture(image, command, user=user)
        self.asked.append(command[-1])
        return json.dumps(self.answer) + "\n"


def load(tmp_path: Path) -> spec.RunSpec:
    (tmp_path / "img").mkdir(parents=True)
    (tmp_path / "img" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "train.py").write_text("import json\nimport numpy\nimport mine\n")
    (tmp_path / "code" / "mine.py").write_text("")
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t",
                 "commit", "-qm", "code"]):  # fmt: skip
        subprocess.run(["git", "-C", str(tmp_path / "code"), *args], check=True)
    text = (
        'version = 1\nname = "t"\n'
        '[image]\nbuild = { dockerfile = "img/Dockerfile", context = "img", '
        "allow_unpinned_from = true }\n"
        '[run]\ncommand = ["python3", "/code/train.py"]\nseed = 1\n'
        '[code]\npath = "code"\nmount = "/code"\n'
    )
    return spec.loads(text.encode(), source=tmp_path / "spec.toml")


def options(tmp_path: Path) -> runner.RunOptions:
    return runner.RunOptions(
        runs_dir=tmp_path / "runs", sign=SignOptions(method="none"), allow_dirty=True
    )


def test_the_code_directorys_modules_are_not_asked_about_and_a_hostile_answer_is_cut(
    tmp_path: Path,
) -> None:
    evil = "\x1b]0;pwned\x07/usr/bin/python3"
    runtime = Answering({"program": evil, "missing": ["numpy", "\x1b[2J", "os"]})
    found = runner.check(load(tmp_path), options=options(tmp_path), runtime=runtime)
    (asked,) = runtime.asked
    assert json.loads(asked)["modules"] == ["json", "numpy"]  # mine.py is the code's own
    assert found.found is None  # not a printable path: not believed
    assert found.missing == ("numpy",)  # only what was asked about
    assert runtime.requests == []  # no job container
    good = Answering({"program": "/usr/bin/python3", "missing": []})
    assert runner.check(load(tmp_path / "b"), options=options(tmp_path), runtime=good).found
