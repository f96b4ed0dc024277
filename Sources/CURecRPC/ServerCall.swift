import CNGHTTP2

/// One gRPC call on one HTTP/2 stream, as seen from the connection's loop thread.
///
/// It collects the request headers, routes the call, reassembles request messages and
/// drives the response (headers, DATA, trailers) from the ``CallChannel`` it shares with
/// the handler. Confined to the connection's loop.
final class ServerCall {
    let streamID: Int32
    let channel: CallChannel

    // Request head, filled by header callbacks.
    var path: String = ""
    var method: String = ""
    var contentType: String = ""
    var timeoutText: String? = nil
    var encoding: String? = nil
    var metadata = Metadata()
    var headerBytes = 0
    var badHeader: String? = nil
    /// The `authorization` header, kept out of the metadata handlers see.
    var authorization: String? = nil

    var route: Route? = nil
    /// When the call was admitted (monotonic ns), kept only when its route has a recorder.
    var admittedNanos: UInt64 = 0
    var deframer: MessageDeframer
    /// Request messages held until END_STREAM for unary and server-streaming calls.
    var pendingRequest: [UInt8]? = nil
    var requestCount = 0
    var context: ServerContext? = nil
    var deadlineTimer: UInt64? = nil

    /// The handler was started (or the call was answered without one).
    var dispatched = false
    /// Response headers were submitted.
    var headersSent = false
    /// The final status was submitted (as trailers or a trailers-only response).
    var completed = false
    /// nghttp2 is waiting for `resume_data` on this stream.
    var dataDeferred = false
    /// Flow-control credit held back while the handler is behind.
    var unconsumedBytes = 0
    /// Bytes of this call counted in the connection's ``ConnectionBuffer`` by the loop
    /// (its partial message and a unary request waiting for END_STREAM).
    var heldBytes = 0
    /// The request header block was complete.
    var headersComplete = false
    /// The client ended its side of the stream.
    var requestEnded = false
    /// The handler's task has started and not yet returned.
    var handlerRunning = false
    /// Monotonic times (ns): stream opened, last request DATA, last response progress.
    let openedAt: UInt64
    var lastReceivedAt: UInt64
    var lastSentAt: UInt64

    init(streamID: Int32, maxMessageBytes: Int, buffer: ConnectionBuffer?, wakeLoop: @escaping @Sendable () -> Void) {
        self.streamID = streamID
        self.deframer = MessageDeframer(maxMessageBytes: maxMessageBytes)
        self.channel = CallChannel(buffer: buffer, wakeLoop: wakeLoop)
        let now = MonotonicClock.nanoseconds()
        self.openedAt = now
        self.lastReceivedAt = now
        self.lastSentAt = now
    }

    /// Whether the handler reads requests as a stream (so messages go straight to it).
    var streamsRequests: Bool {
        guard let route else { return false }
        if case .streamingRequests = route.handler { return true }
        return false
    }
}
