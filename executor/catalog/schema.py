"""The catalog's tables, and how an older catalog's are brought up to date.

Every table is keyed by the Statement's sha256 (a record), never by the run id it
claims: two records that claim one run id are two rows, a conflict shown as such.
``run_id`` stays in every table, so a query by run id reads as it always did.
"""

from __future__ import annotations

__all__ = ["INDEXES", "MIGRATIONS", "SCHEMA", "SCHEMA_VERSION", "TABLES", "TABLE_COLUMNS"]

SCHEMA_VERSION = 6
# Every table is keyed by the Statement's sha256 (a record), never by the run id it claims:
# two records that claim one run id are two rows, a conflict shown as such (docs/catalog.md).
# {text} is the backend's text type (PostgreSQL: the C collation, to sort as SQLite does);
# {newest} the ledger's order in an index (PostgreSQL would put NULLs first).
_RUNS_V4 = """
        statement_sha256 {text} PRIMARY KEY, run_id {text} NOT NULL,
        name {text}, kind {text}, status {text}, exit_code INTEGER,
        started {text}, finished {text}, seed BIGINT,
        image {text}, code_commit {text}, code_tree {text},
        invoker {text}, engine {text}, signed INTEGER,
        verification {text}, replay_of {text}, derived_from {text}, original_statement {text},
        path {text} NOT NULL, partial {text}, signer_kind {text}, signer {text}, stage_key {text},
        purpose {text}, verdict {text}"""
TABLE_COLUMNS = {
    # seed_key (schema 6): the stage key but for the seed, what runs of one spec with
    # other seeds (`run --seeds`) share: the noise reference of a metric
    "runs": _RUNS_V4 + ", seed_key {text}",
    "inputs": """
        statement_sha256 {text} NOT NULL, run_id {text} NOT NULL, name {text} NOT NULL,
        digest {text} NOT NULL, role {text} NOT NULL, from_run {text}, from_statement {text},
        PRIMARY KEY (statement_sha256, name)""",
    "outputs": """
        statement_sha256 {text} NOT NULL, run_id {text} NOT NULL, name {text} NOT NULL,
        digest {text} NOT NULL, role {text} NOT NULL, PRIMARY KEY (statement_sha256, name)""",
    "params": """
        statement_sha256 {text} NOT NULL, run_id {text} NOT NULL, key {text} NOT NULL,
        value {text}, num DOUBLE PRECISION, overridden INTEGER,
        PRIMARY KEY (statement_sha256, key)""",
    "metrics": """
        statement_sha256 {text} NOT NULL, run_id {text} NOT NULL, file {text} NOT NULL,
        key {text} NOT NULL, value DOUBLE PRECISION, file_digest {text},
        PRIMARY KEY (statement_sha256, file, key)""",
    "supersedes": """
        statement_sha256 {text} NOT NULL, run_id {text} NOT NULL,
        old_statement {text} NOT NULL, old_run {text} NOT NULL, regeneration {text},
        PRIMARY KEY (statement_sha256, old_statement)""",
    "corrections": """
        statement_sha256 {text} NOT NULL, run_id {text} NOT NULL, old_digest {text} NOT NULL,
        new_digest {text} NOT NULL, PRIMARY KEY (statement_sha256, old_digest)""",
    "approvals": """
        statement_sha256 {text} NOT NULL, run_id {text} NOT NULL, file {text} NOT NULL,
        approver_kind {text}, approver {text}, result {text}, verified_at {text},
        policy {text}, verification {text}, PRIMARY KEY (statement_sha256, file)""",
    # schema 6: a pipeline's or a regeneration's signed ledger, one row, and its stages
    "pipelines": """
        statement_sha256 {text} PRIMARY KEY, id {text} NOT NULL, kind {text}, name {text},
        started {text}, finished {text}, path {text} NOT NULL, signed INTEGER,
        verification {text}""",
    "stages": """
        statement_sha256 {text} NOT NULL, position INTEGER, stage {text} NOT NULL, decision {text},
        run_id {text}, run_statement {text}, PRIMARY KEY (statement_sha256, stage)""",
}
# The tables schema 4 had, as it had them: what the 3 -> 4 copy makes.
_V4_COLUMNS = {
    **{t: c for t, c in TABLE_COLUMNS.items() if t not in ("pipelines", "stages")},
    "runs": _RUNS_V4,
}
INDEXES = """
CREATE INDEX IF NOT EXISTS runs_by_run_id ON runs (run_id);
CREATE INDEX IF NOT EXISTS runs_by_started ON runs (started);
CREATE INDEX IF NOT EXISTS runs_by_stage_key ON runs (stage_key) WHERE stage_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_by_path ON runs (path);
CREATE INDEX IF NOT EXISTS runs_by_ledger ON runs (started {newest}, run_id DESC, statement_sha256);
CREATE INDEX IF NOT EXISTS stages_by_run ON stages (run_statement);
CREATE INDEX IF NOT EXISTS runs_by_seed_key ON runs (seed_key) WHERE seed_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_by_original ON runs (original_statement)
    WHERE original_statement IS NOT NULL;
CREATE INDEX IF NOT EXISTS inputs_by_digest ON inputs (digest);
CREATE INDEX IF NOT EXISTS outputs_by_digest ON outputs (digest);
CREATE INDEX IF NOT EXISTS metrics_by_key ON metrics (key, value);
CREATE INDEX IF NOT EXISTS supersedes_by_old ON supersedes (old_statement);
CREATE INDEX IF NOT EXISTS params_by_key ON params (key, num);
CREATE INDEX IF NOT EXISTS params_by_value ON params (key, value);
"""
# Tags, notes and the archive mark (schema 6): a team's bookkeeping, not read from records,
# so not in TABLES: `catalog index --rebuild` clears those and keeps these.
ANNOTATIONS = """
CREATE TABLE IF NOT EXISTS annotations (
    statement_sha256 {text} NOT NULL, run_id {text} NOT NULL, kind {text} NOT NULL,
    value {text} NOT NULL, author {text}, at {text},
    PRIMARY KEY (statement_sha256, kind, value));
CREATE INDEX IF NOT EXISTS annotations_by_value ON annotations (kind, value);
"""
SCHEMA = (
    "".join(f"CREATE TABLE IF NOT EXISTS {t} ({c});\n" for t, c in TABLE_COLUMNS.items())
    + INDEXES
    + ANNOTATIONS
)
# What an older catalog's tables need to read as the next version. 1 and 2 add columns;
# 3 → 4 re-keys every table by the Statement's sha256 (a copy into new tables: a primary
# key cannot be altered in place). The copy keeps every row; values only a record gives
# (an input's upstream Statement, an approval's verification) stay empty until
# `catalog index --rebuild` reads the records again.
_V3_COPY = {
    "runs": "SELECT statement_sha256, run_id, name, kind, status, exit_code, started, finished,"
    " seed, image, code_commit, code_tree, invoker, engine, signed, verification, replay_of,"
    " derived_from, NULL, path, partial, signer_kind, signer, stage_key, purpose, verdict"
    " FROM runs",
    "inputs": "SELECT r.statement_sha256, t.run_id, t.name, t.digest, t.role, t.from_run, NULL"
    " FROM inputs t JOIN runs r ON r.run_id = t.run_id",
    "outputs": "SELECT r.statement_sha256, t.run_id, t.name, t.digest, t.role"
    " FROM outputs t JOIN runs r ON r.run_id = t.run_id",
    "params": "SELECT r.statement_sha256, t.run_id, t.key, t.value, t.num, t.overridden"
    " FROM params t JOIN runs r ON r.run_id = t.run_id",
    "metrics": "SELECT r.statement_sha256, t.run_id, t.file, t.key, t.value, t.file_digest"
    " FROM metrics t JOIN runs r ON r.run_id = t.run_id",
    "supersedes": "SELECT r.statement_sha256, t.run_id, o.statement_sha256, t.old_run,"
    " t.regeneration FROM supersedes t JOIN runs r ON r.run_id = t.run_id"
    " JOIN runs o ON o.run_id = t.old_run",
    "corrections": "SELECT r.statement_sha256, t.run_id, t.old_digest, t.new_digest"
    " FROM corrections t JOIN runs r ON r.run_id = t.run_id",
    "approvals": "SELECT r.statement_sha256, t.run_id, t.file, t.approver_kind, t.approver,"
    " t.result, t.verified_at, t.policy, NULL FROM approvals t JOIN runs r ON r.run_id = t.run_id",
}
_V3_TABLES = {
    "outputs": "run_id {text} NOT NULL, name {text} NOT NULL, digest {text} NOT NULL,"
    " role {text} NOT NULL, PRIMARY KEY (run_id, name)",
    "params": "run_id {text} NOT NULL, key {text} NOT NULL, value {text},"
    " num DOUBLE PRECISION, overridden INTEGER, PRIMARY KEY (run_id, key)",
    "metrics": "run_id {text} NOT NULL, file {text} NOT NULL, key {text} NOT NULL,"
    " value DOUBLE PRECISION, file_digest {text}, PRIMARY KEY (run_id, file, key)",
    "supersedes": "run_id {text} NOT NULL, old_run {text} NOT NULL, regeneration {text},"
    " PRIMARY KEY (run_id, old_run)",
    "corrections": "run_id {text} NOT NULL, old_digest {text} NOT NULL,"
    " new_digest {text} NOT NULL, PRIMARY KEY (run_id, old_digest)",
    "approvals": "run_id {text} NOT NULL, file {text} NOT NULL, approver_kind {text},"
    " approver {text}, result {text}, verified_at {text}, policy {text},"
    " PRIMARY KEY (run_id, file)",
}
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "ALTER TABLE runs ADD COLUMN signer_kind {text}",
        "ALTER TABLE runs ADD COLUMN signer {text}",
    ),
    2: (
        "ALTER TABLE runs ADD COLUMN stage_key {text}",
        "ALTER TABLE runs ADD COLUMN purpose {text}",
        "ALTER TABLE runs ADD COLUMN verdict {text}",
        "ALTER TABLE inputs ADD COLUMN from_run {text}",
    ),
    3: (
        # tables a schema 1 or 2 catalog may not have yet, as schema 3 had them
        *(f"CREATE TABLE IF NOT EXISTS {t} ({c})" for t, c in _V3_TABLES.items()),
        *(f"CREATE TABLE {t}_v4 ({c})" for t, c in _V4_COLUMNS.items()),
        *(f"INSERT INTO {t}_v4 {sql}" for t, sql in _V3_COPY.items()),
        *(f"DROP TABLE {t}" for t in _V4_COLUMNS),
        *(f"ALTER TABLE {t}_v4 RENAME TO {t}" for t in _V4_COLUMNS),
    ),
    # 4 → 5: the index for string params (made with the schema's own statements); the
    # indexes of columns most runs leave empty made partial (over the NULLs, SQLite's
    # statistics rated them useless and it scanned every run: 0.25 s a run page at
    # 100,000); record paths absolute (Catalog._absolute_paths: not SQL, it reads files)
    4: ("DROP INDEX IF EXISTS runs_by_stage_key", "DROP INDEX IF EXISTS runs_by_original"),
    # 5 → 6: the seed key; older rows have none until `catalog index --rebuild` reads them
    5: ("ALTER TABLE runs ADD COLUMN seed_key {text}",),
}
TABLES = tuple(TABLE_COLUMNS)
