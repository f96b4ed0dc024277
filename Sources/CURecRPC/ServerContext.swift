/// What a handler knows about the call it serves, and how it adds response metadata.
public struct ServerContext: Sendable {
    /// The full method path, e.g. `/grpc.health.v1.Health/Check`.
    public let path: String
    /// Custom metadata the client sent (reserved gRPC and HTTP/2 headers excluded).
    public let requestMetadata: Metadata
    /// When the client stops waiting, from `grpc-timeout`; nil if it sent none.
    ///
    /// When the deadline passes the call ends with `DEADLINE_EXCEEDED` and the handler's
    /// task is cancelled.
    public let deadline: ContinuousClock.Instant?

    let channel: CallChannel

    /// Adds metadata to the response headers. Only effective before the first response
    /// message is sent (or, for a call that sends none, before it ends).
    public func addInitialMetadata(_ metadata: Metadata) {
        channel.addInitialMetadata(metadata)
    }

    /// Adds metadata sent in the trailers with the final status.
    public func addTrailingMetadata(_ metadata: Metadata) {
        channel.addTrailingMetadata(metadata)
    }

    /// True once the call was cancelled by the client, its deadline or server shutdown.
    public var isCancelled: Bool { channel.isCancelled }

    /// True once work for this call is of no use: the call was cancelled (client reset or
    /// disconnect, shutdown) or its deadline passed. Long computations (generation between
    /// tokens, batches of reasons) poll it and stop.
    public var shouldStop: Bool {
        if channel.isCancelled { return true }
        guard let deadline else { return false }
        return ContinuousClock.now >= deadline
    }
}
