import Foundation

/// Sees every routed call of a server, for metrics.
///
/// The server asks for one ``RPCMethodRecorder`` per routed method when it is created and
/// keeps it beside the route, so a call reaches its recorder without a lookup or a lock.
/// Recorders run on the I/O threads and in handler tasks: they must not block.
public protocol RPCCallObserver: Sendable {
    /// The recorder of calls to `method`; asked once per routed method.
    func recorder(for method: RPCMethodDescriptor) -> any RPCMethodRecorder
}

/// Records the calls of one method.
public protocol RPCMethodRecorder: Sendable {
    /// A call's handler is about to run (its request headers, and for unary-request methods its
    /// request message, have arrived).
    func handlerStarted()
    /// The handler returned. `code` is the status it ended the call with; `requestNanoseconds`
    /// runs from the request headers to the handler's return, `handlerNanoseconds` is the
    /// handler's own time.
    func handlerFinished(code: StatusCode, requestNanoseconds: UInt64, handlerNanoseconds: UInt64)
}

/// Monotonic nanoseconds for call timing.
@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}
