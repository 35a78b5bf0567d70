"""Genuine rexec records made in-process, for the attacks on what links records.

``Lab.run`` goes through the real pipeline (preflight, attest, sign, record, the
catalog hook) with :class:`tests.fakes.FakeRuntime` at the engine seam only, so a
record here is exactly what ``rexec run`` writes, in milliseconds. The lab holds a
trusted key (the team's) and an attacker's key; records can be re-signed, edited,
copied and re-indexed the way someone with write access to shared storage would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from executor import catalog, runner, spec
from executor.canonical import canonical_json
from executor.signing import KeyPolicy, KeySigner, SignOptions, generate_keypair
from tests.fakes import FakeRuntime

DOCKERFILE = "FROM scratch\n"
REPO = Path(__file__).resolve().parents[2]


def rexec(
    *args: str | Path, preexec_fn: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real ``rexec`` command, as a gate or a user runs it: a process and its exit code."""
    return subprocess.run(
        [sys.executable, "-m", "executor", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        preexec_fn=preexec_fn,
    )


class Lab:
    """A project directory, two keys, a runs dir and the per-test catalog."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runs = root / "runs"
        (root / "img").mkdir(parents=True)
        (root / "img" / "Dockerfile").write_text(DOCKERFILE)
        self.key, self.pub = root / "team.key", root / "team.pub"
        self.evil_key, self.evil_pub = root / "evil.key", root / "evil.pub"
        generate_keypair(self.key, self.pub, password=None)
        generate_keypair(self.evil_key, self.evil_pub, password=None)
        self.policy = KeyPolicy.from_file(self.pub)
        self.raw = root / "raw"
        self.raw.mkdir()
        (self.raw / "raw.txt").write_text("a\nb\n")

    def spec_text(self, name: str, inputs: Mapping[str, str], *, seed: int = 1) -> str:
        """A spec: each input a path (raw data) or a ``run:``/``latest:`` reference."""
        parts = [
            f'version = 1\nname = "{name}"\n',
            '[image]\nbuild = { dockerfile = "img/Dockerfile", context = "img",'
            " allow_unpinned_from = true }\n",
            f'[run]\ncommand = ["train"]\nseed = {seed}\n',
        ]
        for input_name, where in inputs.items():
            if where.startswith(("run:", "latest:")):
                parts.append(
                    f'[[inputs]]\nname = "{input_name}"\nfrom = "{where}"\nmount = "/{input_name}"\n'
                )
            else:
                from executor import snapshot

                digest = snapshot.hash_tree(Path(where)).digest
                parts.append(
                    f'[[inputs]]\nname = "{input_name}"\npath = "{where}"\ndigest = "{digest}"\n'
                    f'mount = "/{input_name}"\n'
                )
        parts.append("[determinism]\nframeworks = []\n")
        return "".join(parts)

    def run(
        self,
        name: str,
        *,
        inputs: Mapping[str, str] | None = None,
        writes: Mapping[str, bytes] | None = None,
        key: Path | None = None,
        sign: str = "key",
        exit_code: int = 0,
        seed: int = 1,
        runs: Path | None = None,
        upstream: object = "team",
    ) -> runner.RunResult:
        """One run through the real pipeline; its outputs are ``writes`` (path -> bytes)."""
        files = writes if writes is not None else {f"{name}/out.txt": name.encode()}

        def job(outputs: Path, reports: Path) -> None:
            for rel, data in files.items():
                (outputs / rel).parent.mkdir(parents=True, exist_ok=True)
                (outputs / rel).write_bytes(data)

        text = self.spec_text(
            name, inputs if inputs is not None else {"data": str(self.raw)}, seed=seed
        )
        path = self.root / f"{name}.toml"
        path.write_text(text)
        run_spec = spec.loads(text.encode(), source=path)
        options = runner.RunOptions(
            runs_dir=runs or self.runs,
            sign=SignOptions(method=sign, key_path=key or self.key),  # type: ignore[arg-type]
            echo_logs=False,
            upstream=self.policy if upstream == "team" else upstream,  # type: ignore[arg-type]
        )
        return runner.run(run_spec, options=options, runtime=FakeRuntime(job, exit_code=exit_code))

    def resign(
        self, record: Path, *, key: Path, edit: object = None, to: Path | None = None
    ) -> Path:
        """A copy of ``record`` (at ``to``) whose Statement is edited by ``edit(doc)`` and
        signed with ``key``: what someone with another key (or a stolen one) can make."""
        target = to or record
        if to is not None:
            shutil.copytree(record, to)
        doc = json.loads((target / "statement.json").read_bytes())
        if callable(edit):
            edit(doc)
        payload = canonical_json(doc)
        (target / "statement.json").write_bytes(payload)
        signer = KeySigner.from_options(SignOptions(method="key", key_path=key))
        (target / "statement.sigstore.json").write_bytes(signer.sign_dsse(payload))
        return target

    def index(self, *paths: Path, verify: bool = False) -> catalog.IndexReport:
        """``rexec catalog index`` of these records into the test's default catalog."""
        cat = catalog.open_catalog()
        try:
            return catalog.index_records(cat, list(paths), policy=self.policy if verify else None)
        finally:
            cat.close()


def set_started(doc: dict[str, object], when: str) -> None:
    """Move a Statement's start time (to make a forgery look newest)."""
    doc["predicate"]["runDetails"]["metadata"]["startedOn"] = when  # type: ignore[index]


def set_run_id(doc: dict[str, object], run_id: str) -> None:
    """Claim another run id."""
    doc["predicate"]["runDetails"]["metadata"]["invocationId"] = run_id  # type: ignore[index]
