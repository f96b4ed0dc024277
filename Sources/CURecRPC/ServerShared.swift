import Logging
import Synchronization

/// What every loop of one server shares: configuration, routes, logger and run state.
final class ServerShared: Sendable {
    let configuration: RPCServerConfiguration
    let router: RPCRouter
    let logger: Logger
    /// Set once graceful shutdown begins; new calls are then refused with UNAVAILABLE.
    let draining = Atomic<Bool>(false)
    /// Open connections over all loops, for the connection limit.
    let openConnections = Atomic<Int>(0)
    /// Open connections per peer address.
    let peers: PeerConnectionLimiter

    init(configuration: RPCServerConfiguration, router: RPCRouter, logger: Logger) {
        self.configuration = configuration
        var router = router
        if let observer = configuration.callObserver { router.attach(observer) }
        self.router = router
        self.logger = logger
        self.peers = PeerConnectionLimiter(perPeer: configuration.maxConnectionsPerPeer)
    }

    /// Validates a call's request headers and routes it.
    ///
    /// Returns nil when the call may proceed (its route and context are then set), or the
    /// response to send instead of running a handler.
    func admit(call: ServerCall, connection: HTTP2Connection) -> EarlyResponse? {
        guard call.method == "POST" else { return .httpStatus(405) }
        guard call.contentType.hasPrefix("application/grpc") else { return .httpStatus(415) }
        let subtype = call.contentType.dropFirst("application/grpc".count)
        guard subtype.isEmpty || subtype == "+proto" || subtype.hasPrefix(";") || subtype.hasPrefix("+proto;") else {
            return .grpcStatus(RPCStatus(
                code: .internal,
                message: "content-type '\(call.contentType)' is not supported; use application/grpc or application/grpc+proto"),
                Metadata())
        }
        if let badHeader = call.badHeader {
            return .grpcStatus(RPCStatus(code: .internal, message: badHeader), Metadata())
        }
        if let encoding = call.encoding, encoding != "identity" {
            var trailers = Metadata()
            trailers.add("grpc-accept-encoding", "identity")
            return .grpcStatus(RPCStatus(
                code: .unimplemented,
                message: "grpc-encoding '\(encoding)' is not supported by this server; supported: identity"),
                trailers)
        }
        guard let route = router.route(for: call.path) else {
            return .grpcStatus(unknownMethodStatus(call.path), Metadata())
        }
        if let authorizer = configuration.security.authorizer,
           let denial = authorizer.authorize(method: route.method, authorization: call.authorization,
                                             listener: connection.listener) {
            return .grpcStatus(denial, Metadata())
        }
        if draining.load(ordering: .relaxed) {
            return .grpcStatus(RPCStatus(code: .unavailable, message: "the server is shutting down"), Metadata())
        }
        var deadline: ContinuousClock.Instant? = nil
        if let timeoutText = call.timeoutText {
            guard let nanos = WireFormats.parseTimeout(timeoutText) else {
                return .grpcStatus(RPCStatus(
                    code: .internal,
                    message: "malformed grpc-timeout '\(timeoutText)': expected 1-8 digits and a unit of H, M, S, m, u or n"),
                    Metadata())
            }
            let capped = min(nanos, UInt64(Int64.max / 2))
            deadline = ContinuousClock.now.advanced(by: .nanoseconds(Int64(capped)))
            connection.armDeadline(call, nanos: capped)
        } else if let fallback = configuration.defaultDeadline,
                  !configuration.defaultDeadlineExemptPaths.contains(call.path) {
            // No grpc-timeout: the server's own bound, so no call runs forever.
            let nanos = RPCServerConfiguration.nanoseconds(fallback)
            deadline = ContinuousClock.now.advanced(by: .nanoseconds(Int64(nanos)))
            connection.armDeadline(call, nanos: nanos)
        }
        call.route = route
        if route.recorder != nil { call.admittedNanos = monotonicNanoseconds() }
        call.context = ServerContext(
            path: call.path, requestMetadata: call.metadata, deadline: deadline, channel: call.channel)
        return nil
    }

    private func unknownMethodStatus(_ path: String) -> RPCStatus {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        if parts.count == 3, parts[0].isEmpty {
            let service = String(parts[1])
            if router.serves(service: service) {
                return RPCStatus(code: .unimplemented, message: "method '\(parts[2])' is not implemented by service '\(service)'")
            }
            return RPCStatus(code: .unimplemented, message: "service '\(service)' is not served here")
        }
        return RPCStatus(code: .unimplemented, message: "'\(path)' is not a gRPC method path (expected /package.Service/Method)")
    }
}
