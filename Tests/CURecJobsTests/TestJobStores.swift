import Foundation
import GRDB
import Logging
import PostgresNIO
import Testing
@testable import CURecJobs

/// The job store implementations the suites run against: SQLite always; PostgreSQL when
/// `CUREC_TEST_POSTGRES_URL` names a server (scripts/with-postgres starts one, and
/// scripts/test runs the Swift suites under it).
enum StoreBackend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, postgres

    var testDescription: String { rawValue }

    /// The PostgreSQL server of the test run, if any.
    static var postgresServer: PostgresJobStoreSettings? {
        guard let url = ProcessInfo.processInfo.environment["CUREC_TEST_POSTGRES_URL"], !url.isEmpty else { return nil }
        return try? PostgresJobStoreSettings(url: url, password: nil)
    }

    /// The backends this run can test.
    static var available: [StoreBackend] { postgresServer == nil ? [.sqlite] : [.sqlite, .postgres] }

    /// PostgreSQL only (for what needs several daemons on one store), or nothing.
    static var shared: [StoreBackend] { postgresServer == nil ? [] : [.postgres] }
}

/// One test's store: a SQLite file in a new temporary directory, or a new database in the
/// test PostgreSQL server; with the jobs (checkpoint) directory that daemons using it share.
struct TestStoreLocation: Sendable {
    let backend: StoreBackend
    let directory: String
    let postgres: PostgresJobStoreSettings?

    init(_ backend: StoreBackend) throws {
        self.backend = backend
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("curec-jobs-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        switch backend {
        case .sqlite:
            postgres = nil
        case .postgres:
            let server = try #require(StoreBackend.postgresServer)
            let name = "curec_test_\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "_"))"
            try Self.admin(server) { connection in
                _ = try connection.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: Self.logger).wait()
            }
            var settings = server
            settings.database = name
            postgres = settings
        }
    }

    static let logger = Logger(label: "test")

    var sqlitePath: String { (directory as NSString).appendingPathComponent("jobs.sqlite") }
    var jobsDirectory: String { (directory as NSString).appendingPathComponent("jobs") }

    /// A new store on this location (as another daemon would open it).
    func openStore() throws -> any JobStore {
        switch backend {
        case .sqlite: return try SQLiteJobStore(path: sqlitePath)
        case .postgres: return try PostgresJobStore(settings: try #require(postgres), logger: Self.logger)
        }
    }

    /// A new model registry on this location (as another daemon would open it).
    func openRegistry() throws -> any ModelRegistry {
        switch backend {
        case .sqlite: return try SQLiteModelRegistry(path: sqlitePath)
        case .postgres: return try PostgresModelRegistry(settings: try #require(postgres), logger: Self.logger)
        }
    }

    /// A manager (a daemon) on a new store of this location.
    func manager(steps: Int = 5, delay: Duration = .milliseconds(5), queue: Int = 8, workers: Int = 1,
                 lease: TimeInterval = 30, kind: (any JobKind)? = nil) throws -> JobManager {
        var limits = JobManager.Limits()
        limits.queueCapacity = queue
        limits.workerCount = workers
        limits.leaseDuration = lease
        return try JobManager(store: openStore(), jobsDirectory: jobsDirectory,
                              kinds: [kind ?? CountingJob(steps: steps, stepDelay: delay)], limits: limits, logger: Self.logger)
    }

    /// Makes every write of a `succeeded` job fail, as a full disk would.
    func failWritesOfSucceededJobs() throws {
        switch backend {
        case .sqlite:
            let database = try DatabaseQueue(path: sqlitePath)
            try database.write { db in
                for operation in ["INSERT", "UPDATE"] {
                    try db.execute(sql: """
                        CREATE TRIGGER full_disk_\(operation) BEFORE \(operation) ON job WHEN NEW.state = 'succeeded'
                        BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END
                        """)
                }
            }
        case .postgres:
            try onDatabase { connection in
                _ = try connection.query("""
                    CREATE FUNCTION full_disk() RETURNS trigger AS $$
                    BEGIN RAISE EXCEPTION 'database or disk is full'; END $$ LANGUAGE plpgsql
                    """, logger: Self.logger).wait()
                _ = try connection.query("""
                    CREATE TRIGGER full_disk BEFORE INSERT OR UPDATE ON curec_job
                    FOR EACH ROW WHEN (NEW.state = 'succeeded') EXECUTE FUNCTION full_disk()
                    """, logger: Self.logger).wait()
            }
        }
    }

    /// PostgreSQL: refuses new connections to this test's database and ends the open ones,
    /// as when the database server is lost (`lost == false` lets connections in again).
    func setDatabaseLost(_ lost: Bool) throws {
        let settings = try #require(postgres)
        let server = try #require(StoreBackend.postgresServer)
        try Self.admin(server) { connection in
            _ = try connection.query(PostgresQuery(
                unsafeSQL: "ALTER DATABASE \(settings.database) WITH ALLOW_CONNECTIONS \(lost ? "false" : "true")"),
                logger: Self.logger).wait()
            if lost {
                _ = try connection.query("""
                    SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = \(settings.database)
                    """, logger: Self.logger).wait()
            }
        }
    }

    /// Runs `body` on a connection to this test's database.
    func onDatabase(_ body: (PostgresConnection) throws -> Void) throws {
        try Self.admin(try #require(postgres), body)
    }

    private static func admin(_ settings: PostgresJobStoreSettings, _ body: (PostgresConnection) throws -> Void) throws {
        let connection = try PostgresConnections(settings: settings, logger: logger).connect()
        defer { _ = try? connection.close().wait() }
        try body(connection)
    }
}
