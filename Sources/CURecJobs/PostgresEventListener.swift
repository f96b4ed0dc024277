import Foundation
import Logging
import PostgresNIO
import Synchronization

/// Listens on its own connection for the events any daemon stores (`NOTIFY curec_job_events`,
/// the payload being the event's number), reads each and delivers it, in the order the
/// notifications arrived (commit order).
///
/// When the connection is lost it reconnects, pausing 0.1 s and doubling to 2 s between
/// attempts, and then delivers ``JobStoreChange/resynchronize``: events stored meanwhile
/// were not announced to it.
final class PostgresEventListener: Sendable {
    private let connections: PostgresConnections
    private let logger: Logger
    private let fetch: @Sendable (Int64) throws(JobError) -> JobEvent?
    private let deliver: @Sendable (JobStoreChange) -> Void
    /// Reads and delivers notifications one at a time.
    private let queue = DispatchQueue(label: "curec-job-events")
    private let state = Mutex<(connection: PostgresConnection?, stopped: Bool)>((nil, false))

    /// Connects and starts listening before returning, so no event stored after it is missed.
    init(connections: PostgresConnections, logger: Logger,
         fetch: @escaping @Sendable (Int64) throws(JobError) -> JobEvent?,
         deliver: @escaping @Sendable (JobStoreChange) -> Void) throws(JobError) {
        self.connections = connections
        self.logger = logger
        self.fetch = fetch
        self.deliver = deliver
        try listen()
    }

    private func listen() throws(JobError) {
        let connection = try connections.connect()
        connection.addListener(channel: PostgresJobStore.channel) { [weak self] _, notification in
            guard let self, let seq = Int64(notification.payload) else { return }
            self.queue.async { self.announce(seq: seq) }
        }
        do {
            _ = try connection.query("LISTEN \(unescaped: PostgresJobStore.channel)", logger: logger).wait()
        } catch {
            _ = try? connection.close().wait()
            throw .storeUnavailable("cannot listen for job events: \(PostgresConnections.describe(error))")
        }
        let stopped = state.withLock { state -> Bool in
            if !state.stopped { state.connection = connection }
            return state.stopped
        }
        if stopped {
            _ = try? connection.close().wait()
            return
        }
        connection.closeFuture.whenComplete { [weak self] _ in
            guard let self else { return }
            DispatchQueue.global().async { self.reconnect() }
        }
    }

    private func announce(seq: Int64) {
        if state.withLock({ $0.stopped }) { return }
        do {
            if let event = try fetch(seq) { deliver(.event(event)) }
        } catch {
            // The event is stored; listeners catch up when the store resynchronizes.
            logger.warning("a job event could not be read", metadata: ["seq": "\(seq)", "error": "\(error)"])
            deliver(.resynchronize)
        }
    }

    private func reconnect() {
        var pause = 0.1
        while !state.withLock({ $0.stopped }) {
            do {
                try listen()
                logger.info("listening for job events again")
                queue.async { [deliver] in deliver(.resynchronize) }
                return
            } catch {
                logger.warning("job event listener cannot reconnect; retrying",
                               metadata: ["error": "\(error)", "pause_s": "\(pause)"])
                Thread.sleep(forTimeInterval: pause)
                pause = min(2, pause * 2)
            }
        }
    }

    /// Stops listening and closes the connection; nothing is delivered after.
    func stop() {
        let connection = state.withLock { state -> PostgresConnection? in
            state.stopped = true
            defer { state.connection = nil }
            return state.connection
        }
        _ = try? connection?.close().wait()
    }
}
