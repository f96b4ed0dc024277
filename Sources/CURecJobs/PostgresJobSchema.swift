import Logging
import PostgresNIO

/// The PostgreSQL job store's schema (jobs, their events, the model registry): numbered migrations, applied in order, each once.
///
/// `curec_schema_version` holds one row per applied migration. Daemons starting together
/// serialize on a transaction-scoped advisory lock, so each migration runs exactly once;
/// a daemon finding a version newer than it knows refuses to start (an older build must not
/// write a schema it does not understand).
enum PostgresJobSchema {
    struct Migration {
        let version: Int
        let name: String
        let statements: [String]
    }

    /// Key of the advisory lock held while migrating (any fixed number unique to this schema).
    static let lockKey: Int64 = 0x4355_5265_634a_6f62  // "CURecJob"

    static let migrations: [Migration] = [
        Migration(version: 1, name: "jobs and events, claims under leases", statements: [
            """
            CREATE TABLE curec_job (
                id TEXT PRIMARY KEY,
                kind TEXT NOT NULL,
                parameters TEXT NOT NULL,
                state TEXT NOT NULL,
                stage TEXT NOT NULL DEFAULT '',
                step BIGINT NOT NULL DEFAULT 0,
                total BIGINT NOT NULL DEFAULT 0,
                metrics TEXT NOT NULL DEFAULT '{}',
                error TEXT NOT NULL DEFAULT '',
                created_ms BIGINT NOT NULL,
                started_ms BIGINT NOT NULL DEFAULT 0,
                finished_ms BIGINT NOT NULL DEFAULT 0,
                attempts BIGINT NOT NULL DEFAULT 0,
                artifact TEXT NOT NULL DEFAULT '',
                cancel_requested BOOLEAN NOT NULL DEFAULT false,
                crashes BIGINT NOT NULL DEFAULT 0,
                owner TEXT NOT NULL DEFAULT '',
                lease_until_ms BIGINT NOT NULL DEFAULT 0,
                submitted BIGSERIAL
            )
            """,
            "CREATE INDEX curec_job_queue ON curec_job (state, created_ms, submitted)",
            "CREATE INDEX curec_job_created ON curec_job (created_ms, id)",
            """
            CREATE TABLE curec_job_event (
                seq BIGSERIAL PRIMARY KEY,
                job_id TEXT NOT NULL,
                time_ms BIGINT NOT NULL,
                state TEXT NOT NULL,
                stage TEXT NOT NULL,
                step BIGINT NOT NULL,
                total BIGINT NOT NULL,
                metrics TEXT NOT NULL,
                log_line TEXT NOT NULL,
                error TEXT NOT NULL DEFAULT '',
                cancel_requested BOOLEAN NOT NULL DEFAULT false
            )
            """,
            "CREATE INDEX curec_job_event_job ON curec_job_event (job_id, seq)",
        ]),
        Migration(version: 2, name: "model registry", statements: [
            """
            CREATE TABLE curec_model_version (
                name TEXT NOT NULL,
                version INTEGER NOT NULL,
                kind TEXT NOT NULL,
                plugin TEXT NOT NULL DEFAULT '',
                files TEXT NOT NULL,
                manifest TEXT NOT NULL,
                serve BOOLEAN NOT NULL DEFAULT false,
                publisher TEXT NOT NULL,
                created_ms BIGINT NOT NULL,
                seq BIGSERIAL UNIQUE,
                PRIMARY KEY (name, version)
            )
            """,
        ]),
    ]

    /// Applies the migrations `connection`'s database lacks, in one transaction.
    static func migrate(_ connection: PostgresConnection, logger: Logger) throws(JobError) {
        try PostgresConnections.translating {
            _ = try connection.query("BEGIN", logger: logger).wait()
            do {
                _ = try connection.query("SELECT pg_advisory_xact_lock(\(lockKey))", logger: logger).wait()
                _ = try connection.query("""
                    CREATE TABLE IF NOT EXISTS curec_schema_version (
                        version INTEGER PRIMARY KEY,
                        name TEXT NOT NULL,
                        applied_at TIMESTAMPTZ NOT NULL DEFAULT now())
                    """, logger: logger).wait()
                let applied = Set(try connection.query("SELECT version FROM curec_schema_version", logger: logger).wait()
                    .map { Int(try $0.decode(Int32.self)) })
                let known = Set(migrations.map(\.version))
                if let unknown = applied.subtracting(known).max() {
                    throw JobError.storage(
                        "the database's job schema is at version \(unknown), newer than this daemon knows (\(known.max() ?? 0)); upgrade the daemon")
                }
                for migration in migrations where !applied.contains(migration.version) {
                    for statement in migration.statements {
                        _ = try connection.query(PostgresQuery(unsafeSQL: statement), logger: logger).wait()
                    }
                    let version = Int32(migration.version)
                    _ = try connection.query("""
                        INSERT INTO curec_schema_version (version, name) VALUES (\(version), \(migration.name))
                        """, logger: logger).wait()
                    logger.info("job store schema migrated", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
                }
                _ = try connection.query("COMMIT", logger: logger).wait()
            } catch {
                _ = try? connection.query("ROLLBACK", logger: logger).wait()
                throw error
            }
        }
    }
}
