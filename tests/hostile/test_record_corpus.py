"""Hostile record files and unfriendly paths, through the real `rexec` command.

A record may have been edited by anyone, and a user may point rexec at a FIFO,
a device or an unwritable place. Each case must end with a clear message that
names the file, its own exit code, no traceback, and nothing half-written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from executor.canonical import canonical_json
from executor.errors import ExitCode
from executor.signing import KeySigner, SignOptions, generate_keypair

REPO = Path(__file__).resolve().parents[2]


def rexec(*args: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "executor", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def fails(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    private, public = tmp_path / "k.key", tmp_path / "k.pub"
    generate_keypair(private, public, password=None)
    return private, public


def signed_record(root: Path, key: Path, payload: bytes) -> Path:
    """A record directory whose statement is ``payload``, validly signed."""
    signer = KeySigner.from_options(SignOptions(method="key", key_path=key))
    (root / "outputs").mkdir(parents=True)
    (root / "statement.json").write_bytes(payload)
    (root / "statement.sigstore.json").write_bytes(signer.sign_dsse(payload))
    return root


def statement(**extra: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {"internalParameters": {"manifestSchema": "rexec.manifest/v1"}},
            "runDetails": {"metadata": {"invocationId": "r1"}, "byproducts": []},
        },
    }
    doc.update(extra)
    return doc


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (
            b'{"_type": "https://in-toto.io/Statement/v1", "_type": "x", "subject": []}',
            "duplicate key",
        ),
        (b'{"_type": "https://in-toto.io/Statement/v1", "subject": [NaN]}', "NaN is not JSON"),
        (
            b'{"_type": "https://in-toto.io/Statement/v1", "subject": [], "x": '
            + b"[" * 100_000
            + b"]" * 100_000
            + b"}",
            "nested too deeply",
        ),
        (b"\xff\xfe not utf-8", "not strict JSON"),
    ],
    ids=["duplicate-keys", "nan", "deep", "not-utf8"],
)
def test_a_signed_payload_parsers_could_disagree_on_is_refused(
    tmp_path: Path, keys: tuple[Path, Path], payload: bytes, needle: str
) -> None:
    record = signed_record(tmp_path / "run", keys[0], payload)
    fails(rexec("verify", record, "--key", keys[1]), ExitCode.BAD_INPUT, needle)
    fails(
        rexec("replay", record, "--key", keys[1], "--runs-dir", tmp_path / "runs"),
        ExitCode.BAD_INPUT,
        needle,
    )
    assert not (tmp_path / "runs").exists()


def test_a_record_of_an_unknown_schema_verifies_with_a_warning_and_is_not_replayed(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    doc = statement()
    doc["predicate"]["buildDefinition"]["internalParameters"]["manifestSchema"] = (
        "rexec.manifest/v9"  # type: ignore[index]
    )
    doc["predicate"]["buildDefinition"]["externalParameters"] = {"spec": {}}  # type: ignore[index]
    record = signed_record(tmp_path / "run", keys[0], canonical_json(doc))
    proc = rexec("verify", record, "--key", keys[1])
    assert proc.returncode == 0, proc.stderr
    assert "warning:   the record's manifest schema is 'rexec.manifest/v9'" in proc.stdout
    verdict = json.loads(rexec("verify", record, "--key", keys[1], "--json").stdout)
    assert verdict["warnings"] and verdict["verified"] is True
    fails(
        rexec("replay", record, "--key", keys[1], "--runs-dir", tmp_path / "runs"),
        ExitCode.BAD_INPUT,
        "manifest schema 'rexec.manifest/v9'",
        "rexec version that wrote it",
    )
    fails(rexec("diff", record, record), ExitCode.BAD_INPUT, "rexec.manifest/v9")


def test_record_files_that_are_fifos_links_or_huge_are_refused_without_hanging(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    record = signed_record(tmp_path / "run", keys[0], canonical_json(statement()))
    (record / "statement.json").unlink()
    os.mkfifo(record / "statement.json")
    fails(
        rexec("verify", record, "--key", keys[1]), ExitCode.BAD_INPUT, "statement.json: is a FIFO"
    )
    (record / "statement.json").unlink()
    (record / "statement.json").symlink_to("/etc/passwd")
    fails(rexec("verify", record, "--key", keys[1]), ExitCode.BAD_INPUT, "is a symbolic link")
    bundle = record / "statement.sigstore.json"
    bundle.unlink()
    bundle.symlink_to("/dev/zero")
    fails(rexec("verify", record, "--key", keys[1]), ExitCode.BAD_INPUT, "symbolic link")


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: os.mkfifo(p), "is a FIFO, not a regular file"),
        (lambda p: p.symlink_to("/dev/zero"), "is a device, not a regular file"),
        (lambda p: p.mkdir(), "is a directory, not a regular file"),
        (lambda p: p.write_bytes(b"x" * (2 << 20)), "more than the 1048576 bytes"),
        (lambda p: p.write_bytes(b"\xff\xfe"), "not valid TOML"),
        (lambda p: None, "no such spec file"),
    ],
    ids=["fifo", "dev-zero", "directory", "huge", "binary", "missing"],
)
@pytest.mark.parametrize("verb", ["run", "lock"])
def test_a_spec_that_is_not_a_small_file_is_refused_at_once(
    tmp_path: Path,
    make,
    needle: str,
    verb: str,  # type: ignore[no-untyped-def]
) -> None:
    path = tmp_path / "spec.toml"
    make(path)
    fails(rexec(verb, path), ExitCode.BAD_INPUT, str(path), needle)


def test_unwritable_outputs_of_lock_and_keygen_are_clear_errors(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'version = 1\nname = "x"\n[image]\nref = "r@sha256:' + "a" * 64 + '"\n'
        '[run]\ncommand = ["true"]\nseed = 1\n'
    )
    fails(
        rexec("lock", spec, "-o", "/proc/no/such/dir/l.toml"),
        ExitCode.BAD_INPUT,
        "-o /proc/no/such/dir/l.toml: cannot write the locked spec",
    )
    fails(rexec("keygen", "--out", "/proc/no/such/k"), ExitCode.BAD_INPUT, "/proc/no")
    assert not list(tmp_path.glob(".*.tmp"))


def _digest(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_output_comparison_reads_nothing_outside_the_record_and_nothing_unbounded(
    tmp_path: Path,
) -> None:
    """diff/replay compare numeric outputs: a forged subject name, a link in place of an
    output or a zip bomb must not make them read host files or memory without end."""
    import io
    import zipfile

    from executor.compare import compare_outputs

    host = tmp_path / "host-secret.json"
    host.write_text('{"secret": 42}')
    before, after = tmp_path / "a" / "outputs", tmp_path / "b" / "outputs"
    before.mkdir(parents=True)
    after.mkdir(parents=True)
    (before / "link.json").symlink_to(host)
    (after / "link.json").write_text('{"secret": 1}')
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("w.npy", b"not npy")
    (before / "w.npz").write_bytes(archive.getvalue())
    (after / "w.npz").write_bytes(b"other")
    result = compare_outputs(
        original={
            "../../host-secret.json": _digest(host.read_bytes()),
            "link.json": _digest(host.read_bytes()),
            "w.npz": _digest((before / "w.npz").read_bytes()),
        },
        original_dir=before,
        replay={"../../host-secret.json": "0" * 64, "link.json": "1" * 64, "w.npz": "2" * 64},
        replay_dir=after,
    )
    notes = {f.name: f.note for f in result.files}
    assert (
        notes["../../host-secret.json"] == "not a safe output name, so only digests were compared"
    )
    assert notes["link.json"] == "the original file no longer matches its signed digest"
    # nothing was read as numbers: the host file's value never reached a comparison
    assert all(f.numeric is None for f in result.files)


def test_a_zip_bomb_npz_is_not_unpacked(tmp_path: Path) -> None:
    import struct
    import zipfile

    from executor.compare import NUMERIC_CAP, NotNumeric, read_numeric

    path = tmp_path / "w.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.npy", b"x")
    data = bytearray(path.read_bytes())
    # claim a member far larger than the cap in the central directory, as a bomb does
    central = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, min(NUMERIC_CAP + 1, 2**32 - 1))
    path.write_bytes(bytes(data))
    with pytest.raises(NotNumeric, match="unpacks to more than"):
        read_numeric(path)


def test_strings_from_a_record_are_shown_escaped(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    """A signed Statement may carry terminal escapes in its run id or status; verify prints
    them escaped, never as control sequences."""
    doc = statement()
    doc["predicate"]["runDetails"]["metadata"]["invocationId"] = "r\x1b[2J\x1b]0;owned\x07"  # type: ignore[index]
    doc["predicate"]["runDetails"]["byproducts"] = [  # type: ignore[index]
        {"name": "exit-status", "annotations": {"status": "succ\x1b[32meeded", "exitCode": 0}}
    ]
    record = signed_record(tmp_path / "run", keys[0], canonical_json(doc))
    refused = rexec("verify", record, "--key", keys[1])  # not "succeeded": the gate says no
    assert refused.returncode == 5, refused.stderr
    assert "\x1b" not in refused.stdout + refused.stderr and "succ\\x1b[32meeded" in refused.stderr
    proc = rexec("verify", record, "--key", keys[1], "--allow-failed")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout
    assert "r\\x1b[2J\\x1b]0;owned\\x07" in proc.stdout
