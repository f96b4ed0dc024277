import Atomics
import CoreMetrics
import CURecRPC
import Prometheus

/// Per gRPC method: calls that succeeded and failed (by status code), calls in flight, and the
/// request and handler duration histograms. The RPC server asks for one recorder per routed
/// method at start (``RPCCallObserver``).
public final class CallMetrics: RPCCallObserver {
    private let factory: DaemonMetricsFactory

    init(factory: DaemonMetricsFactory) { self.factory = factory }

    public func recorder(for method: RPCMethodDescriptor) -> any RPCMethodRecorder {
        MethodRecorder(service: method.service, method: method.name, factory: factory)
    }
}

/// The series of one gRPC method. Every update is an atomic add or a per-series histogram
/// update; a failure counter is made on the first failure with its code (lock-free).
final class MethodRecorder: RPCMethodRecorder {
    private let dimensions: [(String, String)]
    private let factory: DaemonMetricsFactory
    private let success: CoreMetrics.Counter
    private let inFlight: CoreMetrics.Meter
    private let requestDuration: CoreMetrics.Timer
    private let handlerDuration: CoreMetrics.Timer
    /// Failure counters by status code value (1...16), made when first needed.
    private let failures: [ManagedAtomicLazyReference<CoreMetrics.Counter>]

    init(service: String, method: String, factory: DaemonMetricsFactory) {
        let dimensions = [("service", service), ("method", method)]
        self.dimensions = dimensions
        self.factory = factory
        success = Counter(label: "curec_rpc_request_success_total", dimensions: dimensions, factory: factory)
        inFlight = Meter(label: "curec_rpc_in_flight", dimensions: dimensions, factory: factory)
        requestDuration = Timer(label: "curec_rpc_request_duration_seconds", dimensions: dimensions, factory: factory)
        handlerDuration = Timer(label: "curec_rpc_handler_duration_seconds", dimensions: dimensions, factory: factory)
        failures = (0...16).map { _ in ManagedAtomicLazyReference<CoreMetrics.Counter>() }
    }

    func handlerStarted() { inFlight.increment() }

    func handlerFinished(code: StatusCode, requestNanoseconds: UInt64, handlerNanoseconds: UInt64) {
        inFlight.decrement()
        requestDuration.recordNanoseconds(Int64(clamping: requestNanoseconds))
        handlerDuration.recordNanoseconds(Int64(clamping: handlerNanoseconds))
        if code == .ok {
            success.increment()
        } else {
            failureCounter(code).increment()
        }
    }

    private func failureCounter(_ code: StatusCode) -> CoreMetrics.Counter {
        let slot = failures[min(max(code.rawValue, 0), failures.count - 1)]
        if let counter = slot.load() { return counter }
        let made = Counter(label: "curec_rpc_request_failure_total",
                           dimensions: dimensions + [("code", code.description)], factory: factory)
        return slot.storeIfNilThenLoad(made)
    }
}
