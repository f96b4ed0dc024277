import CURecRPCProtos
import Synchronization

/// `grpc.health.v1.Health`: per-service serving status, with `Check` and `Watch`.
///
/// The empty service name stands for the whole server. `Check` on a name that was never
/// set fails with `NOT_FOUND`; `Watch` on it streams `SERVICE_UNKNOWN` until it is set.
public final class HealthService: Grpc_Health_V1_HealthHandler {
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

    /// The status of every service that has one.
    public var statuses: [String: ServingStatus] {
        state.withLock { $0.statuses }
    }

    /// Marks every known service NOT_SERVING (used when the server starts draining).
    public func markAllNotServing() {
        let names = state.withLock { Array($0.statuses.keys) }
        for name in names { setStatus(.notServing, for: name) }
    }

    /// `Check`: the status of one service; NOT_FOUND for a name that was never set.
    public func check(_ request: Grpc_Health_V1_HealthCheckRequest, context: ServerContext) throws -> Grpc_Health_V1_HealthCheckResponse {
        guard let status = status(of: request.service) else {
            throw RPCError(.notFound, "unknown service '\(request.service)': no health status is registered for it")
        }
        return .with { $0.status = status }
    }

    /// `Watch`: the status of one service now and at every change, until the call ends.
    public func watch(
        _ request: Grpc_Health_V1_HealthCheckRequest, responses: ResponseWriter<Grpc_Health_V1_HealthCheckResponse>,
        context: ServerContext
    ) async throws {
        let (updates, continuation) = AsyncStream.makeStream(of: ServingStatus.self, bufferingPolicy: .bufferingNewest(8))
        let watcherID = state.withLock { state -> Int in
            let id = state.nextWatcherID
            state.nextWatcherID += 1
            state.watchers[request.service, default: [:]][id] = continuation
            continuation.yield(state.statuses[request.service] ?? .serviceUnknown)
            return id
        }
        defer {
            _ = state.withLock { $0.watchers[request.service]?.removeValue(forKey: watcherID) }
        }
        var last: ServingStatus? = nil
        for await status in updates {
            try Task.checkCancellation()
            if status == last { continue }
            last = status
            try await responses.send(.with { $0.status = status })
        }
        throw CancellationError()
    }
}
