import CURecRPCProtos
import Synchronization

/// `grpc.health.v1.Health`: per-service serving status, with `Check` and `Watch`.
///
/// The empty service name stands for the whole server. `Check` on a name that was never
/// set fails with `NOT_FOUND`; `Watch` on it streams `SERVICE_UNKNOWN` until it is set.
public final class HealthService: RPCService {
    public typealias ServingStatus = Grpc_Health_V1_HealthCheckResponse.ServingStatus

    private struct State {
        var statuses: [String: ServingStatus] = [:]
        var watchers: [String: [Int: AsyncStream<ServingStatus>.Continuation]] = [:]
        var nextWatcherID = 0
    }

    private let state = Mutex(State())

    /// Creates the service with the whole server (`""`) SERVING.
    public init() {
        setStatus(.serving, for: "")
    }

    /// Sets the status of `service` and notifies its watchers.
    public func setStatus(_ status: ServingStatus, for service: String) {
        let watchers = state.withLock { state -> [AsyncStream<ServingStatus>.Continuation] in
            state.statuses[service] = status
            return Array(state.watchers[service, default: [:]].values)
        }
        for watcher in watchers { watcher.yield(status) }
    }

    /// The status of `service`, or nil if it was never set.
    public func status(of service: String) -> ServingStatus? {
        state.withLock { $0.statuses[service] }
    }

    /// Marks every known service NOT_SERVING (used when the server starts draining).
    public func markAllNotServing() {
        let names = state.withLock { Array($0.statuses.keys) }
        for name in names { setStatus(.notServing, for: name) }
    }

    public func register(into router: inout RPCRouter) {
        router.registerInlineUnary(
            service: "grpc.health.v1.Health", method: "Check",
            request: Grpc_Health_V1_HealthCheckRequest.self, response: Grpc_Health_V1_HealthCheckResponse.self
        ) { [self] request, _ in
            guard let status = self.status(of: request.service) else {
                throw RPCError(.notFound, "unknown service '\(request.service)': no health status is registered for it")
            }
            return .with { $0.status = status }
        }
        router.registerServerStreaming(
            service: "grpc.health.v1.Health", method: "Watch",
            request: Grpc_Health_V1_HealthCheckRequest.self, response: Grpc_Health_V1_HealthCheckResponse.self
        ) { [self] request, writer, _ in
            let (updates, continuation) = AsyncStream.makeStream(of: ServingStatus.self, bufferingPolicy: .bufferingNewest(8))
            let watcherID = self.state.withLock { state -> Int in
                let id = state.nextWatcherID
                state.nextWatcherID += 1
                state.watchers[request.service, default: [:]][id] = continuation
                continuation.yield(state.statuses[request.service] ?? .serviceUnknown)
                return id
            }
            defer {
                _ = self.state.withLock { $0.watchers[request.service]?.removeValue(forKey: watcherID) }
            }
            var last: ServingStatus? = nil
            for await status in updates {
                try Task.checkCancellation()
                if status == last { continue }
                last = status
                try await writer.send(.with { $0.status = status })
            }
            throw CancellationError()
        }
    }
}
