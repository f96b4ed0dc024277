import Foundation
import Logging
import Synchronization

/// Queues, runs, tracks and recovers jobs.
///
/// Jobs wait in a bounded FIFO queue and run on `workerCount` dedicated threads. Every
/// state change is stored (``JobStore``) before watchers hear of it. On start, jobs found
/// `running` (the daemon died under them) are re-queued ahead of new work, with their
/// checkpoint directories intact, so they resume where they last checkpointed.
public final class JobManager: Sendable {
    /// Limits of the queue and the pool.
    public struct Limits: Sendable {
        /// Jobs running at once. Default 1 (training uses every core).
        public var workerCount = 1
        /// Jobs allowed to wait; one more is refused with RESOURCE_EXHAUSTED. Default 32.
        public var queueCapacity = 32
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
    private let stoppedWorkers = DispatchGroup()

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
        let interrupted = try store.list(state: .running, limit: 10_000).sorted { $0.createdMS < $1.createdMS }
        for var record in interrupted {
            record.state = .queued
            record.stage = "interrupted"
            try store.save(record, event: JobEvent(
                record: record, logLine: "the daemon stopped while this job ran; it will resume from its last checkpoint"))
            logger.warning("job interrupted by a restart; resuming", metadata: ["job": "\(record.id)", "kind": "\(record.kind)"])
        }
        let queued = try store.list(state: .queued, limit: 10_000).sorted { $0.createdMS < $1.createdMS }
        state.withLock { $0.queue = queued.map(\.id) }
    }

    /// Starts the worker threads.
    public func start() {
        for index in 0..<max(1, limits.workerCount) {
            stoppedWorkers.enter()
            let thread = Thread { [self] in
                self.workerLoop()
                self.stoppedWorkers.leave()
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
        _ = stoppedWorkers.wait(timeout: .now() + timeout)
    }

    // MARK: Client operations

    /// Validates and queues a job.
    public func submit(kind: String, parameters: [String: String]) throws(JobError) -> JobRecord {
        guard let jobKind = kinds[kind] else { throw .unknownKind(kind, known: kindNames) }
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

    public func list(state: JobState?, kind: String?, limit: Int) throws(JobError) -> [JobRecord] {
        try store.list(state: state, kind: kind, limit: limit)
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
            log(id: id, line: "cancellation requested; the job stops at its next step")
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
        do {
            try store.save(record, event: event)
        } catch {
            logger.error("job state not saved", metadata: [
                "job": "\(record.id)", "state": "\(record.state.rawValue)", "stage": "\(record.stage)",
                "error": "\(error)"])
            guard event.isFinal else { return }
        }
        notify(event)
    }

    private func notify(_ event: JobEvent) {
        let watchers = state.withLock { Array($0.watchers[event.jobID, default: [:]].values) }
        for watcher in watchers {
            watcher.yield(event)
            if event.isFinal { watcher.finish() }
        }
    }

    // MARK: Workers

    private func workerLoop() {
        while true {
            wakeWorkers.lock()
            var next: String? = nil
            while next == nil {
                let (stopping, taken) = state.withLock { state -> (Bool, String?) in
                    if state.stopping { return (true, nil) }
                    guard !state.queue.isEmpty else { return (false, nil) }
                    let id = state.queue.removeFirst()
                    state.running.insert(id)
                    return (false, id)
                }
                if stopping {
                    wakeWorkers.unlock()
                    return
                }
                next = taken
                if next == nil { _ = wakeWorkers.wait(until: Date().addingTimeInterval(1)) }
            }
            wakeWorkers.unlock()
            if let id = next { execute(id) }
        }
    }

    private func execute(_ id: String) {
        defer { state.withLock { $0.running.remove(id); $0.cancelRequested.remove(id) } }
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
            if stopping {
                // Shutdown, not a client: stay `running` so the next start resumes the job.
                logger.info("job paused by shutdown; it resumes on the next start", metadata: ["job": "\(id)"])
                return
            }
            if error is JobCancelled || isCancelled(id: id) {
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
