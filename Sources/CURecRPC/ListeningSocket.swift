import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// Creating, binding and inspecting listening sockets: the gRPC listeners and the daemon's
/// other HTTP endpoints (metrics) open theirs here.
public enum ListeningSocket {
    /// How a TCP listening socket is opened.
    public struct Options: Sendable {
        /// `accept` returns EAGAIN instead of blocking (an event loop's socket).
        public var nonBlocking: Bool
        /// `SO_REUSEPORT`, so that each event loop can own a socket on the same port and the
        /// kernel spreads connections over them.
        public var sharesPort: Bool
        /// Connections the kernel queues before `accept`.
        public var backlog: Int32

        public init(nonBlocking: Bool, sharesPort: Bool, backlog: Int32) {
            self.nonBlocking = nonBlocking
            self.sharesPort = sharesPort
            self.backlog = backlog
        }

        /// A gRPC event loop's listener.
        public static let eventLoop = Options(nonBlocking: true, sharesPort: true, backlog: 4096)
    }

    /// Opens a listening socket on `host:port` (a numeric port; 0 picks a free one, see
    /// ``boundPort(_:)``).
    public static func open(host: String, port: Int, options: Options = .eventLoop) throws(RPCServerError) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var results: UnsafeMutablePointer<addrinfo>? = nil
        let lookup = getaddrinfo(host, String(port), &hints, &results)
        guard lookup == 0, let first = results else {
            throw .invalidAddress("\(host):\(port)", "cannot resolve host: \(String(cString: gai_strerror(lookup)))")
        }
        defer { freeaddrinfo(results) }

        var type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        if options.nonBlocking { type |= Int32(SOCK_NONBLOCK.rawValue) }
        let fd = socket(first.pointee.ai_family, type, 0)
        guard fd >= 0 else { throw .system("socket", errno) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if options.sharesPort {
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        guard bind(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
            let code = errno
            close(fd)
            if code == EADDRINUSE {
                throw .invalidAddress("\(host):\(port)", "the address is already in use")
            }
            throw .system("bind", code)
        }
        guard listen(fd, options.backlog) == 0 else {
            let code = errno
            close(fd)
            throw .system("listen", code)
        }
        return fd
    }

    /// Whether a process listens on the UNIX socket at `address`: a local connect is refused
    /// at once when nothing does (EAGAIN: listening, its backlog full).
    private static func isAnswering(_ address: inout sockaddr_un) -> Bool {
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard probe >= 0 else { return false }
        defer { close(probe) }
        let result = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(probe, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        return result == 0 || errno == EAGAIN
    }

    /// Opens a non-blocking UNIX-domain listening socket at `path`, readable and writable by
    /// the daemon's user only (mode 0600). A stale socket file left by an earlier run is
    /// replaced; any other file at `path` is an error.
    static func openUnix(path: String) throws(RPCServerError) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count < capacity else {
            throw .invalidAddress(path, "a UNIX socket path must be 1 to \(capacity - 1) bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        var status = stat()
        if lstat(path, &status) == 0 {
            guard status.st_mode & S_IFMT == S_IFSOCK else {
                throw .invalidAddress(path, "a file that is not a socket is in the way")
            }
            // Replace only a stale socket: one a running daemon still answers on stays.
            guard !isAnswering(&address) else {
                throw .invalidAddress(path, "another process is serving on this socket")
            }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .system("socket(AF_UNIX)", errno) }
        // Created with no access for others from the start, then narrowed to 0600.
        let previousMask = umask(0o177)
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        umask(previousMask)
        guard bound == 0 else {
            let code = errno
            close(fd)
            throw .system("bind(\(path))", code)
        }
        chmod(path, 0o600)
        guard listen(fd, 128) == 0 else {
            let code = errno
            close(fd)
            throw .system("listen", code)
        }
        return fd
    }

    /// The port a bound socket listens on.
    public static func boundPort(_ fd: Int32) throws(RPCServerError) -> Int {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard result == 0 else { throw .system("getsockname", errno) }
        if Int32(storage.ss_family) == AF_INET6 {
            return withUnsafePointer(to: &storage) { pointer in
                pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
            }
        }
        return withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
    }
}

/// Accepts connections on one loop's listening socket and owns that loop's connections.
///
/// Confined to its loop.
final class LoopAcceptor: EventSource, @unchecked Sendable {
    let loop: EventLoop
    let shared: ServerShared
    private var listenerFD: Int32
    private var connections: [ObjectIdentifier: HTTP2Connection] = [:]
    private var draining = false
    /// Which listener this is; the admin socket's acceptor shares loop 0 with a main one.
    let role: ListenerRole
    /// The other acceptor on this loop (the admin socket's and loop 0's main one point at each
    /// other): the loop stops only when both have drained.
    weak var sibling: LoopAcceptor?
    /// TLS for accepted connections; nil: cleartext.
    private let tls: TLSServerContext?
    /// During an episode of accept failing for want of descriptors: the current pause, how
    /// many accepts failed, and whether the listener is unwatched right now.
    private var acceptPause: UInt64? = nil
    private var failedAccepts = 0
    private var acceptPaused = false

    init(loop: EventLoop, shared: ServerShared, listenerFD: Int32, role: ListenerRole = .main,
         tls: TLSServerContext? = nil) {
        self.loop = loop
        self.shared = shared
        self.listenerFD = listenerFD
        self.role = role
        self.tls = tls
    }

    /// The transport of a newly accepted connection.
    private func transport(for fd: Int32) throws -> any ConnectionTransport {
        guard let tls else { return PlainTransport(fd: fd) }
        return try TLSServerTransport(fd: fd, context: tls)
    }

    /// Starts accepting and the once-a-second idle sweep. Loop thread.
    func start() throws {
        try loop.register(fd: listenerFD, events: EPOLLIN.rawValue, source: self)
        scheduleSweep()
    }

    func handleEvents(_ events: UInt32) {
        while listenerFD >= 0, !acceptPaused {
            let fd = curec_accept_nonblocking(listenerFD)
            if fd < 0 {
                let code = errno
                if code == EINTR || code == ECONNABORTED { continue }
                if code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM {
                    pauseAccepting(errno: code)
                    return
                }
                if code != EAGAIN && code != EWOULDBLOCK {
                    shared.logger.warning("accept failed", metadata: ["errno": "\(code)"])
                }
                return
            }
            if acceptPause != nil {
                shared.logger.info("accepting connections again", metadata: ["failed_accepts": "\(failedAccepts)"])
                acceptPause = nil
                failedAccepts = 0
            }
            // The admin socket is the operator's way in while the main listener is flooded:
            // the connection limits apply to the main listener only.
            let peer = role == .admin ? Self.adminPeer : PeerConnectionLimiter.peerAddress(of: fd)
            if role == .main {
                if shared.openConnections.load(ordering: .relaxed) >= shared.configuration.maxConnections {
                    shared.logger.warning("connection limit reached; closing a new connection",
                                          metadata: ["limit": "\(shared.configuration.maxConnections)"])
                    close(fd)
                    continue
                }
                guard shared.peers.acquire(peer) else {
                    shared.logger.debug("per-peer connection limit reached; closing a new connection",
                                        metadata: ["peer": "\(peer)", "limit": "\(shared.peers.perPeer)"])
                    close(fd)
                    continue
                }
            }
            var one: Int32 = 1
            if role == .main { setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size)) }
            do {
                let connection = try HTTP2Connection(
                    fd: fd, peer: peer, loop: loop, shared: shared, listener: role, transport: try transport(for: fd)
                ) { [weak self] closed in
                    self?.connectionClosed(closed)
                }
                // Started before it is recorded: a connection that failed to start is never
                // swept or closed later (its descriptor number may belong to another by then).
                try connection.start()
                connections[ObjectIdentifier(connection)] = connection
                if role == .main { shared.openConnections.add(1, ordering: .relaxed) }
            } catch {
                shared.logger.warning("could not set up a connection", metadata: ["error": "\(error)"])
                if role == .main { shared.peers.release(peer) }
                close(fd)
            }
        }
    }

    /// Stops watching the listener for a while after accept ran out of descriptors, instead
    /// of spinning on a socket that stays readable; one log line per episode.
    private func pauseAccepting(errno code: Int32) {
        failedAccepts += 1
        let first = max(RPCServerConfiguration.nanoseconds(shared.configuration.acceptBackoff), 1_000_000)
        let pause = acceptPause.map { min($0 * 2, max(first, 1_000_000_000)) } ?? first
        if acceptPause == nil {
            shared.logger.warning("accept failed for want of file descriptors; pausing new connections until it succeeds",
                                  metadata: ["error": "\(String(cString: strerror(code)))",
                                             "open_connections": "\(shared.openConnections.load(ordering: .relaxed))"])
        }
        acceptPause = pause
        acceptPaused = true
        loop.modify(fd: listenerFD, events: 0)
        loop.schedule(afterNanos: pause) { [weak self] in
            guard let self, self.listenerFD >= 0 else { return }
            self.acceptPaused = false
            self.loop.modify(fd: self.listenerFD, events: EPOLLIN.rawValue)
            self.handleEvents(EPOLLIN.rawValue)
        }
    }

    /// The peer name of connections on the admin UNIX socket (they have no address).
    static let adminPeer = "unix"

    private func connectionClosed(_ connection: HTTP2Connection) {
        if connections.removeValue(forKey: ObjectIdentifier(connection)) != nil, role == .main {
            shared.openConnections.subtract(1, ordering: .relaxed)
            shared.peers.release(connection.peer)
        }
        stopLoopIfDrained()
    }

    /// The drain timeout passed: whatever is left was closed and does not hold the loop.
    private var drainTimedOut = false

    /// This acceptor is shutting down and has no connections left (or its time is up).
    private var drained: Bool { draining && (connections.isEmpty || drainTimedOut) }

    /// Stops the loop once this acceptor and its sibling on the loop have both drained.
    private func stopLoopIfDrained() {
        if drained && (sibling?.drained ?? true) { loop.stop() }
    }

    private func scheduleSweep() {
        loop.schedule(afterNanos: 1_000_000_000) { [weak self] in
            guard let self else { return }
            let now = MonotonicClock.nanoseconds()
            let idle = RPCServerConfiguration.nanoseconds(self.shared.configuration.idleTimeout)
            for connection in Array(self.connections.values) {
                connection.closeIfIdle(now: now, idleNanos: idle)
                connection.sweep(now: now)
            }
            self.scheduleSweep()
        }
    }

    /// Stops accepting, asks every connection to finish, and stops the loop when all have
    /// closed or `drainNanos` has passed. Loop thread.
    func beginShutdown(drainNanos: UInt64) {
        guard !draining else { return }
        draining = true
        if listenerFD >= 0 {
            loop.deregister(fd: listenerFD)
            close(listenerFD)
            listenerFD = -1
            if role == .admin, let path = shared.configuration.security.adminSocketPath { unlink(path) }
        }
        if connections.isEmpty {
            stopLoopIfDrained()
            return
        }
        for connection in Array(connections.values) { connection.beginGracefulShutdown() }
        loop.schedule(afterNanos: drainNanos) { [weak self] in
            guard let self else { return }
            if !self.connections.isEmpty {
                self.shared.logger.warning("drain timeout passed; closing connections with calls in flight",
                                           metadata: ["connections": "\(self.connections.count)"])
            }
            for connection in Array(self.connections.values) { connection.close() }
            self.drainTimedOut = true
            self.stopLoopIfDrained()
        }
    }
}

/// Send and receive time limits on a blocking socket.
public enum SocketTimeout {
    /// Sets `option` (`SO_RCVTIMEO` or `SO_SNDTIMEO`) of `fd` to `duration`, at least one
    /// microsecond (zero would mean no limit).
    public static func set(_ fd: Int32, _ option: Int32, _ duration: Duration) {
        let nanos = max(RPCServerConfiguration.nanoseconds(duration), 1_000)
        var value = timeval(tv_sec: Int(nanos / 1_000_000_000), tv_usec: Int(nanos % 1_000_000_000 / 1_000))
        setsockopt(fd, SOL_SOCKET, option, &value, socklen_t(MemoryLayout<timeval>.size))
    }
}
