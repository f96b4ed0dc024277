import Foundation

/// Told once per batched execution, for the requests of one kind it served (the daemon's
/// per model and method metrics conform).
public protocol BatchExecutionObserver: AnyObject, Sendable {
    /// One execution computed `inferences` of this observer's requests in `computeNanoseconds`.
    func executed(inferences: Int, computeNanoseconds: UInt64)
}

/// What a queued request got back besides its value.
public struct BatchedOutcome<Value: Sendable>: Sendable {
    public var value: Value
    /// From entering the queue to its execution starting.
    public var queueNanoseconds: UInt64
    /// How many requests the execution that served it computed.
    public var batchSize: Int
}

/// A queue in front of one batched entry point: concurrent requests wait up to the
/// configured delay for others, then run as one call on the batcher's own thread, and each
/// caller gets its own result back (``DynamicBatchingConfiguration`` says when a batch goes).
///
/// A request leaves the queue without running when its task is cancelled or its deadline
/// passes first; one beyond `maxQueueSize` waiting is refused with ``PluginHostError/queueFull(instance:limit:)``.
/// One batch runs at a time; requests arriving meanwhile form the next.
///
/// A quiet instance does not make a lone request wait: when the previous execution served one
/// request and nothing arrived while it ran, a request that finds the queue empty and no batch
/// running runs at once. Any sign of concurrency (a batch of several, or a request arriving
/// while another waits or runs) turns the delay back on until a lone execution sees none
/// again. An instance starts out as busy (the first request waits the delay).
public final class DynamicBatcher<Request: Sendable, Response: Sendable>: Sendable {
    /// Runs one batch: one result per request, in order.
    public typealias Execute = @Sendable ([Request]) -> [Result<Response, PluginHostError>]

    public let configuration: DynamicBatchingConfiguration
    private let state: SharedState

    /// Starts the batcher's thread. `instance` names the plugin instance in errors.
    public init(instance: String, configuration: DynamicBatchingConfiguration, execute: @escaping Execute) {
        self.configuration = configuration
        self.state = SharedState(instance: instance, configuration: configuration, execute: execute)
        let state = self.state
        let thread = Thread { state.run() }
        thread.name = "batch-\(instance.prefix(24))"
        thread.start()
    }

    deinit { state.stop() }

    /// Requests waiting now (not counting a batch running).
    public var queuedCount: Int { state.queuedCount }

    /// Batches executed so far.
    public var executionCount: Int { state.executionCount }

    /// Queues `request` and returns its result once its batch ran. `deadline` (monotonic
    /// nanoseconds, ``DynamicBatcher/now()``) drops it unexecuted once passed; cancelling the
    /// calling task removes it from the queue.
    public func submit(_ request: Request, deadline: UInt64? = nil,
                       observer: (any BatchExecutionObserver)? = nil) async throws(PluginHostError) -> BatchedOutcome<Response> {
        let id = state.nextID()
        let result: Result<BatchedOutcome<Response>, PluginHostError> = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                state.enqueue(Entry(id: id, request: request, deadline: deadline, enqueued: Self.now(),
                                    observer: observer, continuation: continuation))
            }
        } onCancel: {
            state.cancel(id: id)
        }
        return try result.get()
    }

    /// Monotonic nanoseconds, the clock of deadlines and queue times.
    public static func now() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
    }

    struct Entry: @unchecked Sendable {
        let id: UInt64
        let request: Request
        let deadline: UInt64?
        let enqueued: UInt64
        let observer: (any BatchExecutionObserver)?
        let continuation: CheckedContinuation<Result<BatchedOutcome<Response>, PluginHostError>, Never>

        func finish(_ result: Result<BatchedOutcome<Response>, PluginHostError>) { continuation.resume(returning: result) }
    }

    /// The queue and the batch thread's loop, behind one condition lock.
    final class SharedState: @unchecked Sendable {
        let instance: String
        let configuration: DynamicBatchingConfiguration
        let execute: Execute
        private let condition = NSCondition()
        private var pending: [Entry] = []
        private var stopped = false
        private var lastID: UInt64 = 0
        private var executions = 0
        /// Whether the last execution served one request and none arrived while it ran: the
        /// next request finding the queue empty then runs without waiting the delay.
        private var quiet = false

        init(instance: String, configuration: DynamicBatchingConfiguration, execute: @escaping Execute) {
            self.instance = instance
            self.configuration = configuration
            self.execute = execute
        }

        private func locked<T>(_ body: () -> T) -> T {
            condition.lock()
            defer { condition.unlock() }
            return body()
        }

        var queuedCount: Int { locked { pending.count } }
        var executionCount: Int { locked { executions } }

        func nextID() -> UInt64 { locked { lastID += 1; return lastID } }

        func enqueue(_ entry: Entry) {
            let refusal: PluginHostError? = locked {
                if Task.isCancelled { return .cancelledInQueue(instance: instance) }
                if stopped { return .host("plugin '\(instance)' was retired while the request waited; retry it") }
                if pending.count >= configuration.maxQueueSize {
                    return .queueFull(instance: instance, limit: configuration.maxQueueSize)
                }
                pending.append(entry)
                condition.signal()
                return nil
            }
            if let refusal { entry.finish(.failure(refusal)) }
        }

        func cancel(id: UInt64) {
            let removed: Entry? = locked {
                guard let index = pending.firstIndex(where: { $0.id == id }) else { return nil }
                return pending.remove(at: index)
            }
            removed?.finish(.failure(.cancelledInQueue(instance: instance)))
        }

        func stop() {
            let left: [Entry] = locked {
                stopped = true
                condition.signal()
                defer { pending.removeAll() }
                return pending
            }
            for entry in left { entry.finish(.failure(.host("plugin '\(instance)' was retired while the request waited; retry it"))) }
        }

        /// Removes the entries whose deadline passed (to be failed by the caller).
        private func takeExpired(now: UInt64) -> [Entry] {
            var expired: [Entry] = []
            pending.removeAll { entry in
                guard let deadline = entry.deadline, deadline <= now else { return false }
                expired.append(entry)
                return true
            }
            return expired
        }

        /// How many of the `count` waiting requests to send now, or nil to keep waiting.
        static func batchSize(waiting count: Int, delayPassed: Bool, configuration: DynamicBatchingConfiguration) -> Int? {
            guard count > 0 else { return nil }
            if count >= configuration.maxBatchSize { return configuration.maxBatchSize }
            if let largest = configuration.preferredBatchSizes.last, count >= largest { return largest }
            guard delayPassed else { return nil }
            return configuration.preferredBatchSizes.last(where: { $0 <= count }) ?? count
        }

        /// The batch thread: waits for a batch to be due, runs it, hands out the results.
        func run() {
            let delay = UInt64(configuration.maxQueueDelayMicroseconds) * 1000
            while true {
                var expired: [Entry] = []
                let batch: [Entry]? = locked {
                    while true {
                        if stopped { return nil }
                        let now = DynamicBatcher.now()
                        expired += takeExpired(now: now)
                        if !expired.isEmpty { return [] }
                        guard let oldest = pending.first else {
                            condition.wait()
                            continue
                        }
                        let due = oldest.enqueued &+ delay
                        // A lone request at a quiet instance has nobody to wait for.
                        let delayPassed = now >= due || (quiet && pending.count == 1)
                        if let size = Self.batchSize(waiting: pending.count, delayPassed: delayPassed, configuration: configuration) {
                            defer { pending.removeFirst(size) }
                            return Array(pending.prefix(size))
                        }
                        // Wake at the oldest request's due time, or earlier at a deadline.
                        let wake = pending.compactMap(\.deadline).reduce(due) { min($0, $1) }
                        let seconds = Double(wake &- min(wake, now)) / 1e9
                        _ = condition.wait(until: Date(timeIntervalSinceNow: seconds))
                    }
                }
                for entry in expired { entry.finish(.failure(.deadlineExpiredInQueue(instance: instance))) }
                guard let batch else { return }
                if !batch.isEmpty { runBatch(batch) }
            }
        }

        private func runBatch(_ batch: [Entry]) {
            let start = DynamicBatcher.now()
            let results = execute(batch.map(\.request))
            let compute = DynamicBatcher.now() &- start
            locked {
                executions += 1
                // Requests that arrived while this batch ran are waiting now.
                quiet = batch.count == 1 && pending.isEmpty
            }
            // One execution per observer (per model and method), counting its requests.
            var served: [ObjectIdentifier: (observer: any BatchExecutionObserver, count: Int)] = [:]
            for entry in batch {
                guard let observer = entry.observer else { continue }
                served[ObjectIdentifier(observer), default: (observer, 0)].count += 1
            }
            for (_, group) in served { group.observer.executed(inferences: group.count, computeNanoseconds: compute) }
            for (index, entry) in batch.enumerated() {
                let result: Result<Response, PluginHostError> = index < results.count ? results[index]
                    : .failure(.host("plugin '\(instance)' returned \(results.count) results for a batch of \(batch.count)"))
                entry.finish(result.map {
                    BatchedOutcome(value: $0, queueNanoseconds: start &- entry.enqueued, batchSize: batch.count)
                })
            }
        }
    }
}
