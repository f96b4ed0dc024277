import Foundation
import Logging
import Synchronization

/// Queues, runs, tracks and recovers jobs.
///
/// Jobs wait in the store (``JobStore``) as `queued`; `workerCount` dedicated threads each
/// claim the oldest one (under a lease this daemon renews while the job runs) and run it.
/// The store may be shared by several daemons (PostgreSQL): each job is claimed by one of
/// them, watchers and cancellations reach it from any daemon through the store's
/// announcements, and a job whose daemon died is reclaimed by another once its lease runs
/// out. Every state change is stored before watchers hear of it; a write that fails is
/// retried, and when it keeps failing the daemon is told (``onStorageFailure``), never left
/// unaware, and told again when the store answers (``onStorageRecovered``).
///
/// A job whose daemon died (SQLite: found `running` at start; PostgreSQL: lease expired) is
/// queued again with its checkpoint directory intact, so it resumes where it last
/// checkpointed; one the daemon died under ``Limits/crashLimit`` times is failed instead,
/// and one a client had asked to cancel is cancelled (``JobReclaim``). A graceful stop
/// pauses running jobs as `queued`, which is not counted as a crash. Finished jobs are
/// purged after ``Limits/retention``.
public final class JobManager: Sendable {
    /// Limits of the queue and the pool.
    public struct Limits: Sendable {
        /// Jobs running at once. Default 1 (training uses every core).
        public var workerCount = 1
        /// Jobs allowed to wait; one more is refused with RESOURCE_EXHAUSTED. Default 32.
        public var queueCapacity = 32
        /// The most bytes of parameters (names and values together) one job may have. Default 64 KiB.
        public var maxParameterBytes = 64 << 10
        /// A job the daemon died under this many times is failed, not run again. Default 3.
        public var crashLimit = 3
        /// Finished jobs (and their events and checkpoints) are deleted this long after they
        /// ended; nil keeps them. Default 30 days.
        public var retention: TimeInterval? = 30 * 24 * 3600
        /// How long a claim lasts without renewal; renewed every third of it. A daemon that
        /// dies holds its jobs this long at most before another reclaims them. Default 30 s.
        public var leaseDuration: TimeInterval = 30
        public init() {}
    }

    private struct State {
        var running: Set<String> = []
        var cancelRequested: Set<String> = []
        /// Running here, but reclaimed by another daemon (this one missed renewing the lease):
        /// stopped without writing anything more.
        var lost: Set<String> = []
        var watchers: [String: [Int: AsyncStream<JobEvent>.Continuation]] = [:]
        var nextWatcher = 0
        var stopping = false
        /// The store failed the last time it was used for the daemon's own work.
        var storageFailing = false
    }

    private let store: any JobStore
    /// This daemon's name in claims: host, process and a random part (unique per start).
    public let owner: String
    private let kinds: [String: any JobKind]
    private let limits: Limits
    private let jobsDirectory: String
    private let logger: Logger
    private let state = Mutex(State())
    private let wakeWorkers = NSCondition()
    /// Broadcast after a cancellation is requested or a stop begins (``JobContext/waitUntilCancelled()``).
    private let cancellationSignal = NSCondition()
    /// Broadcast when a stop begins, to end the lease keeper's pause.
    private let keeperSignal = NSCondition()
    private let stoppedWorkers = DispatchGroup()
    private let storageFailureHandler = Mutex<(@Sendable (String) -> Void)?>(nil)
    private let storageRecoveredHandler = Mutex<(@Sendable () -> Void)?>(nil)
    private let endedHandler = Mutex<(@Sendable (JobRecord) -> Void)?>(nil)
    /// Longest pause of an idle worker before it looks for queued jobs again (new jobs wake
    /// it at once; this covers announcements lost with a connection).
    private static let idleWait: TimeInterval = 2

    /// Called (from a worker) with each job that reached a final state, after it is stored;
    /// for metrics. Set before ``start()``.
    public func onJobEnded(_ handler: @escaping @Sendable (JobRecord) -> Void) {
        endedHandler.withLock { $0 = handler }
    }

    /// How many stored jobs there are of each kind in each state.
    public func countsByKindAndState() throws(JobError) -> [JobKindAndState: Int] {
        try store.countsByKindAndState()
    }

    /// Called (from a worker) when a job's state could not be stored even after retries, or
    /// when the store stops answering; the daemon turns its health NOT_SERVING. Set before
    /// ``start()``.
    public func onStorageFailure(_ handler: @escaping @Sendable (String) -> Void) {
        storageFailureHandler.withLock { $0 = handler }
    }

    /// Called when the store answers again after ``onStorageFailure(_:)``; the daemon turns
    /// its health SERVING again. Set before ``start()``.
    public func onStorageRecovered(_ handler: @escaping @Sendable () -> Void) {
        storageRecoveredHandler.withLock { $0 = handler }
    }

    /// Opens the SQLite store under `dataDirectory` and recovers interrupted jobs (not yet started).
    public convenience init(dataDirectory: String, kinds: [any JobKind], limits: Limits = Limits(),
                            logger: Logger) throws(JobError) {
        try self.init(store: SQLiteJobStore(path: (dataDirectory as NSString).appendingPathComponent("jobs.sqlite")),
                      jobsDirectory: (dataDirectory as NSString).appendingPathComponent("jobs"),
                      kinds: kinds, limits: limits, logger: logger)
    }

    /// Uses `store`, with checkpoints under `jobsDirectory` (`<id>/checkpoint`; daemons that
    /// share a store must share this directory for jobs to resume on another daemon), and
    /// recovers interrupted jobs (not yet started).
    public init(store: any JobStore, jobsDirectory: String, kinds: [any JobKind], limits: Limits = Limits(),
                logger: Logger) throws(JobError) {
        self.store = store
        for kind in kinds { precondition(kind.parameters.kind == kind.name, "job kind \(kind.name) declares the parameters of \(kind.parameters.kind)") }
        self.kinds = Dictionary(kinds.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        self.limits = limits
        self.jobsDirectory = jobsDirectory
        self.logger = logger
        self.owner = "\(Self.hostName())/\(getpid())/\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"
        store.onChange { [weak self] change in self?.handle(change) }
        try reclaim(everyRunningJob: !store.sharedByDaemons)
        purgeExpired()
    }

    /// The names of the registered kinds.
    public var kindNames: [String] { kinds.keys.sorted() }

    /// Reclaims jobs whose daemon died (see ``JobReclaim``) and logs what became of them.
    private func reclaim(everyRunningJob: Bool) throws(JobError) {
        for record in try store.reclaimExpired(everyRunningJob: everyRunningJob, crashLimit: limits.crashLimit) {
            let metadata: Logger.Metadata = ["job": "\(record.id)", "kind": "\(record.kind)", "crashes": "\(record.crashes)"]
            switch record.state {
            case .queued: logger.warning("job interrupted by a daemon's stop; resuming", metadata: metadata)
            case .failed: logger.error("job failed: the daemon died under it too often", metadata: metadata)
            default: logger.info("job cancelled before its daemon stopped stays cancelled", metadata: metadata)
            }
        }
    }

    /// Deletes finished jobs older than the retention, with their checkpoint directories.
    private func purgeExpired() {
        guard let retention = limits.retention else { return }
        do {
            let ids = try store.purge(finishedBeforeMS: Clock.nowMS() - Int64(retention * 1000))
            for id in ids {
                try? FileManager.default.removeItem(atPath: (jobsDirectory as NSString).appendingPathComponent(id))
            }
            if !ids.isEmpty { logger.info("finished jobs past their retention deleted", metadata: ["count": "\(ids.count)"]) }
        } catch {
            logger.warning("finished jobs could not be purged", metadata: ["error": "\(error)"])
        }
    }

    /// Starts the worker threads and the lease keeper. They end after ``stop(timeout:)``, or
    /// within ``idleWait`` (a worker) or a third of the lease (the keeper) of the manager
    /// being released (a thread holds it only while it waits or works), so a forgotten
    /// manager never keeps a thread alive until the process exits.
    public func start() {
        for index in 0..<max(1, limits.workerCount) {
            stoppedWorkers.enter()
            let stopped = stoppedWorkers
            let thread = Thread { [weak self] in
                while let manager = self, manager.runNext() {}
                stopped.leave()
            }
            thread.name = "curec-job-\(index)"
            thread.start()
        }
        let keeper = Thread { [weak self] in
            while let manager = self, manager.keepLeases() {}
        }
        keeper.name = "curec-job-leases"
        keeper.start()
    }

    /// Asks running jobs to stop at their next step (they are queued again, so this or
    /// another daemon resumes them) and waits up to `timeout` for the workers.
    public func stop(timeout: TimeInterval) {
        state.withLock { state in
            state.stopping = true
        }
        wake()
        keeperSignal.lock()
        keeperSignal.broadcast()
        keeperSignal.unlock()
        signalCancellation()
        _ = stoppedWorkers.wait(timeout: .now() + timeout)
    }

    /// Waits up to `timeout` for the workers to end after ``stop(timeout:)``; false when a
    /// job is still running (it did not reach a step that checks for stopping).
    public func waitUntilStopped(timeout: TimeInterval) -> Bool {
        stoppedWorkers.wait(timeout: .now() + timeout) == .success
    }

    // MARK: Client operations

    /// Validates and queues a job.
    public func submit(kind: String, parameters: [String: String]) throws(JobError) -> JobRecord {
        let record = try validatedNewJob(kind: kind, parameters: parameters)
        try store.save(record, event: JobEvent(record: record, logLine: "queued"))
        queued(record)
        return record
    }

    /// Validates and queues a job of `kind` unless one of that kind was ever submitted, by this
    /// daemon or any other sharing the store; nil when one was.
    public func submitIfFirstOfKind(kind: String, parameters: [String: String]) throws(JobError) -> JobRecord? {
        let record = try validatedNewJob(kind: kind, parameters: parameters)
        guard try store.saveIfFirstOfKind(record, event: JobEvent(record: record, logLine: "queued")) else { return nil }
        queued(record)
        return record
    }

    /// A new queued record for `kind` with `parameters`, once they pass the kind's checks,
    /// the size limit and the queue capacity.
    private func validatedNewJob(kind: String, parameters: [String: String]) throws(JobError) -> JobRecord {
        guard let jobKind = kinds[kind] else { throw .unknownKind(String(kind.prefix(64)), known: kindNames) }
        let size = parameters.reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count }
        guard size <= limits.maxParameterBytes else { throw .parametersTooLarge(limit: limits.maxParameterBytes) }
        try jobKind.validate(try jobKind.parameters.parse(parameters))
        // Counted in the store, so the limit holds for the queue all daemons share (daemons
        // submitting at the same moment may each add one past it).
        if try store.queuedCount() >= limits.queueCapacity { throw .queueFull(limit: limits.queueCapacity) }
        return JobRecord(id: Self.newID(), kind: kind, parameters: parameters, state: .queued, createdMS: Clock.nowMS())
    }

    /// Wakes a worker for a record just stored as queued.
    private func queued(_ record: JobRecord) {
        wake()
        logger.info("job queued", metadata: ["job": "\(record.id)", "kind": "\(record.kind)"])
    }

    public func get(_ id: String) throws(JobError) -> JobRecord {
        guard let record = try store.fetch(id) else { throw .notFound(id) }
        return record
    }

    public func list(state: JobState?, kind: String?, limit: Int, after: JobListPosition? = nil) throws(JobError) -> [JobRecord] {
        try store.list(state: state, kind: kind, limit: limit, after: after)
    }

    public func logLines(of id: String) throws(JobError) -> [String] {
        try store.logLines(of: id)
    }

    /// Cancels a queued job at once, or a running one at its next step (on whichever daemon
    /// runs it: the request is stored, and the store announces it to every daemon).
    public func cancel(_ id: String) throws(JobError) -> JobRecord {
        guard let record = try store.fetch(id) else { throw .notFound(id) }
        if record.state.isFinal { throw .alreadyEnded(id: id, state: record.state) }
        if let cancelled = try store.cancelIfQueued(id, logLine: "cancelled before it started") { return cancelled }
        // Stored before answering, so a restart does not resume what a client cancelled.
        let line = "cancellation requested; the job stops at its next step"
        guard let marked = try store.markCancelRequested(id, logLine: line) else {
            // It ended meanwhile.
            let ended = try get(id)
            throw .alreadyEnded(id: id, state: ended.state)
        }
        requestCancellationIfRunningHere(id)
        return marked
    }

    /// The job's events: its current state first, then every change; ends after the final one.
    public func watch(_ id: String) throws(JobError) -> AsyncStream<JobEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: JobEvent.self, bufferingPolicy: .bufferingNewest(256))
        // Subscribe first, then read the record, so no change falls between the two.
        let watcherID = state.withLock { state -> Int in
            let watcherID = state.nextWatcher
            state.nextWatcher += 1
            state.watchers[id, default: [:]][watcherID] = continuation
            return watcherID
        }
        continuation.onTermination = { [weak self] _ in
            self?.state.withLock { state in
                state.watchers[id]?.removeValue(forKey: watcherID)
                if state.watchers[id]?.isEmpty == true { state.watchers[id] = nil }
            }
        }
        let record: JobRecord?
        do {
            record = try store.fetch(id)
        } catch {
            continuation.finish()
            throw error
        }
        guard let record else {
            continuation.finish()
            throw .notFound(id)
        }
        continuation.yield(JobEvent(record: record))
        if record.state.isFinal { continuation.finish() }
        return stream
    }

    // MARK: Announcements from the store

    /// What the store announced, from this daemon or another one.
    private func handle(_ change: JobStoreChange) {
        switch change {
        case .event(let event):
            if event.state == .queued { wake() }
            if event.cancelRequested && event.state == .running { requestCancellationIfRunningHere(event.jobID) }
            notify(event)
        case .resynchronize:
            // Announcements may have been missed: read again what watchers and running jobs wait for.
            wake()
            let (watched, running) = state.withLock { (Array($0.watchers.keys), $0.running) }
            for id in Set(watched).union(running) {
                guard let record = try? store.fetch(id) else { continue }
                if record.cancelRequested && running.contains(id) { requestCancellationIfRunningHere(id) }
                if watched.contains(id) { notify(JobEvent(record: record)) }
            }
        }
    }

    /// Stops job `id` at its next step if it runs on this daemon.
    private func requestCancellationIfRunningHere(_ id: String) {
        let runningHere = state.withLock { state -> Bool in
            guard state.running.contains(id) else { return false }
            state.cancelRequested.insert(id)
            return true
        }
        if runningHere { signalCancellation() }
    }

    private func wake() {
        wakeWorkers.lock()
        wakeWorkers.broadcast()
        wakeWorkers.unlock()
    }

    // MARK: Reporting from running jobs

    func progress(id: String, stage: String, step: UInt64, total: UInt64, metrics: [String: Double]) {
        guard !isLost(id), var record = try? store.fetch(id) else { return }
        record.stage = stage
        record.step = step
        record.total = total
        record.metrics.merge(metrics) { _, new in new }
        publishOrLog(record)
    }

    func log(id: String, line: String) {
        guard !isLost(id), let record = try? store.fetch(id) else { return }
        publishOrLog(record, logLine: line)
    }

    func isCancelled(id: String) -> Bool {
        state.withLock { $0.cancelRequested.contains(id) || $0.lost.contains(id) || $0.stopping }
    }

    private func isLost(_ id: String) -> Bool {
        state.withLock { $0.lost.contains(id) }
    }

    /// Blocks until job `id` is cancelled or the manager stops.
    func waitUntilCancelled(id: String) {
        cancellationSignal.lock()
        defer { cancellationSignal.unlock() }
        while !isCancelled(id: id) { cancellationSignal.wait() }
    }

    private func signalCancellation() {
        cancellationSignal.lock()
        cancellationSignal.broadcast()
        cancellationSignal.unlock()
    }

    /// Saves `record` with its event for a worker, which has no caller to report to, while
    /// this daemon holds the job's claim; the store announces the event to the watchers on
    /// every daemon. A write refused because another daemon took the job over marks it lost
    /// here (it stops at its next step, writing nothing more).
    ///
    /// A write that fails is logged with the job and the state it was to record, never
    /// dropped silently. The watchers on this daemon still see a final event, so no watch
    /// waits for an end that already happened; the stored record stays as of the last write
    /// that succeeded (a job left `running` there is reclaimed when its lease runs out).
    private func publishOrLog(_ record: JobRecord, logLine: String = "") {
        let event = JobEvent(record: record, logLine: logLine)
        var failure: JobError? = nil
        for (attempt, pause) in Self.storageRetryPauses.enumerated() {
            do {
                failure = nil
                if try !store.save(record, event: event, heldBy: owner) {
                    markLost(record.id)
                    storageAnswered()
                    return
                }
                break
            } catch {
                failure = error
                logger.warning("job state not saved; retrying", metadata: [
                    "job": "\(record.id)", "state": "\(record.state.rawValue)", "attempt": "\(attempt + 1)", "error": "\(error)"])
                Thread.sleep(forTimeInterval: pause)
            }
        }
        if let failure {
            logger.error("job state not saved after retries; reporting NOT_SERVING", metadata: [
                "job": "\(record.id)", "state": "\(record.state.rawValue)", "stage": "\(record.stage)",
                "error": "\(failure)"])
            state.withLock { $0.storageFailing = true }
            storageFailureHandler.withLock { $0 }?("job \(record.id) state \(record.state.rawValue) not stored: \(failure)")
            guard event.isFinal else { return }
            notify(event)
        } else {
            storageAnswered()
        }
        if record.state.isFinal { endedHandler.withLock { $0 }?(record) }
    }

    /// Stops job `id` here without writing: another daemon reclaimed it (this one missed
    /// renewing the lease).
    private func markLost(_ id: String) {
        let first = state.withLock { state -> Bool in
            guard state.running.contains(id) else { return false }
            return state.lost.insert(id).inserted
        }
        guard first else { return }
        logger.error("job reclaimed by another daemon (its lease here ran out); stopping it here without writing",
                     metadata: ["job": "\(id)"])
        signalCancellation()
    }

    /// Pauses between attempts to store a worker's state change (the last attempt is not followed by one).
    private static let storageRetryPauses: [TimeInterval] = [0.05, 0.25, 1, 0]

    /// Records that the store failed the daemon's own work; reports it once per episode.
    private func storageFailed(_ error: JobError, doing work: String) {
        let first = state.withLock { state -> Bool in
            defer { state.storageFailing = true }
            return !state.storageFailing
        }
        guard first else { return }
        logger.error("the job store does not answer; reporting NOT_SERVING until it does", metadata: [
            "work": "\(work)", "error": "\(error)"])
        storageFailureHandler.withLock { $0 }?("the job store failed to \(work): \(error)")
    }

    /// Records that the store answered; reports the end of a failure episode.
    private func storageAnswered() {
        let recovered = state.withLock { state -> Bool in
            defer { state.storageFailing = false }
            return state.storageFailing
        }
        guard recovered else { return }
        logger.notice("the job store answers again")
        storageRecoveredHandler.withLock { $0 }?()
    }

    private func notify(_ event: JobEvent) {
        let watchers = state.withLock { Array($0.watchers[event.jobID, default: [:]].values) }
        for watcher in watchers {
            watcher.yield(event)
            if event.isFinal { watcher.finish() }
        }
    }

    // MARK: Leases

    /// One turn of the lease keeper: renews the leases of the jobs running here, reclaims
    /// the jobs of daemons whose leases ran out, then pauses a third of the lease (or until
    /// a stop). False once the manager is stopping.
    private func keepLeases() -> Bool {
        if state.withLock({ $0.stopping }) { return false }
        let leaseMS = Int64(limits.leaseDuration * 1000)
        do {
            let before = state.withLock { $0.running }
            let renewed = try store.renewLeases(owner: owner, leaseMS: leaseMS)
            // Still running here, not renewed: another daemon reclaimed it.
            let lost = state.withLock { before.subtracting(renewed).intersection($0.running) }
            for id in lost { markLost(id) }
            try reclaim(everyRunningJob: false)
            storageAnswered()
        } catch {
            storageFailed(error, doing: "renew leases")
        }
        keeperSignal.lock()
        defer { keeperSignal.unlock() }
        if state.withLock({ $0.stopping }) { return false }
        _ = keeperSignal.wait(until: Date().addingTimeInterval(max(0.05, limits.leaseDuration / 3)))
        return !state.withLock { $0.stopping }
    }

    // MARK: Workers

    /// One turn of a worker: claims and runs the oldest queued job, or waits up to
    /// ``idleWait`` to be woken (a job queued or an announcement). False once the manager is
    /// stopping.
    private func runNext() -> Bool {
        wakeWorkers.lock()
        if state.withLock({ $0.stopping }) {
            wakeWorkers.unlock()
            return false
        }
        var claimed: JobRecord? = nil
        do {
            claimed = try store.claimNext(owner: owner, leaseMS: Int64(limits.leaseDuration * 1000))
            storageAnswered()
        } catch {
            storageFailed(error, doing: "claim a queued job")
        }
        guard let record = claimed else {
            _ = wakeWorkers.wait(until: Date().addingTimeInterval(Self.idleWait))
            wakeWorkers.unlock()
            return true
        }
        state.withLock { _ = $0.running.insert(record.id) }
        wakeWorkers.unlock()
        execute(record)
        return true
    }

    private func execute(_ claimed: JobRecord) {
        let id = claimed.id
        defer {
            state.withLock { $0.running.remove(id); $0.cancelRequested.remove(id); $0.lost.remove(id) }
            purgeExpired()
        }
        var record = claimed
        if record.cancelRequested {
            record.state = .cancelled
            record.finishedMS = Clock.nowMS()
            publishOrLog(record, logLine: "cancelled before it started")
            return
        }
        guard let kind = kinds[record.kind] else {
            record.state = .failed
            record.error = "job kind '\(record.kind)' is not available in this daemon"
            record.finishedMS = Clock.nowMS()
            publishOrLog(record)
            return
        }
        record.attempts += 1
        if record.startedMS == 0 { record.startedMS = Clock.nowMS() }
        // The daemon's name in the log line says where it runs (several daemons may share a store).
        publishOrLog(record, logLine: record.attempts > 1 ? "resumed (attempt \(record.attempts)) on \(owner)" : "started on \(owner)")
        let checkpoints = (jobsDirectory as NSString).appendingPathComponent("\(id)/checkpoint")
        try? FileManager.default.createDirectory(atPath: checkpoints, withIntermediateDirectories: true)
        let started = Date()
        do {
            // Parameters checked at submission are read again as this build declares them.
            let values = try kind.parameters.parse(record.parameters)
            let context = JobContext(record: record, values: values, checkpointDirectory: checkpoints, manager: self)
            let outcome = try kind.run(context)
            guard !isLost(id), var finished = try? store.fetch(id) else { return }
            finished.state = .succeeded
            finished.metrics.merge(outcome.metrics) { _, new in new }
            finished.artifact = outcome.artifact
            finished.finishedMS = Clock.nowMS()
            publishOrLog(finished, logLine: String(format: "succeeded in %.1f s", Date().timeIntervalSince(started)))
            logger.info("job succeeded", metadata: ["job": "\(id)", "kind": "\(record.kind)"])
        } catch {
            guard !isLost(id), var finished = try? store.fetch(id) else { return }
            let stopping = state.withLock { $0.stopping && !$0.cancelRequested.contains(id) }
            if stopping && !finished.cancelRequested {
                // Shutdown, not a client: queued again (not a crash), so this or another daemon resumes it.
                finished.state = .queued
                finished.stage = "paused"
                let resume = store.sharedByDaemons ? "the next daemon to claim it resumes it" : "it resumes on the next start"
                publishOrLog(finished, logLine: "paused by a shutdown; \(resume)")
                logger.info("job paused by shutdown; \(resume)", metadata: ["job": "\(id)"])
                return
            }
            if error is JobCancelled || isCancelled(id: id) || finished.cancelRequested {
                finished.state = .cancelled
                finished.finishedMS = Clock.nowMS()
                publishOrLog(finished, logLine: "cancelled")
                logger.info("job cancelled", metadata: ["job": "\(id)"])
            } else {
                finished.state = .failed
                finished.error = "\(error)"
                finished.finishedMS = Clock.nowMS()
                publishOrLog(finished, logLine: "failed: \(error)")
                logger.warning("job failed", metadata: ["job": "\(id)", "error": "\(error)"])
            }
        }
    }

    /// This machine's name (at most 64 bytes), without a name lookup.
    public static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "host" }
        return String(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self).prefix(64))
    }

    private static func newID() -> String {
        let time = String(Clock.nowMS(), radix: 36)
        let random = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        return "job-\(time)-\(random)"
    }
}
