import Foundation
import Synchronization

/// Where jobs and their events are kept, shared by every daemon that uses the same store.
///
/// Two implementations: ``SQLiteJobStore`` (one daemon, a file in its data directory) and
/// ``PostgresJobStore`` (any number of daemons sharing one database). ``JobManager`` talks
/// only to this interface.
///
/// A job is `queued` until a daemon claims it (``claimNext(owner:leaseMS:)``): the claim
/// sets it `running` under that daemon's name with a lease, which the daemon renews
/// (``renewLeases(owner:leaseMS:)``) while the job runs. A running job whose lease ran out
/// (its daemon died) is reclaimed by any daemon (``reclaimExpired(everyRunningJob:crashLimit:)``):
/// queued again to resume from its checkpoint, or ended by the rules of ``JobReclaim``.
///
/// Every write that records an event announces it, after it is stored, to the handler set
/// with ``onChange(_:)`` of every store on the same database (in this process for SQLite,
/// in every process for PostgreSQL, through LISTEN/NOTIFY).
public protocol JobStore: Sendable {
    /// Whether other daemons may use the same store at once (PostgreSQL). When not (SQLite),
    /// a starting daemon knows every job left `running` was its own, and reclaims them all.
    var sharedByDaemons: Bool { get }

    /// Inserts or updates a record (without an event). Ownership and lease are not touched; a
    /// stored cancellation request is never cleared by a writer that read the record before it.
    func save(_ record: JobRecord) throws(JobError)

    /// Saves `record` and appends `event` in one transaction, then announces the event.
    func save(_ record: JobRecord, event: JobEvent) throws(JobError)

    /// ``save(_:event:)`` for the daemon running the job: only while `owner` still holds its
    /// claim (checked under a row lock in the same transaction). False, with nothing written,
    /// when another daemon has reclaimed or claimed the job since.
    func save(_ record: JobRecord, event: JobEvent, heldBy owner: String) throws(JobError) -> Bool

    /// ``save(_:event:)``, but only when no job of `record.kind` was ever stored: the check and
    /// the write are one transaction, serialized among all daemons on the store. False, with
    /// nothing written, when one exists. For a job to submit once however many daemons start
    /// at the same moment (the first-start pipeline).
    func saveIfFirstOfKind(_ record: JobRecord, event: JobEvent) throws(JobError) -> Bool

    /// Records that a client asked to cancel job `id`, with a log line, unless the job has
    /// already ended; one statement, so a worker finishing the job at the same
    /// moment is never overwritten. Returns the record as stored then, or nil if it had ended.
    func markCancelRequested(_ id: String, logLine: String) throws(JobError) -> JobRecord?

    /// Cancels job `id` if it is still queued (no daemon claimed it); the record as stored
    /// then, or nil when it is not queued.
    func cancelIfQueued(_ id: String, logLine: String) throws(JobError) -> JobRecord?

    /// The record with `id`, if any.
    func fetch(_ id: String) throws(JobError) -> JobRecord?

    /// How many stored jobs there are of each kind in each state.
    func countsByKindAndState() throws(JobError) -> [JobKindAndState: Int]

    /// How many jobs are queued (waiting for any daemon).
    func queuedCount() throws(JobError) -> Int

    /// Records, newest first, filtered by state and kind; only those after `after` (older)
    /// when given.
    func list(state: JobState?, kind: String?, limit: Int, after: JobListPosition?) throws(JobError) -> [JobRecord]

    /// Deletes finished jobs (and their events) that ended before `finishedBeforeMS`; returns
    /// their ids.
    func purge(finishedBeforeMS: Int64) throws(JobError) -> [String]

    /// The log lines recorded for a job, oldest first.
    func logLines(of id: String) throws(JobError) -> [String]

    /// Takes the oldest queued job (by creation time, then submission order) for daemon
    /// `owner`, atomically across daemons: it becomes
    /// `running`, owned by `owner`, leased for `leaseMS` from now (the store's clock). Nil
    /// when none is queued. No event is written; the caller announces the start.
    func claimNext(owner: String, leaseMS: Int64) throws(JobError) -> JobRecord?

    /// Extends the lease of every running job `owner` holds to `leaseMS` from now; returns
    /// their ids. A job missing from the answer is no longer this daemon's (it was reclaimed).
    func renewLeases(owner: String, leaseMS: Int64) throws(JobError) -> Set<String>

    /// Applies ``JobReclaim`` to every running job whose lease has ended (or to every running
    /// job, when `everyRunningJob`: a daemon that alone uses the store, starting), in a
    /// transaction that no other daemon's reclaim of the same job overlaps; returns the
    /// records as stored after.
    func reclaimExpired(everyRunningJob: Bool, crashLimit: Int) throws(JobError) -> [JobRecord]

    /// Sets the handler of changes announced by any store on the same database. Set once,
    /// before the first write.
    func onChange(_ handler: @escaping @Sendable (JobStoreChange) -> Void)

    /// Releases connections and background work; later calls fail.
    func close()
}

/// Where a store sends its announcements: the handler set by ``JobStore/onChange(_:)``.
final class JobChangeRelay: Sendable {
    private let handler = Mutex<(@Sendable (JobStoreChange) -> Void)?>(nil)

    func set(_ handler: @escaping @Sendable (JobStoreChange) -> Void) {
        self.handler.withLock { $0 = handler }
    }

    func announce(_ change: JobStoreChange) {
        handler.withLock { $0 }?(change)
    }
}

/// What a store announces.
public enum JobStoreChange: Sendable {
    /// An event was stored.
    case event(JobEvent)
    /// Announcements may have been missed (the store's connection to the database was lost
    /// and is back): what a listener tracks should be read again.
    case resynchronize
}

/// Where a page of ``JobStore/list(state:kind:limit:after:)`` ends: the last record's
/// creation time and id (records are ordered by both, newest first).
public struct JobListPosition: Sendable, Equatable {
    public var createdMS: Int64
    public var id: String
    public init(createdMS: Int64, id: String) {
        self.createdMS = createdMS
        self.id = id
    }
}

/// A job kind and state, the key of ``JobStore/countsByKindAndState()``.
public struct JobKindAndState: Hashable, Sendable {
    public var kind: String
    public var state: String
    public init(kind: String, state: String) {
        self.kind = kind
        self.state = state
    }
}

/// What happens to a running job whose daemon died (its lease ran out, or, with SQLite, the
/// daemon restarts): one rule for every store.
public enum JobReclaim {
    /// The record after reclaiming `record`, and the log line of its event:
    /// - a job a client asked to cancel is cancelled;
    /// - otherwise the death counts as a crash; at `crashLimit` crashes the job is failed;
    /// - otherwise it is queued again, to resume from its last checkpoint.
    public static func apply(to record: JobRecord, crashLimit: Int, nowMS: Int64) -> (record: JobRecord, logLine: String) {
        var record = record
        if record.cancelRequested {
            record.state = .cancelled
            record.finishedMS = nowMS
            return (record, "cancelled (requested before the daemon running it stopped)")
        }
        record.crashes += 1
        if record.crashes >= crashLimit {
            record.state = .failed
            record.error = "the daemon stopped \(record.crashes) times while this job ran; it is not run again "
                + "(see the daemon's log; submit it anew, perhaps with smaller parameters)"
            record.finishedMS = nowMS
            return (record, "failed: \(record.error)")
        }
        record.state = .queued
        record.stage = "interrupted"
        return (record, "the daemon stopped while this job ran; it will resume from its last checkpoint")
    }
}
