import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A gRPC server over HTTP/2, cleartext (h2c with prior knowledge) or TLS (ALPN h2), built on
/// libnghttp2 and OpenSSL.
///
/// The server runs one event-loop thread per configured loop, each with its own
/// `SO_REUSEPORT` listening socket, so the kernel spreads connections across cores. Inline
/// handlers run on those threads; all others run as Swift tasks.
///
/// ```swift
/// var router = RPCRouter()
/// router.register(HealthService())
/// let server = try RPCServer(configuration: .init(), router: router, logger: logger)
/// let port = try server.start()
/// server.waitUntilStopped()
/// ```
public final class RPCServer: Sendable {
    private let shared: ServerShared
    private let loops: [EventLoop]
    private let acceptors = Mutex<[LoopAcceptor]>([])
    private let stoppedLoops = DispatchGroup()
    private let portState = Mutex<Int?>(nil)

    /// Creates a server; nothing is bound until ``start()``.
    public init(configuration: RPCServerConfiguration, router: RPCRouter, logger: Logger) throws {
        self.shared = ServerShared(configuration: configuration, router: router, logger: logger)
        self.loops = try (0..<max(1, configuration.eventLoopCount)).map { try EventLoop(index: $0) }
    }

    /// The port the server listens on, once started.
    public var port: Int? { portState.withLock { $0 } }

    /// Connections open now, over every listener.
    public var openConnectionCount: Int { shared.openConnections.load(ordering: .relaxed) }

    /// Binds the listening sockets and starts the event loops; returns the bound port
    /// (useful when the configured port is 0).
    @discardableResult
    public func start() throws -> Int {
        signal(SIGPIPE, SIG_IGN)
        let configuration = shared.configuration
        var port = configuration.port
        var listeners: [Int32] = []
        do {
            for _ in loops {
                let fd = try ListeningSocket.open(host: configuration.host, port: port)
                listeners.append(fd)
                if port == 0 { port = try ListeningSocket.boundPort(fd) }
            }
        } catch {
            listeners.forEach { close($0) }
            throw error
        }
        let security = configuration.security
        let tls: TLSServerContext?
        var adminAcceptor: LoopAcceptor? = nil
        do {
            tls = try security.tls.map { settings throws(TLSError) in try TLSServerContext(settings: settings) }
            if let path = security.adminSocketPath {
                let fd = try ListeningSocket.openUnix(path: path)
                adminAcceptor = LoopAcceptor(loop: loops[0], shared: shared, listenerFD: fd, role: .admin)
            }
        } catch let error as TLSError {
            listeners.forEach { close($0) }
            throw RPCServerError.tls(error)
        } catch {
            listeners.forEach { close($0) }
            throw error
        }
        portState.withLock { $0 = port }
        for (loop, listener) in zip(loops, listeners) {
            let acceptor = LoopAcceptor(loop: loop, shared: shared, listenerFD: listener, tls: tls)
            let extra = loop.index == 0 ? adminAcceptor : nil
            extra?.sibling = acceptor
            acceptor.sibling = extra
            acceptors.withLock { $0.append(contentsOf: [acceptor] + (extra.map { [$0] } ?? [])) }
            stoppedLoops.enter()
            let group = stoppedLoops
            let logger = shared.logger
            let thread = Thread {
                do {
                    try acceptor.start()
                    try extra?.start()
                } catch {
                    logger.error("event loop failed to start", metadata: ["error": "\(error)"])
                }
                loop.run()
                group.leave()
            }
            thread.name = "curec-io-\(loop.index)"
            thread.stackSize = 8 * 1024 * 1024
            thread.start()
        }
        shared.logger.info("serving gRPC", metadata: [
            "address": "\(configuration.host):\(port)", "event_loops": "\(loops.count)",
            "transport": "\(security.tls == nil ? "h2c (cleartext)" : security.tls?.clientCAFile == nil ? "TLS" : "mutual TLS")"])
        if let path = security.adminSocketPath {
            shared.logger.info("serving administration", metadata: ["socket": "\(path)"])
        }
        return port
    }

    /// Begins graceful shutdown: stop accepting, send GOAWAY, let calls in flight finish
    /// within the configured drain timeout, then stop the loops. Safe from any thread;
    /// calling it again has no further effect.
    public func beginGracefulShutdown() {
        guard !shared.draining.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let drainNanos = RPCServerConfiguration.nanoseconds(shared.configuration.drainTimeout)
        shared.logger.info("shutting down", metadata: ["drain_timeout": "\(shared.configuration.drainTimeout)"])
        for acceptor in acceptors.withLock({ $0 }) {
            acceptor.loop.execute { acceptor.beginShutdown(drainNanos: drainNanos) }
        }
    }

    /// Blocks the calling thread until every event loop has stopped.
    public func waitUntilStopped() {
        stoppedLoops.wait()
    }

    /// Suspends until every event loop has stopped.
    public func stopped() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            stoppedLoops.notify(queue: .global()) { continuation.resume() }
        }
    }
}
