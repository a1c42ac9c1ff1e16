"""
The catalog's schema in PostgreSQL, and its migrations.

Each L{Migration} takes the schema from the version before it to its own;
L{migrate} applies those a database lacks, in one transaction (PostgreSQL's
DDL is transactional: a failed migration leaves the schema as it was),
under an advisory lock so that replicas starting together migrate once.
The version lives in C{pypid_catalog.schema_version}; a database without
that table is empty (version 0).

A replica refuses a schema newer than it knows (L{SchemaTooNew}): newer
pypids may have changed what rows mean. An older schema is migrated by
C{pypid catalog migrate} (or at start when asked); an empty database is
created at start.

Everything here is blocking DB-API code on a psycopg2 cursor: it runs in
the catalog's threads (L{pypid.store.objectstore.catalog.Catalog}).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence


class Migration(NamedTuple):
    """The statements that take the schema to C{version}."""

    version: int
    description: str
    statements: tuple[str, ...]


#: Held (transaction-scoped) while migrating: pg_advisory_xact_lock's key.
LOCK_KEY = 0x7079_7069_6401  # "pypid" 1

_V1 = (
    # The schema version and the serial: the index's change number, bumped
    # once per change, in commit order (writers take this row's lock first,
    # so serials are committed in the order they are handed out).
    """
    CREATE TABLE pypid_catalog (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        schema_version integer NOT NULL,
        last_serial bigint NOT NULL DEFAULT 0 CHECK (last_serial >= 0)
    )
    """,
    "INSERT INTO pypid_catalog (schema_version, last_serial) VALUES (1, 0)",
    # One row per listed file.
    """
    CREATE TABLE pypid_files (
        id bigserial PRIMARY KEY,
        project text NOT NULL CHECK (project ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$'),
        project_name text NOT NULL,
        version text NOT NULL,
        filename text NOT NULL CHECK (filename <> '' AND strpos(filename, '/') = 0),
        release_key text NOT NULL,
        object_key text NOT NULL,
        size bigint NOT NULL CHECK (size >= 0),
        sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
        md5 text CHECK (md5 ~ '^[0-9a-f]{32}$'),
        uploaded_at timestamptz NOT NULL,
        uploader text,
        requires_python text,
        summary text,
        core_metadata bytea,
        core_metadata_sha256 text CHECK (core_metadata_sha256 ~ '^[0-9a-f]{64}$'),
        has_signature boolean NOT NULL DEFAULT false,
        signature_size bigint CHECK (signature_size >= 0),
        yanked boolean NOT NULL DEFAULT false,
        yanked_reason text,
        serial bigint NOT NULL
    )
    """,
    # The arbiters when two replicas publish at once: one filename, whatever
    # its case; one release file (normalised project and version, wheel tags
    # and build, or the archive kind of an sdist).
    "CREATE UNIQUE INDEX pypid_files_filename ON pypid_files (lower(filename))",
    "CREATE UNIQUE INDEX pypid_files_release ON pypid_files (release_key)",
    "CREATE INDEX pypid_files_project ON pypid_files (project)",
    # What changed, one row per serial: how replicas catch up.
    """
    CREATE TABLE pypid_changes (
        serial bigint PRIMARY KEY,
        at timestamptz NOT NULL,
        action text NOT NULL,
        project text NOT NULL,
        version text NOT NULL,
        filename text NOT NULL,
        file_id bigint,
        actor text
    )
    """,
    "CREATE INDEX pypid_changes_project ON pypid_changes (project, serial)",
    # First uploaders, for ACLs with unlisted-projects = first-uploader:
    # claimed in the transaction that publishes a project's first file.
    """
    CREATE TABLE pypid_owners (
        project text PRIMARY KEY,
        owner text NOT NULL,
        since timestamptz NOT NULL
    )
    """,
)

_V2 = (
    # What the change log (XML-RPC changelog_since_serial) says of each
    # change, the same on every replica: the project's display name, a
    # yank's reason, and whether a removal took the project's last file
    # (the log's "remove project"). Yanks themselves live in the file rows
    # (pypid_files.yanked, yanked_reason, there since version 1), their
    # changes here as actions 'yank' and 'unyank'. Older rows keep NULL
    # names (the project key stands in) and no "remove project".
    "ALTER TABLE pypid_changes ADD COLUMN name text",
    "ALTER TABLE pypid_changes ADD COLUMN reason text",
    "ALTER TABLE pypid_changes ADD COLUMN project_removed boolean NOT NULL DEFAULT false",
)

#: Every migration, oldest first; the last one's version is what this pypid knows.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "files, changes, owners and the serial", _V1),
    Migration(2, "the change log's names, yank reasons and project removals", _V2),
)
LATEST = MIGRATIONS[-1].version


class SchemaError(Exception):
    """The catalog's schema cannot be used as it is; C{str()} is one line saying what to do."""


class SchemaTooNew(SchemaError):
    def __init__(self, found: int, known: int) -> None:
        super().__init__(
            f"the catalog's schema is version {found}, newer than this pypid knows (up to {known}): "
            "upgrade pypid, or point --catalog at another database"
        )
        self.found = found
        self.known = known


class SchemaTooOld(SchemaError):
    def __init__(self, found: int, known: int) -> None:
        super().__init__(
            f"the catalog's schema is version {found}; this pypid needs version {known}: "
            "run 'pypid catalog migrate' once the other replicas run this version"
        )
        self.found = found
        self.known = known


def schema_version(cursor: Any) -> int:
    """The database's schema version; 0 when it has no catalog yet."""
    # A query of pg_tables, not to_regclass(): after waiting for the
    # advisory lock, the statement's snapshot sees a table another replica
    # just created, where the name lookup's cache may not yet.
    cursor.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables "
        "WHERE schemaname = current_schema() AND tablename = 'pypid_catalog')"
    )
    if not cursor.fetchone()[0]:
        return 0
    cursor.execute("SELECT schema_version FROM pypid_catalog")
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def migrate(cursor: Any, migrations: Sequence[Migration] = MIGRATIONS) -> tuple[int, int]:
    """
    Bring the schema to the last of C{migrations}, in the caller's
    transaction (commit it to keep the result). Returns the versions
    before and after; raises L{SchemaTooNew} for a schema past them.
    """
    latest = migrations[-1].version
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
    found = schema_version(cursor)
    if found > latest:
        raise SchemaTooNew(found, latest)
    for migration in migrations:
        if migration.version <= found:
            continue
        for statement in migration.statements:
            cursor.execute(statement)
        cursor.execute("UPDATE pypid_catalog SET schema_version = %s", (migration.version,))
    return found, latest


def check(cursor: Any, create: bool = True, upgrade: bool = False,
          migrations: Sequence[Migration] = MIGRATIONS) -> tuple[int, int]:
    """
    What a replica does at start: create the schema in an empty database
    (C{create}), migrate an older one only when told (C{upgrade}), refuse a
    newer one. Returns the versions before and after.
    """
    latest = migrations[-1].version
    found = schema_version(cursor)
    if found > latest:
        raise SchemaTooNew(found, latest)
    if found == latest:
        return found, found
    if (found == 0 and create) or upgrade:
        return migrate(cursor, migrations)
    raise SchemaTooOld(found, latest)
