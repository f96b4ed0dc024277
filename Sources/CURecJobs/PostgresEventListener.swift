import Foundation
import Logging
import PostgresNIO
import Synchronization

/// Listens on its own connection to one notification channel (`LISTEN <channel>`) and hands
/// each payload to `handle`, one at a time, in the order the notifications arrived (commit
/// order).
///
/// When the connection is lost it reconnects, pausing 0.1 s and doubling to 2 s between
/// attempts, and then calls `resynchronize`: notifications sent meanwhile were not delivered
/// to it, so what the owner follows should be read again.
final class PostgresEventListener: Sendable {
    private let connections: PostgresConnections
    private let logger: Logger
    private let channel: String
    private let handle: @Sendable (String) -> Void
    private let resynchronize: @Sendable () -> Void
    /// Handles notifications one at a time.
    private let queue: DispatchQueue
    private let state = Mutex<(connection: PostgresConnection?, stopped: Bool)>((nil, false))

    /// Connects and starts listening before returning, so no notification sent after it is
    /// missed. `channel` is one of this module's fixed names (never input).
    init(connections: PostgresConnections, channel: String, logger: Logger,
         handle: @escaping @Sendable (String) -> Void,
         resynchronize: @escaping @Sendable () -> Void) throws(JobError) {
        self.connections = connections
        self.channel = channel
        self.logger = logger
        self.handle = handle
        self.resynchronize = resynchronize
        queue = DispatchQueue(label: "curec-listen-\(channel)")
        try listen()
    }

    private func listen() throws(JobError) {
        let connection = try connections.connect()
        connection.addListener(channel: channel) { [weak self] _, notification in
            guard let self else { return }
            let payload = notification.payload
            self.queue.async {
                if self.state.withLock({ $0.stopped }) { return }
                self.handle(payload)
            }
        }
        do {
            _ = try connection.query("LISTEN \(unescaped: channel)", logger: logger).wait()
        } catch {
            _ = try? connection.close().wait()
            throw .storeUnavailable("cannot listen on \(channel): \(PostgresConnections.describe(error))")
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

    private func reconnect() {
        var pause = 0.1
        while !state.withLock({ $0.stopped }) {
            do {
                try listen()
                logger.info("listening again", metadata: ["channel": "\(channel)"])
                queue.async { [resynchronize] in resynchronize() }
                return
            } catch {
                logger.warning("notification listener cannot reconnect; retrying",
                               metadata: ["channel": "\(channel)", "error": "\(error)", "pause_s": "\(pause)"])
                Thread.sleep(forTimeInterval: pause)
                pause = min(2, pause * 2)
            }
        }
    }

    /// Stops listening and closes the connection; nothing is handled after.
    func stop() {
        let connection = state.withLock { state -> PostgresConnection? in
            state.stopped = true
            defer { state.connection = nil }
            return state.connection
        }
        _ = try? connection?.close().wait()
    }
}
