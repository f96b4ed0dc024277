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

    private let factory: DaemonMetricsFactory
    private let table = ManagedAtomic(Table([:]))

    init(factory: DaemonMetricsFactory) { self.factory = factory }

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

    init(model: String, method: String, factory: DaemonMetricsFactory) {
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
    }

    /// One request ended: its total time, the part of it spent waiting for its execution, and
    /// whether it succeeded.
    public func requestEnded(succeeded: Bool, requestNanoseconds: UInt64, queueNanoseconds: UInt64) {
        (succeeded ? success : failure).increment()
        requestDuration.recordNanoseconds(Int64(clamping: requestNanoseconds))
        queueDuration.recordNanoseconds(Int64(clamping: queueNanoseconds))
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
