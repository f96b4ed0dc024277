import Foundation
import Logging
import Synchronization

/// Queues, runs, tracks and recovers jobs.
///
/// Jobs wait in a bounded FIFO queue and run on `workerCount` dedicated threads. Every
/// state change is stored (``JobStore``) before watchers hear of it; a write that fails is
/// retried, and when it keeps failing the daemon is told (``onStorageFailure``), never left
/// unaware. On start, jobs found `running` (the daemon died under them) are re-queued ahead
/// of new work, with their checkpoint directories intact, so they resume where they last
/// checkpointed; one the daemon died under ``Limits/crashLimit`` times is failed instead,
/// and one a client had asked to cancel is cancelled. A graceful stop pauses running jobs
/// as `queued`, which is not counted as a crash. Finished jobs are purged after
/// ``Limits/retention``.
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
        public init() {}
    }

    private struct State {
        var queue: [String] = []
        var running: Set<String> = []
        var cancelRequested: Set<String> = []
        var watchers: [String: [Int: AsyncStream<JobEvent>.Continuation]] = [:]
        var nextWatcher = 0
        var stopping = false
    }

    private let store: JobStore
    private let kinds: [String: any JobKind]
    private let limits: Limits
    private let jobsDirectory: String
    private let logger: Logger
    private let state = Mutex(State())
    private let wakeWorkers = NSCondition()
    /// Broadcast after a cancellation is requested or a stop begins (``JobContext/waitUntilCancelled()``).
    private let cancellationSignal = NSCondition()
    private let stoppedWorkers = DispatchGroup()
    private let storageFailureHandler = Mutex<(@Sendable (String) -> Void)?>(nil)
    private let endedHandler = Mutex<(@Sendable (JobRecord) -> Void)?>(nil)

    /// Called (from a worker) with each job that reached a final state, after it is stored;
    /// for metrics. Set before ``start()``.
    public func onJobEnded(_ handler: @escaping @Sendable (JobRecord) -> Void) {
        endedHandler.withLock { $0 = handler }
    }

    /// How many stored jobs there are of each kind in each state.
    public func countsByKindAndState() throws(JobError) -> [JobStore.KindAndState: Int] {
        try store.countsByKindAndState()
    }

    /// Called (from a worker) when a job's state could not be stored even after retries;
    /// the daemon turns its health NOT_SERVING. Set before ``start()``.
    public func onStorageFailure(_ handler: @escaping @Sendable (String) -> Void) {
        storageFailureHandler.withLock { $0 = handler }
    }

    /// Opens the store under `dataDirectory` and recovers interrupted jobs (not yet started).
    public init(dataDirectory: String, kinds: [any JobKind], limits: Limits = Limits(), logger: Logger) throws(JobError) {
        self.store = try JobStore(path: (dataDirectory as NSString).appendingPathComponent("jobs.sqlite"))
        for kind in kinds { precondition(kind.parameters.kind == kind.name, "job kind \(kind.name) declares the parameters of \(kind.parameters.kind)") }
        self.kinds = Dictionary(kinds.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        self.limits = limits
        self.jobsDirectory = (dataDirectory as NSString).appendingPathComponent("jobs")
        self.logger = logger
        try recover()
    }

    /// The names of the registered kinds.
    public var kindNames: [String] { kinds.keys.sorted() }

    private func recover() throws(JobError) {
        let interrupted = try store.list(state: .running, limit: 100_000).sorted { $0.createdMS < $1.createdMS }
        for var record in interrupted {
            if record.cancelRequested {
                record.state = .cancelled
                record.finishedMS = Clock.nowMS()
                try store.save(record, event: JobEvent(record: record, logLine: "cancelled (requested before the daemon stopped)"))
                logger.info("job cancelled before a restart stays cancelled", metadata: ["job": "\(record.id)"])
                continue
            }
            record.crashes += 1
            if record.crashes >= limits.crashLimit {
                record.state = .failed
                record.error = "the daemon stopped \(record.crashes) times while this job ran; it is not run again "
                    + "(see the daemon's log; submit it anew, perhaps with smaller parameters)"
                record.finishedMS = Clock.nowMS()
                try store.save(record, event: JobEvent(record: record, logLine: "failed: \(record.error)"))
                logger.error("job failed: the daemon died under it too often", metadata: [
                    "job": "\(record.id)", "kind": "\(record.kind)", "crashes": "\(record.crashes)"])
                continue
            }
            record.state = .queued
            record.stage = "interrupted"
            try store.save(record, event: JobEvent(
                record: record, logLine: "the daemon stopped while this job ran; it will resume from its last checkpoint"))
            logger.warning("job interrupted by a restart; resuming", metadata: ["job": "\(record.id)", "kind": "\(record.kind)"])
        }
        var queued = try store.list(state: .queued, limit: 100_000).sorted { $0.createdMS < $1.createdMS }
        for var record in queued where record.cancelRequested {
            record.state = .cancelled
            record.finishedMS = Clock.nowMS()
            try store.save(record, event: JobEvent(record: record, logLine: "cancelled before it started"))
        }
        queued.removeAll { $0.cancelRequested }
        state.withLock { $0.queue = queued.map(\.id) }
        purgeExpired()
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

    /// Starts the worker threads. They end after ``stop(timeout:)``, or within a second of
    /// the manager being released (a worker holds it only while it waits or runs a job), so
    /// a forgotten manager never keeps a thread alive until the process exits.
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
    }

    /// Asks running jobs to stop at their next step (they stay `running` in the store, so
    /// the next start resumes them) and waits up to `timeout` for the workers.
    public func stop(timeout: TimeInterval) {
        state.withLock { state in
            state.stopping = true
        }
        wakeWorkers.broadcast()
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
        guard let jobKind = kinds[kind] else { throw .unknownKind(String(kind.prefix(64)), known: kindNames) }
        let size = parameters.reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count }
        guard size <= limits.maxParameterBytes else { throw .parametersTooLarge(limit: limits.maxParameterBytes) }
        try jobKind.validate(try jobKind.parameters.parse(parameters))
        let record = JobRecord(id: Self.newID(), kind: kind, parameters: parameters, state: .queued, createdMS: Clock.nowMS())
        let full = state.withLock { state -> Bool in
            if state.queue.count >= limits.queueCapacity { return true }
            state.queue.append(record.id)
            return false
        }
        if full { throw .queueFull(limit: limits.queueCapacity) }
        do {
            try store.save(record, event: JobEvent(record: record, logLine: "queued"))
        } catch {
            state.withLock { $0.queue.removeAll { $0 == record.id } }
            throw error
        }
        wakeWorkers.broadcast()
        logger.info("job queued", metadata: ["job": "\(record.id)", "kind": "\(kind)"])
        return record
    }

    public func get(_ id: String) throws(JobError) -> JobRecord {
        guard let record = try store.fetch(id) else { throw .notFound(id) }
        return record
    }

    public func list(state: JobState?, kind: String?, limit: Int, after: JobStore.Position? = nil) throws(JobError) -> [JobRecord] {
        try store.list(state: state, kind: kind, limit: limit, after: after)
    }

    public func logLines(of id: String) throws(JobError) -> [String] {
        try store.logLines(of: id)
    }

    /// Cancels a queued job at once, or a running one at its next step.
    public func cancel(_ id: String) throws(JobError) -> JobRecord {
        guard var record = try store.fetch(id) else { throw .notFound(id) }
        if record.state.isFinal { throw .alreadyEnded(id: id, state: record.state) }
        let wasQueued = state.withLock { state -> Bool in
            if let index = state.queue.firstIndex(of: id) {
                state.queue.remove(at: index)
                return true
            }
            state.cancelRequested.insert(id)
            return false
        }
        if wasQueued {
            record.state = .cancelled
            record.finishedMS = Clock.nowMS()
            try publish(record, logLine: "cancelled before it started")
        } else {
            signalCancellation()
            // Stored before answering, so a restart does not resume what a client cancelled.
            let line = "cancellation requested; the job stops at its next step"
            guard let marked = try store.markCancelRequested(id, logLine: line) else {
                // It ended meanwhile.
                let ended = try get(id)
                throw .alreadyEnded(id: id, state: ended.state)
            }
            record = marked
            notify(JobEvent(record: record, logLine: line))
        }
        return record
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
            _ = self?.state.withLock { $0.watchers[id]?.removeValue(forKey: watcherID) }
        }
        guard let record = try store.fetch(id) else {
            continuation.finish()
            throw .notFound(id)
        }
        continuation.yield(JobEvent(record: record))
        if record.state.isFinal { continuation.finish() }
        return stream
    }

    // MARK: Reporting from running jobs

    func progress(id: String, stage: String, step: UInt64, total: UInt64, metrics: [String: Double]) {
        guard var record = try? store.fetch(id) else { return }
        record.stage = stage
        record.step = step
        record.total = total
        record.metrics.merge(metrics) { _, new in new }
        publishOrLog(record)
    }

    func log(id: String, line: String) {
        guard let record = try? store.fetch(id) else { return }
        publishOrLog(record, logLine: line)
    }

    func isCancelled(id: String) -> Bool {
        state.withLock { $0.cancelRequested.contains(id) || $0.stopping }
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

    /// Saves `record` with its event, then tells the job's watchers; throws when the write fails.
    private func publish(_ record: JobRecord, logLine: String = "") throws(JobError) {
        let event = JobEvent(record: record, logLine: logLine)
        try store.save(record, event: event)
        notify(event)
    }

    /// ``publish(_:logLine:)`` for a worker, which has no caller to report to.
    ///
    /// A write that fails is logged with the job and the state it was to record, never
    /// dropped silently. The watchers still see a final event, so no watch waits for an end
    /// that already happened; the stored record stays as of the last write that succeeded
    /// (a job left `running` there resumes on the next start).
    private func publishOrLog(_ record: JobRecord, logLine: String = "") {
        let event = JobEvent(record: record, logLine: logLine)
        var failure: JobError? = nil
        for (attempt, pause) in Self.storageRetryPauses.enumerated() {
            do {
                try store.save(record, event: event)
                failure = nil
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
            storageFailureHandler.withLock { $0 }?("job \(record.id) state \(record.state.rawValue) not stored: \(failure)")
            guard event.isFinal else { return }
        }
        if record.state.isFinal { endedHandler.withLock { $0 }?(record) }
        notify(event)
    }

    /// Pauses between attempts to store a worker's state change (the last attempt is not followed by one).
    private static let storageRetryPauses: [TimeInterval] = [0.05, 0.25, 1, 0]

    private func notify(_ event: JobEvent) {
        let watchers = state.withLock { Array($0.watchers[event.jobID, default: [:]].values) }
        for watcher in watchers {
            watcher.yield(event)
            if event.isFinal { watcher.finish() }
        }
    }

    // MARK: Workers

    /// One turn of a worker: runs the next queued job, or waits up to a second for one.
    /// False once the manager is stopping.
    private func runNext() -> Bool {
        wakeWorkers.lock()
        let (stopping, taken) = state.withLock { state -> (Bool, String?) in
            if state.stopping { return (true, nil) }
            guard !state.queue.isEmpty else { return (false, nil) }
            let id = state.queue.removeFirst()
            state.running.insert(id)
            return (false, id)
        }
        if stopping {
            wakeWorkers.unlock()
            return false
        }
        guard let id = taken else {
            _ = wakeWorkers.wait(until: Date().addingTimeInterval(1))
            wakeWorkers.unlock()
            return true
        }
        wakeWorkers.unlock()
        execute(id)
        return true
    }

    private func execute(_ id: String) {
        defer {
            state.withLock { $0.running.remove(id); $0.cancelRequested.remove(id) }
            purgeExpired()
        }
        guard var record = try? store.fetch(id), !record.state.isFinal else { return }
        guard let kind = kinds[record.kind] else {
            record.state = .failed
            record.error = "job kind '\(record.kind)' is not available in this daemon"
            record.finishedMS = Clock.nowMS()
            publishOrLog(record)
            return
        }
        record.state = .running
        record.attempts += 1
        if record.startedMS == 0 { record.startedMS = Clock.nowMS() }
        publishOrLog(record, logLine: record.attempts > 1 ? "resumed (attempt \(record.attempts))" : "started")
        let checkpoints = (jobsDirectory as NSString).appendingPathComponent("\(id)/checkpoint")
        try? FileManager.default.createDirectory(atPath: checkpoints, withIntermediateDirectories: true)
        let started = Date()
        do {
            // Parameters checked at submission are read again as this build declares them.
            let values = try kind.parameters.parse(record.parameters)
            let context = JobContext(record: record, values: values, checkpointDirectory: checkpoints, manager: self)
            let outcome = try kind.run(context)
            guard var finished = try? store.fetch(id) else { return }
            finished.state = .succeeded
            finished.metrics.merge(outcome.metrics) { _, new in new }
            finished.artifact = outcome.artifact
            finished.finishedMS = Clock.nowMS()
            publishOrLog(finished, logLine: String(format: "succeeded in %.1f s", Date().timeIntervalSince(started)))
            logger.info("job succeeded", metadata: ["job": "\(id)", "kind": "\(record.kind)"])
        } catch {
            guard var finished = try? store.fetch(id) else { return }
            let stopping = state.withLock { $0.stopping && !$0.cancelRequested.contains(id) }
            if stopping && !finished.cancelRequested {
                // Shutdown, not a client: queued again (not a crash), so the next start resumes it.
                finished.state = .queued
                finished.stage = "paused"
                publishOrLog(finished, logLine: "paused by a shutdown; it resumes on the next start")
                logger.info("job paused by shutdown; it resumes on the next start", metadata: ["job": "\(id)"])
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

    private static func newID() -> String {
        let time = String(Clock.nowMS(), radix: 36)
        let random = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        return "job-\(time)-\(random)"
    }
}
