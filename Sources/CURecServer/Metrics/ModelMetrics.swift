import Atomics
import CoreMetrics
import Foundation
import Prometheus

/// Per model (plugin instance) and method (`score`, `recommend`, `reward`, ...): requests that
/// succeeded and failed, the request, queue and compute duration histograms, executions (calls
/// into the model) and inferences (users or pairs computed by them); the achieved batch size
/// is inferences / executions.
///
/// Series are looked up in an immutable table behind an atomic reference: a lookup is a load,
/// never a lock. A new (model, method) pair copies the table once. Only models the daemon has
/// loaded get series, so a client cannot make new ones by naming models.
///
/// Every series also keeps its totals in atomics (``ModelMethodMetrics/totals``), whether or
/// not Prometheus is exported: the inference protocol's `ModelStatistics` reads those, so the
/// protocol and `/metrics` report the same numbers.
public final class ModelMetrics: Sendable {
    /// One table of series, replaced (never changed) when a pair is added.
    final class Table: AtomicReference, Sendable {
        let series: [Key: ModelMethodMetrics]
        init(_ series: [Key: ModelMethodMetrics]) { self.series = series }
    }

    struct Key: Hashable, Sendable {
        let model: String
        let method: String
    }

    private let factory: any MetricsFactory
    private let table = ManagedAtomic(Table([:]))

    init(factory: any MetricsFactory) { self.factory = factory }

    /// Series that keep only their totals (for `ModelStatistics`) when metrics are not exported.
    public static func unexported() -> ModelMetrics { ModelMetrics(factory: NOOPMetricsHandler.instance) }

    /// The totals of `model` over all its methods (zero before its first request).
    public func totals(model: String) -> ModelTotals {
        var sum = ModelTotals()
        for (key, series) in table.load(ordering: .acquiring).series where key.model == model {
            sum.add(series.totals.snapshot())
        }
        return sum
    }

    /// The series of `method` on `model` (made on first use).
    public func series(model: String, method: String) -> ModelMethodMetrics {
        let key = Key(model: model, method: method)
        var current = table.load(ordering: .acquiring)
        if let found = current.series[key] { return found }
        let made = ModelMethodMetrics(model: model, method: method, factory: factory)
        while true {
            if let found = current.series[key] { return found }
            var next = current.series
            next[key] = made
            let (exchanged, original) = table.compareExchange(expected: current, desired: Table(next), ordering: .acquiringAndReleasing)
            if exchanged { return made }
            current = original
        }
    }
}

/// The series of one model and method.
public final class ModelMethodMetrics: Sendable {
    private let success: CoreMetrics.Counter
    private let failure: CoreMetrics.Counter
    private let executions: CoreMetrics.Counter
    private let inferences: CoreMetrics.Counter
    private let requestDuration: CoreMetrics.Timer
    private let queueDuration: CoreMetrics.Timer
    private let computeDuration: CoreMetrics.Timer
    /// The same events summed, for `ModelStatistics`.
    let totals = ModelTotalCounters()

    init(model: String, method: String, factory: any MetricsFactory) {
        let dimensions = [("model", model), ("method", method)]
        success = Counter(label: "curec_model_request_success_total", dimensions: dimensions, factory: factory)
        failure = Counter(label: "curec_model_request_failure_total", dimensions: dimensions, factory: factory)
        executions = Counter(label: "curec_model_executions_total", dimensions: dimensions, factory: factory)
        inferences = Counter(label: "curec_model_inferences_total", dimensions: dimensions, factory: factory)
        requestDuration = Timer(label: "curec_model_request_duration_seconds", dimensions: dimensions, factory: factory)
        queueDuration = Timer(label: "curec_model_queue_duration_seconds", dimensions: dimensions, factory: factory)
        computeDuration = Timer(label: "curec_model_compute_duration_seconds", dimensions: dimensions, factory: factory)
    }

    /// One execution of the model that computed `inferences` results (users scored, pairs
    /// rewarded) for the requests it served, taking `computeNanoseconds`.
    public func executed(inferences count: Int, computeNanoseconds: UInt64) {
        executions.increment()
        inferences.increment(by: Int64(count))
        computeDuration.recordNanoseconds(Int64(clamping: computeNanoseconds))
        totals.executed(inferences: count, computeNanoseconds: computeNanoseconds)
    }

    /// One request ended: its total time, the part of it spent waiting for its execution, and
    /// whether it succeeded.
    public func requestEnded(succeeded: Bool, requestNanoseconds: UInt64, queueNanoseconds: UInt64) {
        (succeeded ? success : failure).increment()
        requestDuration.recordNanoseconds(Int64(clamping: requestNanoseconds))
        queueDuration.recordNanoseconds(Int64(clamping: queueNanoseconds))
        totals.requestEnded(succeeded: succeeded, requestNanoseconds: requestNanoseconds, queueNanoseconds: queueNanoseconds)
    }

    /// Runs one request of one inference on the model: `body` is the execution. Records the
    /// request (queue time: from `requestStart` to the execution) and the execution.
    public func measure<T>(since requestStart: UInt64, inferences count: Int = 1,
                           _ body: () throws -> T) throws -> T {
        let executionStart = MonotonicClock.nanoseconds()
        do {
            let result = try body()
            let end = MonotonicClock.nanoseconds()
            executed(inferences: count, computeNanoseconds: end &- executionStart)
            requestEnded(succeeded: true, requestNanoseconds: end &- requestStart, queueNanoseconds: executionStart &- requestStart)
            return result
        } catch {
            let end = MonotonicClock.nanoseconds()
            requestEnded(succeeded: false, requestNanoseconds: end &- requestStart, queueNanoseconds: executionStart &- requestStart)
            throw error
        }
    }
}

extension Optional where Wrapped == ModelMethodMetrics {
    /// Runs `body` as one execution, measured when there are metrics.
    public func measure<T>(since requestStart: UInt64, inferences count: Int = 1, _ body: () throws -> T) throws -> T {
        guard let series = self else { return try body() }
        return try series.measure(since: requestStart, inferences: count, body)
    }

    /// Records one request of one execution that began at `executionStart` and has just
    /// ended (an execution that completes on another thread), when there are metrics.
    public func executionEnded(since requestStart: UInt64, executionStart: UInt64, inferences count: Int = 1,
                               succeeded: Bool) {
        guard let series = self else { return }
        let end = MonotonicClock.nanoseconds()
        if succeeded { series.executed(inferences: count, computeNanoseconds: end &- executionStart) }
        series.requestEnded(succeeded: succeeded, requestNanoseconds: end &- requestStart,
                            queueNanoseconds: executionStart &- requestStart)
    }

    /// ``measure(since:inferences:_:)`` of an execution that suspends (a call to a plugin's
    /// worker process): the execution is the time until it resumes.
    public func measureSuspending<T>(since requestStart: UInt64, inferences count: Int = 1,
                                     _ body: () async throws -> T) async throws -> T {
        guard let series = self else { return try await body() }
        let executionStart = MonotonicClock.nanoseconds()
        do {
            let result = try await body()
            let end = MonotonicClock.nanoseconds()
            series.executed(inferences: count, computeNanoseconds: end &- executionStart)
            series.requestEnded(succeeded: true, requestNanoseconds: end &- requestStart,
                                queueNanoseconds: executionStart &- requestStart)
            return result
        } catch {
            let end = MonotonicClock.nanoseconds()
            series.requestEnded(succeeded: false, requestNanoseconds: end &- requestStart,
                                queueNanoseconds: executionStart &- requestStart)
            throw error
        }
    }
}

/// What a model did since the daemon started, summed: the numbers of `ModelStatistics`.
public struct ModelTotals: Sendable, Equatable {
    public var successCount: UInt64 = 0
    public var successNanoseconds: UInt64 = 0
    public var failureCount: UInt64 = 0
    public var failureNanoseconds: UInt64 = 0
    /// Requests that reached the queue (every request that ended) and their waiting time.
    public var queueCount: UInt64 = 0
    public var queueNanoseconds: UInt64 = 0
    public var executionCount: UInt64 = 0
    public var computeNanoseconds: UInt64 = 0
    public var inferenceCount: UInt64 = 0
    /// Milliseconds since the UNIX epoch when the last request ended; 0 before any.
    public var lastRequestMilliseconds: UInt64 = 0

    public init() {}

    mutating func add(_ other: ModelTotals) {
        successCount &+= other.successCount
        successNanoseconds &+= other.successNanoseconds
        failureCount &+= other.failureCount
        failureNanoseconds &+= other.failureNanoseconds
        queueCount &+= other.queueCount
        queueNanoseconds &+= other.queueNanoseconds
        executionCount &+= other.executionCount
        computeNanoseconds &+= other.computeNanoseconds
        inferenceCount &+= other.inferenceCount
        lastRequestMilliseconds = max(lastRequestMilliseconds, other.lastRequestMilliseconds)
    }
}

/// The totals of one series as relaxed atomic adds: no lock on the request path.
final class ModelTotalCounters: Sendable {
    private let successCount = ManagedAtomic<UInt64>(0)
    private let successNanoseconds = ManagedAtomic<UInt64>(0)
    private let failureCount = ManagedAtomic<UInt64>(0)
    private let failureNanoseconds = ManagedAtomic<UInt64>(0)
    private let queueNanoseconds = ManagedAtomic<UInt64>(0)
    private let executionCount = ManagedAtomic<UInt64>(0)
    private let computeNanoseconds = ManagedAtomic<UInt64>(0)
    private let inferenceCount = ManagedAtomic<UInt64>(0)
    private let lastRequestMilliseconds = ManagedAtomic<UInt64>(0)

    func executed(inferences count: Int, computeNanoseconds nanoseconds: UInt64) {
        executionCount.wrappingIncrement(ordering: .relaxed)
        inferenceCount.wrappingIncrement(by: UInt64(max(0, count)), ordering: .relaxed)
        computeNanoseconds.wrappingIncrement(by: nanoseconds, ordering: .relaxed)
    }

    func requestEnded(succeeded: Bool, requestNanoseconds: UInt64, queueNanoseconds queued: UInt64) {
        if succeeded {
            successCount.wrappingIncrement(ordering: .relaxed)
            successNanoseconds.wrappingIncrement(by: requestNanoseconds, ordering: .relaxed)
        } else {
            failureCount.wrappingIncrement(ordering: .relaxed)
            failureNanoseconds.wrappingIncrement(by: requestNanoseconds, ordering: .relaxed)
        }
        queueNanoseconds.wrappingIncrement(by: queued, ordering: .relaxed)
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        lastRequestMilliseconds.store(UInt64(now.tv_sec) &* 1000 &+ UInt64(now.tv_nsec) / 1_000_000, ordering: .relaxed)
    }

    func snapshot() -> ModelTotals {
        var totals = ModelTotals()
        totals.successCount = successCount.load(ordering: .relaxed)
        totals.successNanoseconds = successNanoseconds.load(ordering: .relaxed)
        totals.failureCount = failureCount.load(ordering: .relaxed)
        totals.failureNanoseconds = failureNanoseconds.load(ordering: .relaxed)
        totals.queueCount = totals.successCount &+ totals.failureCount
        totals.queueNanoseconds = queueNanoseconds.load(ordering: .relaxed)
        totals.executionCount = executionCount.load(ordering: .relaxed)
        totals.computeNanoseconds = computeNanoseconds.load(ordering: .relaxed)
        totals.inferenceCount = inferenceCount.load(ordering: .relaxed)
        totals.lastRequestMilliseconds = lastRequestMilliseconds.load(ordering: .relaxed)
        return totals
    }
}

/// Monotonic nanoseconds for durations.
public enum MonotonicClock {
    @inline(__always)
    public static func nanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }
}
