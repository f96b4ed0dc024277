import Foundation
import GRDB
import Synchronization

/// Durable job records and events in SQLite (through GRDB), in `<data_dir>/jobs.sqlite`: the
/// store of one daemon on one machine.
///
/// Every state change is written before it is announced, so a crash loses no record; the
/// database runs in WAL mode with synchronous=NORMAL. Announcements reach the handler of this
/// store only (one daemon owns the file).
public final class SQLiteJobStore: JobStore {
    private let database: DatabaseQueue
    private let changeHandler = Mutex<(@Sendable (JobStoreChange) -> Void)?>(nil)

    public var sharedByDaemons: Bool { false }

    /// Opens (creating if needed) the store at `path`.
    public init(path: String) throws(JobError) {
        database = try Self.open(path: path)
    }

    /// Opens (creating if needed) the job database at `path` and applies the migrations it
    /// lacks: the job store's and the model registry's (``SQLiteModelRegistry``), which share
    /// the file and one list of migrations, whichever opens it first.
    static func open(path: String) throws(JobError) -> DatabaseQueue {
        do {
            try FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            var configuration = Configuration()
            // Another connection to the file (a backup, a test's second store) may hold the
            // write lock briefly: wait for it rather than fail at once.
            configuration.busyMode = .timeout(5)
            configuration.prepareDatabase { db in
                try db.execute(sql: "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL")
            }
            let database = try DatabaseQueue(path: path, configuration: configuration)
            try migrator.migrate(database)
            return database
        } catch let error as JobError {
            throw error
        } catch {
            throw .storage("cannot open \(path): \(error)")
        }
    }

    /// Every migration of the job database, in order.
    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "job") { table in
                table.primaryKey("id", .text)
                table.column("kind", .text).notNull()
                table.column("parameters", .text).notNull()
                table.column("state", .text).notNull()
                table.column("stage", .text).notNull().defaults(to: "")
                table.column("step", .integer).notNull().defaults(to: 0)
                table.column("total", .integer).notNull().defaults(to: 0)
                table.column("metrics", .text).notNull().defaults(to: "{}")
                table.column("error", .text).notNull().defaults(to: "")
                table.column("created_ms", .integer).notNull()
                table.column("started_ms", .integer).notNull().defaults(to: 0)
                table.column("finished_ms", .integer).notNull().defaults(to: 0)
                table.column("attempts", .integer).notNull().defaults(to: 0)
                table.column("artifact", .text).notNull().defaults(to: "")
            }
            try db.create(index: "job_state", on: "job", columns: ["state"])
            try db.create(table: "job_event") { table in
                table.autoIncrementedPrimaryKey("seq")
                table.column("job_id", .text).notNull().indexed()
                table.column("time_ms", .integer).notNull()
                table.column("state", .text).notNull()
                table.column("stage", .text).notNull()
                table.column("step", .integer).notNull()
                table.column("total", .integer).notNull()
                table.column("metrics", .text).notNull()
                table.column("log_line", .text).notNull()
            }
        }
        migrator.registerMigration("v2: durable cancellation and crash counts") { db in
            try db.alter(table: "job") { table in
                table.add(column: "cancel_requested", .integer).notNull().defaults(to: 0)
                table.add(column: "crashes", .integer).notNull().defaults(to: 0)
            }
            try db.create(index: "job_created", on: "job", columns: ["created_ms", "id"])
        }
        migrator.registerMigration("v3: claims under leases") { db in
            try db.alter(table: "job") { table in
                table.add(column: "owner", .text).notNull().defaults(to: "")
                table.add(column: "lease_until_ms", .integer).notNull().defaults(to: 0)
            }
        }
        migrator.registerMigration("v4: model registry") { db in
            try db.create(table: "model_version") { table in
                table.column("name", .text).notNull()
                table.column("version", .integer).notNull()
                table.column("kind", .text).notNull()
                table.column("plugin", .text).notNull().defaults(to: "")
                table.column("files", .text).notNull()
                table.column("manifest", .text).notNull()
                table.column("serve", .integer).notNull().defaults(to: 0)
                table.column("publisher", .text).notNull()
                table.column("created_ms", .integer).notNull()
                table.primaryKey(["name", "version"])
            }
        }
        return migrator
    }

    private static func encode<T: Encodable>(_ value: T) -> String {
        (try? String(decoding: JSONEncoder().encode(value), as: UTF8.self)) ?? "{}"
    }

    private static func decode<T: Decodable>(_ type: T.Type, _ text: String, default value: T) -> T {
        (try? JSONDecoder().decode(T.self, from: Data(text.utf8))) ?? value
    }

    private static func record(_ row: Row) -> JobRecord {
        var record = JobRecord(
            id: row["id"], kind: row["kind"],
            parameters: decode([String: String].self, row["parameters"], default: [:]),
            state: JobState(rawValue: row["state"]) ?? .failed, createdMS: row["created_ms"])
        record.stage = row["stage"]
        record.step = UInt64(max(0, row["step"] as Int64))
        record.total = UInt64(max(0, row["total"] as Int64))
        record.metrics = decode([String: Double].self, row["metrics"], default: [:])
        record.error = row["error"]
        record.startedMS = row["started_ms"]
        record.finishedMS = row["finished_ms"]
        record.attempts = row["attempts"]
        record.artifact = row["artifact"]
        record.cancelRequested = (row["cancel_requested"] as Int64) != 0
        record.crashes = row["crashes"]
        return record
    }

    /// Inserts or updates `record`. A stored cancellation request is never cleared by a
    /// writer that read the record before it was made.
    private static func upsert(_ record: JobRecord, in db: Database) throws {
        try db.execute(sql: """
            INSERT INTO job (id, kind, parameters, state, stage, step, total, metrics, error,
                created_ms, started_ms, finished_ms, attempts, artifact, cancel_requested, crashes)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(id) DO UPDATE SET kind = excluded.kind, parameters = excluded.parameters,
                state = excluded.state, stage = excluded.stage, step = excluded.step, total = excluded.total,
                metrics = excluded.metrics, error = excluded.error, created_ms = excluded.created_ms,
                started_ms = excluded.started_ms, finished_ms = excluded.finished_ms, attempts = excluded.attempts,
                artifact = excluded.artifact, cancel_requested = max(job.cancel_requested, excluded.cancel_requested),
                crashes = excluded.crashes
            """, arguments: [
                record.id, record.kind, encode(record.parameters), record.state.rawValue, record.stage,
                Int64(record.step), Int64(record.total), encode(record.metrics), record.error,
                record.createdMS, record.startedMS, record.finishedMS, record.attempts, record.artifact,
                record.cancelRequested ? 1 : 0, record.crashes,
            ])
    }

    private static func insert(_ event: JobEvent, in db: Database) throws {
        try db.execute(sql: """
            INSERT INTO job_event (job_id, time_ms, state, stage, step, total, metrics, log_line)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [
                event.jobID, event.timeMS, event.state.rawValue, event.stage, Int64(event.step),
                Int64(event.total), encode(event.metrics), event.logLine,
            ])
    }

    private func announce(_ events: [JobEvent]) {
        guard let handler = changeHandler.withLock({ $0 }) else { return }
        for event in events { handler(.event(event)) }
    }

    public func onChange(_ handler: @escaping @Sendable (JobStoreChange) -> Void) {
        changeHandler.withLock { $0 = handler }
    }

    public func close() {}

    /// Inserts or replaces a record.
    public func save(_ record: JobRecord) throws(JobError) {
        do {
            try database.write { db in
                try Self.upsert(record, in: db)
            }
        } catch {
            throw .storage("\(error)")
        }
    }

    /// Saves `record` and appends `event` in one transaction.
    public func save(_ record: JobRecord, event: JobEvent) throws(JobError) {
        do {
            try database.write { db in
                try Self.upsert(record, in: db)
                try Self.insert(event, in: db)
            }
        } catch {
            throw .storage("\(error)")
        }
        announce([event])
    }

    public func saveIfFirstOfKind(_ record: JobRecord, event: JobEvent) throws(JobError) -> Bool {
        try save(record, event: event) { db in
            try Int.fetchOne(db, sql: "SELECT 1 FROM job WHERE kind = ? LIMIT 1", arguments: [record.kind]) == nil
        }
    }

    public func save(_ record: JobRecord, event: JobEvent, heldBy owner: String) throws(JobError) -> Bool {
        try save(record, event: event) { db in
            try String.fetchOne(db, sql: "SELECT owner FROM job WHERE id = ?", arguments: [record.id]) == owner
        }
    }

    /// ``save(_:event:)`` only when `condition`, read in the same write transaction, holds;
    /// false, with nothing written, when it does not.
    private func save(_ record: JobRecord, event: JobEvent, when condition: (Database) throws -> Bool) throws(JobError) -> Bool {
        let saved: Bool
        do {
            saved = try database.write { db -> Bool in
                guard try condition(db) else { return false }
                try Self.upsert(record, in: db)
                try Self.insert(event, in: db)
                return true
            }
        } catch {
            throw .storage("\(error)")
        }
        if saved { announce([event]) }
        return saved
    }

    /// Records that a client asked to cancel job `id`, with a log line, unless the job has
    /// already ended; one statement, so a worker finishing the job at the same moment is
    /// never overwritten. Returns the record as stored then, or nil if the job had ended.
    public func markCancelRequested(_ id: String, logLine: String) throws(JobError) -> JobRecord? {
        let finalStates = JobState.allCases.filter(\.isFinal).map(\.rawValue)
        return try updateAndRecord(id, logLine: logLine, sql: """
            UPDATE job SET cancel_requested = 1 WHERE id = ? AND state NOT IN (?, ?, ?)
            """, arguments: [id, finalStates[0], finalStates[1], finalStates[2]])
    }

    public func cancelIfQueued(_ id: String, logLine: String) throws(JobError) -> JobRecord? {
        try updateAndRecord(id, logLine: logLine, sql: """
            UPDATE job SET state = 'cancelled', finished_ms = ? WHERE id = ? AND state = 'queued'
            """, arguments: [Clock.nowMS(), id])
    }

    /// Runs `sql` (an UPDATE of job `id`); when it changed the row, stores an event with
    /// `logLine` in the same transaction, announces it, and returns the updated record.
    private func updateAndRecord(_ id: String, logLine: String, sql: String,
                                 arguments: StatementArguments) throws(JobError) -> JobRecord? {
        let updated: JobRecord?
        do {
            updated = try database.write { db -> JobRecord? in
                try db.execute(sql: sql, arguments: arguments)
                guard db.changesCount > 0,
                      let record = try Row.fetchOne(db, sql: "SELECT * FROM job WHERE id = ?", arguments: [id]).map(Self.record)
                else { return nil }
                try Self.insert(JobEvent(record: record, logLine: logLine), in: db)
                return record
            }
        } catch {
            throw .storage("\(error)")
        }
        if let updated { announce([JobEvent(record: updated, logLine: logLine)]) }
        return updated
    }

    public func queuedCount() throws(JobError) -> Int {
        do {
            return try database.read { db in
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM job WHERE state = 'queued'") ?? 0
            }
        } catch {
            throw .storage("\(error)")
        }
    }

    public func claimNext(owner: String, leaseMS: Int64) throws(JobError) -> JobRecord? {
        let leaseUntilMS = Clock.nowMS() + leaseMS
        do {
            return try database.write { db -> JobRecord? in
                guard var record = try Row.fetchOne(db, sql: """
                    SELECT * FROM job WHERE state = 'queued' ORDER BY created_ms, rowid LIMIT 1
                    """).map(Self.record)
                else { return nil }
                try db.execute(sql: """
                    UPDATE job SET state = 'running', owner = ?, lease_until_ms = ? WHERE id = ?
                    """, arguments: [owner, leaseUntilMS, record.id])
                record.state = .running
                return record
            }
        } catch {
            throw .storage("\(error)")
        }
    }

    public func renewLeases(owner: String, leaseMS: Int64) throws(JobError) -> Set<String> {
        let untilMS = Clock.nowMS() + leaseMS
        do {
            return try database.write { db in
                try db.execute(sql: "UPDATE job SET lease_until_ms = ? WHERE state = 'running' AND owner = ?",
                               arguments: [untilMS, owner])
                return Set(try String.fetchAll(db, sql: "SELECT id FROM job WHERE state = 'running' AND owner = ?",
                                               arguments: [owner]))
            }
        } catch {
            throw .storage("\(error)")
        }
    }

    public func reclaimExpired(everyRunningJob: Bool, crashLimit: Int) throws(JobError) -> [JobRecord] {
        let beforeMS = everyRunningJob ? Int64.max : Clock.nowMS()
        let reclaimed: [(record: JobRecord, logLine: String)]
        do {
            reclaimed = try database.write { db in
                let expired = try Row.fetchAll(db, sql: """
                    SELECT * FROM job WHERE state = 'running' AND lease_until_ms < ? ORDER BY created_ms, id
                    """, arguments: [beforeMS]).map(Self.record)
                var reclaimed: [(record: JobRecord, logLine: String)] = []
                for record in expired {
                    let outcome = JobReclaim.apply(to: record, crashLimit: crashLimit, nowMS: Clock.nowMS())
                    try Self.upsert(outcome.record, in: db)
                    try db.execute(sql: "UPDATE job SET owner = '', lease_until_ms = 0 WHERE id = ?", arguments: [record.id])
                    try Self.insert(JobEvent(record: outcome.record, logLine: outcome.logLine), in: db)
                    reclaimed.append(outcome)
                }
                return reclaimed
            }
        } catch {
            throw .storage("\(error)")
        }
        announce(reclaimed.map { JobEvent(record: $0.record, logLine: $0.logLine) })
        return reclaimed.map(\.record)
    }

    /// The record with `id`, if any.
    public func fetch(_ id: String) throws(JobError) -> JobRecord? {
        do {
            return try database.read { db in
                try Row.fetchOne(db, sql: "SELECT * FROM job WHERE id = ?", arguments: [id]).map(Self.record)
            }
        } catch {
            throw .storage("\(error)")
        }
    }

    /// How many stored jobs there are of each kind in each state.
    public func countsByKindAndState() throws(JobError) -> [JobKindAndState: Int] {
        do {
            return try database.read { db in
                var counts: [JobKindAndState: Int] = [:]
                for row in try Row.fetchAll(db, sql: "SELECT kind, state, COUNT(*) AS n FROM job GROUP BY kind, state") {
                    counts[JobKindAndState(kind: row["kind"], state: row["state"])] = row["n"]
                }
                return counts
            }
        } catch {
            throw .storage("\(error)")
        }
    }

    /// Records, newest first, filtered by state and kind; only those after `after` (older)
    /// when given.
    public func list(state: JobState?, kind: String?, limit: Int,
                     after: JobListPosition?) throws(JobError) -> [JobRecord] {
        var conditions: [String] = []
        var arguments: [(any DatabaseValueConvertible)?] = []
        if let state { conditions.append("state = ?"); arguments.append(state.rawValue) }
        if let kind, !kind.isEmpty { conditions.append("kind = ?"); arguments.append(kind) }
        if let after {
            conditions.append("(created_ms < ? OR (created_ms = ? AND id < ?))")
            arguments.append(after.createdMS)
            arguments.append(after.createdMS)
            arguments.append(after.id)
        }
        let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        let sql = "SELECT * FROM job \(filter) ORDER BY created_ms DESC, id DESC LIMIT \(max(1, limit))"
        do {
            return try database.read { db in
                try Row.fetchAll(db, sql: sql, arguments: StatementArguments(arguments)).map(Self.record)
            }
        } catch {
            throw .storage("\(error)")
        }
    }

    /// Deletes finished jobs (and their events) that ended before `finishedBeforeMS`; returns
    /// their ids.
    public func purge(finishedBeforeMS: Int64) throws(JobError) -> [String] {
        let finalStates = JobState.allCases.filter(\.isFinal).map(\.rawValue)
        let placeholders = finalStates.map { _ in "?" }.joined(separator: ", ")
        do {
            return try database.write { db in
                var arguments: [(any DatabaseValueConvertible)?] = finalStates.map { $0 }
                arguments.append(finishedBeforeMS)
                let ids = try String.fetchAll(db, sql: """
                    SELECT id FROM job WHERE state IN (\(placeholders)) AND finished_ms < ?
                    """, arguments: StatementArguments(arguments))
                for id in ids {
                    try db.execute(sql: "DELETE FROM job_event WHERE job_id = ?", arguments: [id])
                    try db.execute(sql: "DELETE FROM job WHERE id = ?", arguments: [id])
                }
                return ids
            }
        } catch {
            throw .storage("\(error)")
        }
    }

    /// The log lines recorded for a job, oldest first.
    public func logLines(of id: String) throws(JobError) -> [String] {
        do {
            return try database.read { db in
                try String.fetchAll(db, sql: "SELECT log_line FROM job_event WHERE job_id = ? AND log_line != '' ORDER BY seq",
                                    arguments: [id])
            }
        } catch {
            throw .storage("\(error)")
        }
    }
}
