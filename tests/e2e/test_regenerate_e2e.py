"""Regeneration keeps the current lineage consistent, whatever came before, against real
runs: a correction after a pruned one, forged and failed records that claim to read the
data, and a property over random chains and random sequences of corrections."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import NO_FRAMEWORKS, Rexec, gen, pinned, spec

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

# Each stage reads the number in its input (comment lines ignored) and writes it plus one:
# a correction that only changes a comment comes out identical at the first stage.
JOB = (
    "import os; os.makedirs('/outputs/d'); "
    "n = [l for l in open('/data/v.txt').read().splitlines() if not l.startswith('#')][0]; "
    "open('/outputs/d/v.txt', 'w').write(str(int(n) + 1) + '\\n')"
)


class Chain:
    """Stages s0 → s1 → … in a project of their own, run as one pipeline."""

    def __init__(self, rexec: Rexec, keys: tuple[Path, Path], root: Path, length: int) -> None:
        self.rexec, self.keys, self.root = rexec, keys, root
        self.runs = root / "runs"
        root.mkdir(parents=True, exist_ok=True)
        self.names = [f"s{i}" for i in range(length)]
        self.raw = self.data("1", "first")
        self.docs: dict[str, dict[str, Any]] = {}
        for i, name in enumerate(self.names):
            data = (
                pinned(rexec, "data", self.raw, "/data")
                if i == 0
                else {"name": "data", "from": f"latest:{self.names[i - 1]}:d", "mount": "/data"}
            )
            self.docs[name] = spec(
                name, ["python3", "-c", JOB], inputs=[data], determinism=NO_FRAMEWORKS
            )
            gen(root / f"{name}.toml", self.docs[name])
        gen(root / "pipeline.toml", self.pipeline_doc(self.names))

    @staticmethod
    def pipeline_doc(names: list[str]) -> dict[str, Any]:
        return {"version": 1, "name": "c", "stages": [f"{n}.toml" for n in names]}

    def command(self, name: str, argv: list[str]) -> str:
        """Stage ``name``'s spec with another command."""
        doc = self.docs[name]
        return tomli_w.dumps({**doc, "run": {**doc["run"], "command": argv}})

    def data(self, number: str, comment: str) -> Path:
        """A new raw snapshot (readable by the job's unprivileged user)."""
        path = self.root / f"raw-{len(list(self.root.glob('raw-*')))}"
        path.mkdir()
        (path / "v.txt").write_text(f"# {comment}\n{number}\n")
        return path

    def trust(self) -> list[str | Path]:
        return ["--key", self.keys[1], "--signing-key", self.keys[0], "--runs-dir", self.runs]

    def pipeline(self) -> Any:
        out = self.rexec(
            "pipeline", "run", self.root / "pipeline.toml", *self.trust(), "--json", "-q"
        )
        return json.loads(out.stdout)

    def correct(self, new: Path, *, check: int | None = 0) -> Any:
        old = self.rexec("snapshot", "hash", self.raw, "--quiet").stdout.strip()
        out = self.rexec(
            "regenerate", old, "--with", new, *self.trust(), "--json", "-q", check=check
        )
        self.raw = new
        return json.loads(out.stdout)

    def query(self, sql: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = json.loads(
            self.rexec("catalog", "query", sql, "--json").stdout
        )
        return rows

    def assert_consistent(self, *, also_stale: frozenset[str] = frozenset()) -> None:
        """Every stage has one current run in this chain's runs dir (another signer's
        records elsewhere are not its lineage), whose input is its upstream's current
        output, and nothing is stale."""
        current = self.query(
            "SELECT r.statement_sha256, r.name, r.run_id FROM runs r"
            " WHERE r.kind != 'replay' AND r.status = 'succeeded' AND r.statement_sha256 NOT IN"
            " (SELECT s.old_statement FROM supersedes s JOIN runs n"
            " ON n.statement_sha256 = s.statement_sha256 WHERE n.verification LIKE 'verified%')"
            f" AND r.path LIKE '{self.runs}/%'"
        )
        by_name: dict[str, list[str]] = {}
        for row in current:
            by_name.setdefault(row["name"], []).append(row["statement_sha256"])
        assert {n: len(v) for n, v in by_name.items()} == {n: 1 for n in self.names}, by_name
        raw = self.rexec("snapshot", "hash", self.raw, "--quiet").stdout.strip()
        for i, name in enumerate(self.names):
            (statement,) = by_name[name]
            (read,) = self.query(
                "SELECT digest FROM inputs WHERE role = 'input' AND statement_sha256 = "
                f"'{statement}'"
            )
            if i == 0:
                assert read["digest"] == raw, name
                continue
            (upstream,) = by_name[self.names[i - 1]]
            (made,) = self.query(
                "SELECT digest FROM outputs WHERE name = 'outputs/d/' AND statement_sha256 = "
                f"'{upstream}'"
            )
            assert read["digest"] == made["digest"], f"{name} reads a superseded upstream"
        stale = json.loads(self.rexec("log", "--stale", "--json").stdout)["runs"]
        assert {r["run_id"] for r in stale} == also_stale


def decisions(doc: dict[str, Any]) -> dict[str, str]:
    return {s["stage"]: s["decision"] for s in doc["stages"]}


@pytest.fixture
def chain(rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path) -> Chain:
    rexec.env["REXEC_CATALOG"] = str(tmp_path / "catalog.sqlite")
    made = Chain(rexec, keys, tmp_path / "c", 2)
    made.pipeline()
    return made


def test_a_real_correction_after_a_pruned_one_regenerates_everything_below(
    chain: Chain,
) -> None:
    """The second, real, correction re-ran s0 and then pruned s1 'because every input it
    reads came out unchanged upstream', leaving s1 stale with exit 0."""
    noop = chain.correct(chain.data("1", "a comment changed"))
    assert decisions(noop) == {"s0": "regenerated", "s1": "pruned"}
    chain.assert_consistent()
    real = chain.correct(chain.data("5", "a comment changed"))
    assert decisions(real) == {"s0": "regenerated", "s1": "regenerated"}
    chain.assert_consistent()


def test_a_forged_record_claiming_to_read_the_data_is_left_out_not_fatal(
    chain: Chain, tmp_path: Path
) -> None:
    """One record signed by someone else that claims to read the corrected data stopped
    the whole regeneration (exit 2, nothing ran)."""
    chain.rexec("keygen", "--out", tmp_path / "evil")
    forged = chain.rexec(
        "run", chain.root / "s0.toml", "--signing-key", tmp_path / "evil.key", "--runs-dir",
        tmp_path / "evil-runs", "--json", "-q", "--seed", "2",
    )  # fmt: skip
    forged_id = json.loads(forged.stdout)["run_id"]
    doc = chain.correct(chain.data("7", "real"))
    assert decisions(doc) == {"s0": "regenerated", "s1": "regenerated"}
    (ignored,) = doc["ignored"]
    assert ignored["runId"] == forged_id and "does not verify" in ignored["reason"]
    # the forgery still read the corrected data: stale, and no part of the chain
    chain.assert_consistent(also_stale=frozenset({forged_id}))


def test_a_failed_earlier_attempt_is_not_planned(chain: Chain, tmp_path: Path) -> None:
    """regenerate re-ran a failed attempt that read the data; it failed; nothing else ran."""
    failing = chain.root / "s0-broken.toml"
    failing.write_text(chain.command("s0", ["sh", "-c", "exit 3"]))
    chain.rexec(
        "run", failing, "--signing-key", chain.keys[0], "--runs-dir", chain.runs, "-q", check=5
    )
    doc = chain.correct(chain.data("9", "real"))
    assert decisions(doc) == {"s0": "regenerated", "s1": "regenerated"}
    assert any("its job failed" in i["reason"] for i in doc["ignored"])
    chain.assert_consistent()


@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,  # the same examples on every CI run: a failure is reproducible
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    length=st.integers(min_value=3, max_value=6),
    corrections=st.lists(st.booleans(), min_size=1, max_size=3),
)
def test_regeneration_keeps_every_current_run_on_its_upstreams_current_outputs(
    rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path, length: int, corrections: list[bool]
) -> None:
    """Random chains of 3 to 6 stages, random sequences of no-op (a comment) and real (the
    number) corrections: after each, the current lineage is consistent and nothing is stale."""
    root = tmp_path / f"chain-{len(list(tmp_path.glob('chain-*')))}"  # one per example
    rexec.env["REXEC_CATALOG"] = str(root / "catalog.sqlite")
    chain = Chain(rexec, keys, root, length)
    chain.pipeline()
    number = 1
    for step, real in enumerate(corrections):
        number += 1 if real else 0
        doc = chain.correct(chain.data(str(number), f"correction {step}"))
        first = decisions(doc)["s0"]
        assert first == "regenerated"
        if not real:  # s0's outputs came out identical: everything below it is pruned
            assert all(d == "pruned" for s, d in decisions(doc).items() if s != "s0")
        chain.assert_consistent()


def test_a_pipeline_stopped_by_a_signal_signs_an_interrupted_ledger(
    rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    rexec.env["REXEC_CATALOG"] = str(tmp_path / "catalog.sqlite")
    chain = Chain(rexec, keys, tmp_path / "c", 2)
    (chain.root / "s1.toml").write_text(chain.command("s1", ["sleep", "120"]))
    proc = subprocess.Popen(
        rexec.argv("pipeline", "run", chain.root / "pipeline.toml", *chain.trust(), "--json", "-q"),
        env=rexec.env, cwd=rexec.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(chain.runs.glob(".*-s1-*.partial")):  # s1 is running
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
        time.sleep(0.3)
    time.sleep(2)  # its container is up
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "interrupted (SIGTERM)" in stderr
    (ledger,) = (chain.runs / "pipelines").iterdir()
    doc = json.loads((ledger / "statement.json").read_bytes())
    assert (ledger / "statement.sigstore.json").is_file()
    stages = {s["stage"]: s["decision"] for s in doc["predicate"]["stages"]}
    assert stages == {"s0": "ran", "s1": "interrupted"}
    assert doc["predicate"]["interrupted"]
    from executor.signing import KeyPolicy

    signed = KeyPolicy.from_file(keys[1]).verify_bundle(
        (ledger / "statement.sigstore.json").read_bytes()
    )
    assert signed.payload == (ledger / "statement.json").read_bytes()


def test_a_pipeline_reads_an_outside_upstream_only_from_a_record_that_verifies(
    rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """A stage that reads a run made outside the pipeline (latest:NAME) took the newest
    catalog row, whoever signed it."""
    rexec.env["REXEC_CATALOG"] = str(tmp_path / "catalog.sqlite")
    chain = Chain(rexec, keys, tmp_path / "c", 2)
    genuine = rexec.run(chain.root / "s0.toml", keys[0], chain.runs, "-q")
    rexec("keygen", "--out", tmp_path / "evil")
    poison = chain.data("666", "poison")
    evil_spec = tmp_path / "evil.toml"
    gen(evil_spec, {**chain.docs["s0"], "inputs": [pinned(rexec, "data", poison, "/data")]})
    rexec.run(evil_spec, tmp_path / "evil.key", tmp_path / "evil-runs", "-q")  # newer
    gen(chain.root / "pipeline.toml", chain.pipeline_doc(["s1"]))
    doc = chain.pipeline()
    (stage,) = doc["stages"]
    made = Path(stage["runDir"])
    statement = json.loads((made / "statement.json").read_bytes())
    (dep,) = [
        d for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        if d["name"] == "input:data"
    ]  # fmt: skip
    assert dep["annotations"]["fromRun"] == genuine.name
    assert (made / "outputs" / "d" / "v.txt").read_text() == "3\n"  # 1 + 1 + 1, not 668
    shutil.rmtree(tmp_path / "evil-runs")


def test_a_regeneration_stopped_by_a_signal_signs_an_interrupted_ledger(
    rexec: Rexec, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    rexec.env["REXEC_CATALOG"] = str(tmp_path / "catalog.sqlite")
    chain = Chain(rexec, keys, tmp_path / "c", 2)
    slow = "import time; time.sleep(6); " + JOB
    (chain.root / "s1.toml").write_text(chain.command("s1", ["python3", "-c", slow]))
    chain.pipeline()
    old = rexec("snapshot", "hash", chain.raw, "--quiet").stdout.strip()
    proc = subprocess.Popen(
        rexec.argv("regenerate", old, "--with", chain.data("4", "real"), *chain.trust(), "-q"),
        env=rexec.env, cwd=rexec.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while len(list(chain.runs.glob(".*-s1-*.partial"))) == 0:  # s1 is being re-run
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
        time.sleep(0.3)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "interrupted (SIGTERM)" in stderr
    ledgers = [p for p in (chain.runs / "pipelines").iterdir() if "regenerate" in p.name]
    (ledger,) = ledgers
    doc = json.loads((ledger / "statement.json").read_bytes())
    stages = {s["stage"]: s["decision"] for s in doc["predicate"]["stages"]}
    assert stages == {"s0": "regenerated", "s1": "interrupted"}
    assert doc["predicate"]["kind"] == "regeneration" and doc["predicate"]["interrupted"]
    assert (ledger / "statement.sigstore.json").is_file()


def test_regenerate_submit_that_slurm_refuses_queues_nothing_and_says_why(
    chain: Chain, tmp_path: Path
) -> None:
    """`regenerate --submit` with no Slurm to take the first job exited 5, "s0 failed", as
    if a job had run: it is sbatch's refusal (exit 2), nothing queued, no ledger written."""
    from executor.errors import ExitCode

    ledgers = sorted((chain.runs / "pipelines").iterdir())
    old = chain.rexec("snapshot", "hash", chain.raw, "--quiet").stdout.strip()
    (tmp_path / "slurm.conf").write_text("# names no cluster: sbatch refuses at once\n")
    chain.rexec.env["SLURM_CONF"] = str(tmp_path / "slurm.conf")
    refused = chain.rexec(
        "regenerate", old, "--with", chain.data("3", "x"), *chain.trust(), "--submit", "-q",
        check=ExitCode.BAD_INPUT,
    )  # fmt: skip
    assert "sbatch refused the job" in refused.stderr and "nothing was queued" in refused.stderr
    assert list((chain.runs / ".rexec-jobs").glob("*")) == []  # no submission kept
    assert sorted((chain.runs / "pipelines").iterdir()) == ledgers
