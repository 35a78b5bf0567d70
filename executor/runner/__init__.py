"""One run: the only module that knows the order of its phases.

run:  spec -> request (preflight: signer, engine, snapshots, code, GPUs; image; host
          capture; the container decided) -> execute (the job, to whatever end; what it
          left collected) -> record (attest, sign, write, commit, index)

The request phase checks everything that can be checked without starting the job,
so a wrong pin or a missing key fails in seconds and leaves nothing behind.
Snapshots are verified before the image is built because a build runs containers
too. Once the job has started, every ending (success, failure, timeout, interrupt)
is recorded and signed with its status. Only this module writes into the record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from executor import spec
from executor.canonical import sha256_hex
from executor.record import RunRecord, writer
from executor.runner.collect import PREEMPT_SIGNAL
from executor.runner.diagnose import failure_hint
from executor.runner.options import RunOptions, RunResult
from executor.runner.preflight import check_pins, check_runs_dir, resolve_from_inputs
from executor.runtime import ContainerRuntime, default_runtime
from executor.signing import Signer, make_signer

# The phases are imported by run(): what `rexec submit` takes from here (the pin checks)
# starts without the image, container and attestation machinery.
if TYPE_CHECKING:
    from executor.runner.execute import Execution
    from executor.runner.image_check import Check
    from executor.runner.request import Job

__all__ = [
    "PREEMPT_SIGNAL",
    "RunOptions",
    "RunResult",
    "check",
    "check_pins",
    "check_runs_dir",
    "failure_hint",
    "resolve_from_inputs",
    "run",
]


def check(
    run_spec: spec.RunSpec, *, options: RunOptions, runtime: ContainerRuntime | None = None
) -> Check:
    """``rexec run --check``: pins, image, the program and the entry script's imports,
    checked in the image by one short helper; no job starts."""
    from executor.runner.image_check import check as check_in_image

    run_spec = _from_inputs_resolved(run_spec, options)
    return check_in_image(run_spec, runtime=runtime or default_runtime(), options=options)


def _from_inputs_resolved(run_spec: spec.RunSpec, options: RunOptions) -> spec.RunSpec:
    """Each ``from`` input resolved to a record verified under the caller's policy."""
    return resolve_from_inputs(
        run_spec,
        runs_dir=options.runs_dir,
        policy=options.upstream,
        verified=options.upstream_verified,
        say=options.say,
    )


def run(
    run_spec: spec.RunSpec, *, options: RunOptions, runtime: ContainerRuntime | None = None
) -> RunResult:
    """Run a spec through its phases; every ending after the job starts is recorded."""
    from executor.runner.execute import execute
    from executor.runner.request import request

    run_spec = _from_inputs_resolved(run_spec, options)
    check_runs_dir(run_spec, options.runs_dir)
    run_id = options.run_id or writer.new_run_id(run_spec.name)
    runtime = runtime or default_runtime(run_spec.engine)
    # A missing key must fail before anything runs.
    signer = options.signer if options.signer is not None else make_signer(options.sign)
    # The staging directory first: a runs dir that cannot take a record fails now,
    # before an image is built or a container started.
    with writer.RecordWriter(options.runs_dir, run_id) as record:
        job = request(
            run_spec,
            run_id=run_id,
            staging_dir=record.staging,
            runtime=runtime,
            options=options,
        )
        ran = execute(job, runtime=runtime, options=options)
        result = _record(job, ran, record=record, signer=signer, options=options)
    if ran.stopped is not None:
        raise ran.stopped
    return result


def _record(
    job: Job,
    ran: Execution,
    *,
    record: writer.RecordWriter,
    signer: Signer | None,
    options: RunOptions,
) -> RunResult:
    """Attest, sign, write and commit the record, then index it from what is in hand."""
    from executor.runner.attest import attest

    attestation = attest(job, ran, options)
    files = {**attestation.files, writer.STATEMENT: attestation.payload}
    if signer is not None:
        options.say("signing the statement")
        files[writer.BUNDLE] = signer.sign_dsse(attestation.payload)
        if signer.public_key_pem:
            files[writer.PUBLIC_KEY] = signer.public_key_pem
    result = RunResult(
        run_id=record.run_id,
        run_dir=record.final,
        status=ran.status,
        statement_sha256=sha256_hex(attestation.payload),
        subjects=tuple(ran.collected.subjects),
        signer=options.sign.method if signer is not None else None,
    )
    files[writer.RECORD] = writer.json_file(
        {**result.to_json(), "run_dir": None, "spec": str(job.spec.source)}
    )
    if options.before_commit is not None:
        files.update(options.before_commit(job.staging.outputs, result, attestation.statement))
    record.commit(files)
    # best effort: warns, never fails the run. Imported here, after the job: the catalog
    # (its indexer, comparisons, approvals) is a tenth of rexec's start-up.
    from executor import catalog

    catalog.remember(
        RunRecord(
            path=record.final,
            statement=attestation.statement,
            statement_sha256=result.statement_sha256,
            host=job.host,
            listings={name: s.listing for name, s in job.checked.snapshots.items()},
            params_json=job.params,
        ),
        say=options.say,
    )
    return result
