import CURecRPC
import Synchronization

/// Turns the daemon's health NOT_SERVING while the job store fails, and back to what each
/// service's status was when the store answers again (unless the daemon is shutting down,
/// which keeps NOT_SERVING).
final class JobStoreHealth: Sendable {
    private struct State {
        /// The statuses before the failure; nil while the store answers.
        var before: [String: HealthService.ServingStatus]? = nil
        var shuttingDown = false
    }

    private let health: HealthService
    private let state = Mutex(State())

    init(health: HealthService) {
        self.health = health
    }

    func storeFailed() {
        state.withLock { state in
            if state.before == nil { state.before = health.statuses }
        }
        health.markAllNotServing()
    }

    func storeAnswered() {
        let restored = state.withLock { state -> [String: HealthService.ServingStatus] in
            defer { state.before = nil }
            return state.shuttingDown ? [:] : state.before ?? [:]
        }
        for (service, status) in restored { health.setStatus(status, for: service) }
    }

    func shutdownBegan() {
        state.withLock { $0.shuttingDown = true }
    }
}
