import Foundation
import Logging
import PostgresNIO
import Synchronization

/// Job records and events in PostgreSQL, shared by every daemon configured with the same
/// database (`job_store: postgres`).
///
/// - Schema: tables `curec_job` and `curec_job_event`, created and changed by numbered
///   migrations (``PostgresJobSchema``); `curec_schema_version` lists those applied.
/// - Claims: `FOR UPDATE SKIP LOCKED`, so daemons racing for the queue each take a different
///   job. Leases are counted on the database's clock, so daemons' clocks need not agree.
/// - Announcements: each event is announced with `NOTIFY curec_job_events` in the
///   transaction that stores it (delivered at commit, in commit order); every store listens
///   on its own connection, reads the event and hands it to its handler. When that
///   connection is lost the store reconnects and announces ``JobStoreChange/resynchronize``.
///
/// Calls block the calling thread until the database answers (like the SQLite store); they
/// must not be made on a SwiftNIO event loop.
public final class PostgresJobStore: JobStore {
    static let channel = "curec_job_events"

    private let connections: PostgresConnections
    private let logger: Logger
    private let relay: JobChangeRelay
    private let listener: PostgresEventListener

    public var sharedByDaemons: Bool { true }

    /// Connects, applies missing migrations and starts listening. Throws
    /// ``JobError/storeUnavailable(_:)`` when the database cannot be reached.
    public init(settings: PostgresJobStoreSettings, logger: Logger) throws(JobError) {
        let connections = PostgresConnections(settings: settings, logger: logger)
        let relay = JobChangeRelay()
        do {
            try connections.withConnection { connection throws(JobError) in
                try PostgresJobSchema.migrate(connection, logger: logger)
            }
            listener = try PostgresEventListener(connections: connections, channel: Self.channel, logger: logger) { payload in
                guard let seq = Int64(payload) else { return }
                do {
                    if let event = try PostgresJobStore.event(seq: seq, connections: connections, logger: logger) {
                        relay.announce(.event(event))
                    }
                } catch {
                    // The event is stored; listeners catch up when the store resynchronizes.
                    logger.warning("a job event could not be read", metadata: ["seq": "\(seq)", "error": "\(error)"])
                    relay.announce(.resynchronize)
                }
            } resynchronize: {
                relay.announce(.resynchronize)
            }
        } catch {
            connections.close()
            throw error
        }
        self.logger = logger
        self.connections = connections
        self.relay = relay
    }

    deinit { close() }

    public func onChange(_ handler: @escaping @Sendable (JobStoreChange) -> Void) {
        relay.set(handler)
    }

    public func close() {
        listener.stop()
        connections.close()
    }

    // MARK: Rows

    private static func encode<T: Encodable>(_ value: T) -> String {
        (try? String(decoding: JSONEncoder().encode(value), as: UTF8.self)) ?? "{}"
    }

    private static func decode<T: Decodable>(_ type: T.Type, _ text: String, default value: T) -> T {
        (try? JSONDecoder().decode(T.self, from: Data(text.utf8))) ?? value
    }

    static func record(_ row: PostgresRow) throws -> JobRecord {
        let row = row.makeRandomAccess()
        var record = JobRecord(
            id: try row["id"].decode(String.self), kind: try row["kind"].decode(String.self),
            parameters: decode([String: String].self, try row["parameters"].decode(String.self), default: [:]),
            state: JobState(rawValue: try row["state"].decode(String.self)) ?? .failed,
            createdMS: try row["created_ms"].decode(Int64.self))
        record.stage = try row["stage"].decode(String.self)
        record.step = UInt64(max(0, try row["step"].decode(Int64.self)))
        record.total = UInt64(max(0, try row["total"].decode(Int64.self)))
        record.metrics = decode([String: Double].self, try row["metrics"].decode(String.self), default: [:])
        record.error = try row["error"].decode(String.self)
        record.startedMS = try row["started_ms"].decode(Int64.self)
        record.finishedMS = try row["finished_ms"].decode(Int64.self)
        record.attempts = Int(try row["attempts"].decode(Int64.self))
        record.artifact = try row["artifact"].decode(String.self)
        record.cancelRequested = try row["cancel_requested"].decode(Bool.self)
        record.crashes = Int(try row["crashes"].decode(Int64.self))
        return record
    }

    static func event(_ row: PostgresRow) throws -> JobEvent {
        let row = row.makeRandomAccess()
        let jobID = try row["job_id"].decode(String.self)
        var event = JobEvent(record: JobRecord(id: jobID, kind: "", parameters: [:], state: .queued, createdMS: 0))
        event.state = JobState(rawValue: try row["state"].decode(String.self)) ?? .failed
        event.stage = try row["stage"].decode(String.self)
        event.step = UInt64(max(0, try row["step"].decode(Int64.self)))
        event.total = UInt64(max(0, try row["total"].decode(Int64.self)))
        event.metrics = decode([String: Double].self, try row["metrics"].decode(String.self), default: [:])
        event.logLine = try row["log_line"].decode(String.self)
        event.timeMS = try row["time_ms"].decode(Int64.self)
        event.error = try row["error"].decode(String.self)
        event.cancelRequested = try row["cancel_requested"].decode(Bool.self)
        return event
    }

    private static func upsert(_ record: JobRecord, on connection: PostgresConnection, logger: Logger) throws {
        let parameters = encode(record.parameters)
        let metrics = encode(record.metrics)
        let step = Int64(clamping: record.step)
        let total = Int64(clamping: record.total)
        let attempts = Int64(record.attempts)
        let crashes = Int64(record.crashes)
        _ = try connection.query("""
            INSERT INTO curec_job (id, kind, parameters, state, stage, step, total, metrics, error,
                created_ms, started_ms, finished_ms, attempts, artifact, cancel_requested, crashes)
            VALUES (\(record.id), \(record.kind), \(parameters), \(record.state.rawValue), \(record.stage), \(step),
                \(total), \(metrics), \(record.error), \(record.createdMS), \(record.startedMS), \(record.finishedMS),
                \(attempts), \(record.artifact), \(record.cancelRequested), \(crashes))
            ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, parameters = excluded.parameters,
                state = excluded.state, stage = excluded.stage, step = excluded.step, total = excluded.total,
                metrics = excluded.metrics, error = excluded.error, created_ms = excluded.created_ms,
                started_ms = excluded.started_ms, finished_ms = excluded.finished_ms, attempts = excluded.attempts,
                artifact = excluded.artifact,
                cancel_requested = curec_job.cancel_requested OR excluded.cancel_requested,
                crashes = excluded.crashes
            """, logger: logger).wait()
    }

    /// Appends `event` and announces it at commit (the payload is the event's number).
    private static func insert(_ event: JobEvent, on connection: PostgresConnection, logger: Logger) throws {
        let step = Int64(clamping: event.step)
        let total = Int64(clamping: event.total)
        let metrics = encode(event.metrics)
        _ = try connection.query("""
            WITH added AS (
                INSERT INTO curec_job_event (job_id, time_ms, state, stage, step, total, metrics, log_line, error,
                    cancel_requested)
                VALUES (\(event.jobID), \(event.timeMS), \(event.state.rawValue), \(event.stage), \(step), \(total),
                    \(metrics), \(event.logLine), \(event.error), \(event.cancelRequested))
                RETURNING seq)
            SELECT pg_notify(\(channel), seq::text) FROM added
            """, logger: logger).wait()
    }

    private func fetchRecord(_ id: String, on connection: PostgresConnection) throws -> JobRecord? {
        let result = try connection.query("SELECT * FROM curec_job WHERE id = \(id)", logger: logger).wait()
        return try result.first.map(Self.record)
    }

    // MARK: JobStore

    public func save(_ record: JobRecord) throws(JobError) {
        try connections.withConnection { connection throws(JobError) in
            try PostgresConnections.translating { try Self.upsert(record, on: connection, logger: logger) }
        }
    }

    public func save(_ record: JobRecord, event: JobEvent) throws(JobError) {
        try connections.transaction { connection in
            try Self.upsert(record, on: connection, logger: logger)
            try Self.insert(event, on: connection, logger: logger)
        }
    }

    public func save(_ record: JobRecord, event: JobEvent, heldBy owner: String) throws(JobError) -> Bool {
        try connections.transaction { connection -> Bool in
            let current = try connection.query("SELECT owner FROM curec_job WHERE id = \(record.id) FOR UPDATE",
                                               logger: logger).wait()
            guard try current.first?.decode(String.self) == owner else { return false }
            try Self.upsert(record, on: connection, logger: logger)
            try Self.insert(event, on: connection, logger: logger)
            return true
        }
    }

    public func saveIfFirstOfKind(_ record: JobRecord, event: JobEvent) throws(JobError) -> Bool {
        try connections.transaction { connection -> Bool in
            // Daemons submitting the same kind at once wait here until the first one commits.
            let lockKey = "curec_job_kind/" + record.kind
            _ = try connection.query("SELECT pg_advisory_xact_lock(hashtext(\(lockKey)))", logger: logger).wait()
            let existing = try connection.query("SELECT 1 FROM curec_job WHERE kind = \(record.kind) LIMIT 1",
                                                logger: logger).wait()
            guard existing.first == nil else { return false }
            try Self.upsert(record, on: connection, logger: logger)
            try Self.insert(event, on: connection, logger: logger)
            return true
        }
    }

    public func markCancelRequested(_ id: String, logLine: String) throws(JobError) -> JobRecord? {
        try connections.transaction { connection -> JobRecord? in
            let result = try connection.query("""
                UPDATE curec_job SET cancel_requested = true
                WHERE id = \(id) AND state NOT IN ('succeeded', 'failed', 'cancelled') RETURNING *
                """, logger: logger).wait()
            guard let record = try result.first.map(Self.record) else { return nil }
            try Self.insert(JobEvent(record: record, logLine: logLine), on: connection, logger: logger)
            return record
        }
    }

    public func cancelIfQueued(_ id: String, logLine: String) throws(JobError) -> JobRecord? {
        try connections.transaction { connection -> JobRecord? in
            let result = try connection.query("""
                UPDATE curec_job SET state = 'cancelled', finished_ms = \(Clock.nowMS())
                WHERE id = \(id) AND state = 'queued' RETURNING *
                """, logger: logger).wait()
            guard let record = try result.first.map(Self.record) else { return nil }
            try Self.insert(JobEvent(record: record, logLine: logLine), on: connection, logger: logger)
            return record
        }
    }

    public func fetch(_ id: String) throws(JobError) -> JobRecord? {
        try connections.withConnection { connection throws(JobError) in
            try PostgresConnections.translating { try fetchRecord(id, on: connection) }
        }
    }

    public func countsByKindAndState() throws(JobError) -> [JobKindAndState: Int] {
        try connections.withConnection { connection throws(JobError) in
            try PostgresConnections.translating {
                let result = try connection.query("SELECT kind, state, COUNT(*) AS n FROM curec_job GROUP BY kind, state",
                                                  logger: logger).wait()
                var counts: [JobKindAndState: Int] = [:]
                for row in result {
                    let (kind, state, count) = try row.decode((String, String, Int64).self)
                    counts[JobKindAndState(kind: kind, state: state)] = Int(count)
                }
                return counts
            }
        }
    }

    public func queuedCount() throws(JobError) -> Int {
        try connections.withConnection { connection throws(JobError) in
            try PostgresConnections.translating {
                let result = try connection.query("SELECT COUNT(*) FROM curec_job WHERE state = 'queued'", logger: logger).wait()
                return Int(try result.first?.decode(Int64.self) ?? 0)
            }
        }
    }

    public func list(state: JobState?, kind: String?, limit: Int, after: JobListPosition?) throws(JobError) -> [JobRecord] {
        var conditions: [String] = []
        var binds = PostgresBindings()
        if let state {
            binds.append(state.rawValue)
            conditions.append("state = $\(binds.count)")
        }
        if let kind, !kind.isEmpty {
            binds.append(kind)
            conditions.append("kind = $\(binds.count)")
        }
        if let after {
            binds.append(after.createdMS)
            binds.append(after.id)
            conditions.append("(created_ms < $\(binds.count - 1) OR (created_ms = $\(binds.count - 1) AND id < $\(binds.count)))")
        }
        let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        let query = PostgresQuery(
            unsafeSQL: "SELECT * FROM curec_job \(filter) ORDER BY created_ms DESC, id DESC LIMIT \(max(1, limit))",
            binds: binds)
        return try connections.withConnection { connection throws(JobError) in
            try PostgresConnections.translating {
                try connection.query(query, logger: logger).wait().map(Self.record)
            }
        }
    }

    public func purge(finishedBeforeMS: Int64) throws(JobError) -> [String] {
        try connections.transaction { connection in
            let result = try connection.query("""
                DELETE FROM curec_job WHERE state IN ('succeeded', 'failed', 'cancelled') AND finished_ms < \(finishedBeforeMS)
                RETURNING id
                """, logger: logger).wait()
            let ids = try result.map { try $0.decode(String.self) }
            if !ids.isEmpty {
                _ = try connection.query("DELETE FROM curec_job_event WHERE job_id = ANY(\(ids))", logger: logger).wait()
            }
            return ids
        }
    }

    public func logLines(of id: String) throws(JobError) -> [String] {
        try connections.withConnection { connection throws(JobError) in
            try PostgresConnections.translating {
                try connection.query("""
                    SELECT log_line FROM curec_job_event WHERE job_id = \(id) AND log_line != '' ORDER BY seq
                    """, logger: logger).wait().map { try $0.decode(String.self) }
            }
        }
    }

    /// The database's clock, in milliseconds since 1970 (SQL).
    private static let databaseNowMS = "(extract(epoch from clock_timestamp()) * 1000)::bigint"

    public func claimNext(owner: String, leaseMS: Int64) throws(JobError) -> JobRecord? {
        try connections.withConnection { connection throws(JobError) in
            try PostgresConnections.translating {
                let result = try connection.query(PostgresQuery(unsafeSQL: """
                    UPDATE curec_job SET state = 'running', owner = $1, lease_until_ms = \(Self.databaseNowMS) + $2
                    WHERE id = (SELECT id FROM curec_job WHERE state = 'queued' ORDER BY created_ms, submitted
                                LIMIT 1 FOR UPDATE SKIP LOCKED)
                    RETURNING *
                    """, binds: Self.binds(owner, leaseMS)), logger: logger).wait()
                return try result.first.map(Self.record)
            }
        }
    }

    public func renewLeases(owner: String, leaseMS: Int64) throws(JobError) -> Set<String> {
        try connections.withConnection { connection throws(JobError) in
            try PostgresConnections.translating {
                let result = try connection.query(PostgresQuery(unsafeSQL: """
                    UPDATE curec_job SET lease_until_ms = \(Self.databaseNowMS) + $2
                    WHERE state = 'running' AND owner = $1 RETURNING id
                    """, binds: Self.binds(owner, leaseMS)), logger: logger).wait()
                return Set(try result.map { try $0.decode(String.self) })
            }
        }
    }

    public func reclaimExpired(everyRunningJob: Bool, crashLimit: Int) throws(JobError) -> [JobRecord] {
        try connections.transaction { connection in
            let condition = everyRunningJob ? "" : "AND lease_until_ms < \(Self.databaseNowMS)"
            let expired = try connection.query(PostgresQuery(unsafeSQL: """
                SELECT * FROM curec_job WHERE state = 'running' \(condition)
                ORDER BY created_ms, id FOR UPDATE SKIP LOCKED
                """), logger: logger).wait().map(Self.record)
            var reclaimed: [JobRecord] = []
            for record in expired {
                let outcome = JobReclaim.apply(to: record, crashLimit: crashLimit, nowMS: Clock.nowMS())
                try Self.upsert(outcome.record, on: connection, logger: logger)
                _ = try connection.query("UPDATE curec_job SET owner = '', lease_until_ms = 0 WHERE id = \(record.id)",
                                         logger: logger).wait()
                try Self.insert(JobEvent(record: outcome.record, logLine: outcome.logLine), on: connection, logger: logger)
                reclaimed.append(outcome.record)
            }
            return reclaimed
        }
    }

    private static func binds(_ owner: String, _ leaseMS: Int64) -> PostgresBindings {
        var binds = PostgresBindings()
        binds.append(owner)
        binds.append(leaseMS)
        return binds
    }

    /// The stored event number `seq` (announced by a NOTIFY), if it still exists.
    static func event(seq: Int64, connections: PostgresConnections, logger: Logger) throws(JobError) -> JobEvent? {
        try connections.withConnection { connection throws(JobError) in
            try PostgresConnections.translating {
                try connection.query("SELECT * FROM curec_job_event WHERE seq = \(seq)", logger: logger).wait()
                    .first.map(Self.event)
            }
        }
    }
}

/// Open connections to the store's database, reused one caller at a time.
final class PostgresConnections: Sendable {
    let settings: PostgresJobStoreSettings
    private let logger: Logger
    private let idle = Mutex<(connections: [PostgresConnection], closed: Bool)>(([], false))
    private let nextID = Atomic<Int>(1)
    /// Connections kept open while no one uses them.
    private static let idleLimit = 4

    init(settings: PostgresJobStoreSettings, logger: Logger) {
        self.settings = settings
        self.logger = logger
    }

    /// A new connection (not from the pool); throws ``JobError/storeUnavailable(_:)``.
    func connect() throws(JobError) -> PostgresConnection {
        var configuration = PostgresConnection.Configuration(
            host: settings.host, port: settings.port, username: settings.username,
            password: settings.password, database: settings.database, tls: .disable)
        configuration.options.connectTimeout = .seconds(settings.connectTimeout.components.seconds)
        do {
            return try PostgresConnection.connect(
                on: PostgresConnection.defaultEventLoopGroup.any(), configuration: configuration,
                id: nextID.add(1, ordering: .relaxed).oldValue, logger: logger
            ).wait()
        } catch {
            throw .storeUnavailable("cannot connect to \(settings.redacted): \(Self.describe(error))")
        }
    }

    /// Runs `body` with a connection from the pool (or a new one); a connection that closed
    /// meanwhile is dropped, not returned to the pool.
    func withConnection<T>(_ body: (PostgresConnection) throws(JobError) -> T) throws(JobError) -> T {
        let reused = idle.withLock { state -> PostgresConnection? in
            while let connection = state.connections.popLast() {
                if !connection.isClosed { return connection }
            }
            return nil
        }
        if idle.withLock({ $0.closed }) { throw .storage("the job store is closed") }
        let connection: PostgresConnection
        if let reused {
            connection = reused
        } else {
            connection = try connect()
        }
        defer {
            let kept = idle.withLock { state -> Bool in
                guard !state.closed, !connection.isClosed, state.connections.count < Self.idleLimit else { return false }
                state.connections.append(connection)
                return true
            }
            if !kept { _ = try? connection.close().wait() }
        }
        return try body(connection)
    }

    /// Runs `body` in a transaction (BEGIN … COMMIT; ROLLBACK when it throws).
    func transaction<T>(_ body: (PostgresConnection) throws -> T) throws(JobError) -> T {
        try withConnection { connection throws(JobError) in
            try Self.translating {
                _ = try connection.query("BEGIN", logger: logger).wait()
                do {
                    let value = try body(connection)
                    _ = try connection.query("COMMIT", logger: logger).wait()
                    return value
                } catch {
                    _ = try? connection.query("ROLLBACK", logger: logger).wait()
                    throw error
                }
            }
        }
    }

    func close() {
        let open = idle.withLock { state -> [PostgresConnection] in
            state.closed = true
            defer { state.connections = [] }
            return state.connections
        }
        for connection in open { _ = try? connection.close().wait() }
    }

    /// Runs `body`, turning what it throws into ``JobError/storage(_:)``.
    static func translating<T>(_ body: () throws -> T) throws(JobError) -> T {
        do {
            return try body()
        } catch let error as JobError {
            throw error
        } catch let error as PSQLError where [.connectionError, .serverClosedConnection, .clientClosedConnection,
                                                    .uncleanShutdown].contains(error.code) {
            throw .storeUnavailable(describe(error))
        } catch {
            throw .storage(describe(error))
        }
    }

    /// A short description of a database or connection error: the server's message, or
    /// what went wrong with the connection (never a password).
    static func describe(_ error: any Error) -> String {
        guard let error = error as? PSQLError else { return String("\(error)".prefix(300)) }
        if let message = error.serverInfo?[.message] {
            let state = error.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
            return String((message + state).prefix(300))
        }
        if let underlying = error.underlying { return String("\(error.code): \(underlying)".prefix(300)) }
        return "\(error.code)"
    }
}
