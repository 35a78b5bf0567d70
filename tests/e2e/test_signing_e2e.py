"""Both signing methods from `rexec run`, verified by `rexec verify` (real engine, real commands)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from executor.errors import ExitCode
from tests.e2e.conftest import Project, Rexec
from tests.sigstore_standin import StandIn

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

EMAIL = "trainer@example.test"
JOB = "import os\nopen(os.environ['REXEC_OUTPUTS'] + '/model.bin', 'wb').write(b'weights')\n"


@pytest.mark.allow_loopback
def test_keyless_run_verifies_against_the_standin(
    project: Project, rexec: Rexec, tmp_path: Path
) -> None:
    project.write_code("job.py", JOB)
    spec = project.spec(["python3", "/code/job.py"])
    with StandIn() as standin:
        root, config = standin.write_configs(tmp_path)
        out = rexec(
            "run",
            spec,
            "--sign",
            "sigstore",
            "--identity-token",
            standin.token(email=EMAIL),
            "--trust-config",
            config,
            "--runs-dir",
            tmp_path / "runs",
            "--json",
        )
    run_dir = Path(json.loads(out.stdout)["run_dir"])
    bundle = json.loads((run_dir / "statement.sigstore.json").read_text())
    assert "certificate" in bundle["verificationMaterial"]
    assert len(bundle["verificationMaterial"]["tlogEntries"]) == 1
    assert not (run_dir / "signing-key.pub").exists()

    ok = rexec(
        "verify", run_dir, "--identity", EMAIL, "--issuer", standin.issuer, "--trusted-root", root
    )
    assert "VERIFIED" in ok.stdout
    wrong = rexec(
        "verify",
        run_dir,
        "--identity",
        "someone@else.test",
        "--issuer",
        standin.issuer,
        "--trusted-root",
        root,
        check=ExitCode.SIGNATURE,
    )
    assert EMAIL in wrong.stderr
    # The shipped public-good root does not trust the stand-in's CA.
    rexec(
        "verify", run_dir, "--identity", EMAIL, "--issuer", standin.issuer, check=ExitCode.SIGNATURE
    )


def test_encrypted_key_from_the_environment(project: Project, rexec: Rexec, tmp_path: Path) -> None:
    project.write_code("job.py", JOB)
    spec = project.spec(["python3", "/code/job.py"])
    rexec.env["KEY_PASSWORD"] = "correct horse"
    rexec("keygen", "--out", tmp_path / "k" / "signing", "--password-env", "KEY_PASSWORD")
    rexec.env["REXEC_SIGNING_KEY"] = (tmp_path / "k" / "signing.key").read_text()
    rexec.env["REXEC_SIGNING_KEY_PASSWORD"] = "wrong"
    bad = rexec("run", spec, "--runs-dir", tmp_path / "runs", check=ExitCode.BAD_INPUT)
    assert "password" in bad.stderr.lower()
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    rexec.env["REXEC_SIGNING_KEY_PASSWORD"] = "correct horse"
    out = rexec("run", spec, "--runs-dir", tmp_path / "runs", "--json")
    run_dir = Path(json.loads(out.stdout)["run_dir"])
    assert (run_dir / "signing-key.pub").read_bytes() == (
        tmp_path / "k" / "signing.pub"
    ).read_bytes()
    rexec("verify", run_dir, "--key", tmp_path / "k" / "signing.pub")
