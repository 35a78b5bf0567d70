"""The run record: its layout, the Statement it carries, writing, reading and verifying it
(the face of ``record/``).

``writer`` lays a record out (the file names, ``RecordWriter``: staged, then renamed into
place whole), ``manifest`` builds and strictly loads the in-toto Statement, ``reader``
reads a record back through typed views (every file checked against its signed digest),
``integrity`` compares files with the Statement, and ``verification`` is ``rexec verify``
of one record: signature and policy first, then every file it names.
"""

from __future__ import annotations

from executor.record import manifest, writer
from executor.record.manifest import (
    MANIFEST_SCHEMA,
    PROVENANCE_TYPE,
    STATEMENT_TYPE,
    Byproduct,
    RunStatus,
    Subject,
    statement_about,
)
from executor.record.manifest import loads as load_statement
from executor.record.reader import STATEMENT_CAP, RunRecord, StatementView, dig, load_record
from executor.record.verification import (
    TEST_RESULT_TYPE,
    VERDICT_BUNDLE,
    VERDICT_FILE,
    Verdict,
    replay_verdict,
    status_gate,
    verify_artifact,
    verify_record,
)
from executor.record.writer import BUNDLE, PUBLIC_KEY, STATEMENT, RecordWriter, new_run_id

__all__ = [
    "BUNDLE",
    "MANIFEST_SCHEMA",
    "PROVENANCE_TYPE",
    "PUBLIC_KEY",
    "STATEMENT",
    "STATEMENT_CAP",
    "STATEMENT_TYPE",
    "TEST_RESULT_TYPE",
    "VERDICT_BUNDLE",
    "VERDICT_FILE",
    "Byproduct",
    "RecordWriter",
    "RunRecord",
    "RunStatus",
    "StatementView",
    "Subject",
    "Verdict",
    "dig",
    "load_record",
    "load_statement",
    "manifest",
    "new_run_id",
    "replay_verdict",
    "statement_about",
    "status_gate",
    "verify_artifact",
    "verify_record",
    "writer",
]
