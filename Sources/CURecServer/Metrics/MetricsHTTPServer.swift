import CURecRPC
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Why the metrics endpoint could not start.
public enum MetricsServerError: Error, CustomStringConvertible, Sendable, Equatable {
    case address(String, String)
    case system(String, Int32)

    public var description: String {
        switch self {
        case .address(let address, let reason): return "metrics_listen \(address): \(reason)"
        case .system(let call, let code): return "metrics endpoint: \(call) failed: \(String(cString: strerror(code)))"
        }
    }

    /// The error of opening the endpoint's socket.
    init(_ error: RPCServerError) {
        switch error {
        case .invalidAddress(let address, let reason): self = .address(address, reason)
        case .system(let call, let code): self = .system(call, code)
        case .http2, .tls: self = .system("\(error)", 0)
        }
    }
}

/// A small HTTP/1.1 server for Prometheus: `GET /metrics` and nothing else.
///
/// One thread accepts; each connection gets its own thread (at most ``Limits/maxConnections``
/// at once; more are closed on accept), reads one request head within ``Limits/readTimeout``
/// and ``Limits/maxRequestBytes``, answers it and closes the connection. The request body, if
/// any, is never read. Nothing of the request is echoed back.
public final class MetricsHTTPServer: Sendable {
    /// Bounds on what one peer may make the server do.
    public struct Limits: Sendable {
        /// Time a connection has to send its whole request head.
        public var readTimeout: Duration = .seconds(5)
        /// Largest request head (request line and headers), bytes.
        public var maxRequestBytes = 8 * 1024
        /// Connections served at once.
        public var maxConnections = 16
        public init() {}
    }

    private let listenFD: Int32
    private let limits: Limits
    private let body: @Sendable () -> [UInt8]
    private let logger: Logger
    private let active = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    private let acceptorDone = DispatchGroup()
    /// The bound port (the configured one, or the one picked for port 0).
    public let port: Int

    /// Binds `host:port` (port 0 picks one) and starts serving `body()` at `GET /metrics`.
    public init(host: String, port: Int, limits: Limits = Limits(), logger: Logger,
                body: @escaping @Sendable () -> [UInt8]) throws(MetricsServerError) {
        let fd = try Self.listen(host: host, port: port)
        self.listenFD = fd
        self.limits = limits
        self.body = body
        self.logger = logger
        self.port = try Self.boundPort(fd)
        acceptorDone.enter()
        let thread = Thread { [self] in
            acceptLoop()
            acceptorDone.leave()
        }
        thread.name = "curec-metrics"
        thread.start()
    }

    /// Stops accepting and waits for the accept thread; connections being served finish.
    public func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        shutdown(listenFD, Int32(SHUT_RDWR))
        acceptorDone.wait()
        close(listenFD)
    }

    private func acceptLoop() {
        while !stopping.load(ordering: .acquiring) {
            let fd = accept(listenFD, nil, nil)
            if fd < 0 {
                let code = errno
                if stopping.load(ordering: .acquiring) { return }
                if code == EINTR || code == ECONNABORTED { continue }
                if code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM {
                    usleep(100_000)
                    continue
                }
                logger.error("metrics endpoint stopped accepting", metadata: ["error": "\(String(cString: strerror(code)))"])
                return
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            guard active.add(1, ordering: .relaxed).newValue <= limits.maxConnections else {
                active.subtract(1, ordering: .relaxed)
                close(fd)
                continue
            }
            let thread = Thread { [self] in
                serve(fd)
                close(fd)
                active.subtract(1, ordering: .relaxed)
            }
            thread.name = "curec-metrics-conn"
            thread.stackSize = 256 * 1024
            thread.start()
        }
    }

    /// Reads one request head and answers it.
    private func serve(_ fd: Int32) {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        SocketTimeout.set(fd, SO_SNDTIMEO, limits.readTimeout)
        let head: MetricsRequestHead.Outcome
        switch readHead(fd) {
        case .head(let bytes): head = MetricsRequestHead.parse(bytes)
        case .tooLarge: head = .refused(431, "request head larger than \(limits.maxRequestBytes) bytes")
        case .timedOut: head = .refused(408, "request head not received within the read timeout")
        case .closed: return
        }
        switch head {
        case .metrics:
            respond(fd, status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: body())
        case .refused(let status, let reason):
            var extra: [String] = []
            if status == 405 { extra.append("Allow: GET") }
            respond(fd, status: status, contentType: "text/plain; charset=utf-8", body: Array((reason + "\n").utf8), extraHeaders: extra)
        }
    }

    private enum ReadResult {
        case head([UInt8]), tooLarge, timedOut, closed
    }

    /// Reads until the blank line ending the head, within the byte bound and the deadline.
    private func readHead(_ fd: Int32) -> ReadResult {
        let deadline = ContinuousClock.now.advanced(by: limits.readTimeout)
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 2048)
        while true {
            let remaining = ContinuousClock.now.duration(to: deadline)
            guard remaining > .zero else { return .timedOut }
            SocketTimeout.set(fd, SO_RCVTIMEO, remaining)
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count == 0 { return buffer.isEmpty ? .closed : .head(buffer) }
            if count < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return .timedOut }
                return .closed
            }
            let scanFrom = max(0, buffer.count - 3)
            buffer.append(contentsOf: chunk[0..<count])
            if MetricsRequestHead.endOfHead(in: buffer, from: scanFrom) != nil { return .head(buffer) }
            if buffer.count > limits.maxRequestBytes { return .tooLarge }
        }
    }

    private func respond(_ fd: Int32, status: Int, contentType: String, body: [UInt8], extraHeaders: [String] = []) {
        var head = "HTTP/1.1 \(status) \(MetricsRequestHead.reasonPhrase(status))\r\n"
        head += "Content-Type: \(contentType)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n"
        for line in extraHeaders { head += line + "\r\n" }
        head += "\r\n"
        var bytes = Array(head.utf8)
        bytes.append(contentsOf: body)
        var sent = 0
        while sent < bytes.count {
            let count = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return }
            sent += count
        }
        shutdown(fd, Int32(SHUT_WR))
    }

    /// A blocking listening socket (the accept thread waits in `accept`).
    private static func listen(host: String, port: Int) throws(MetricsServerError) -> Int32 {
        do {
            return try ListeningSocket.open(
                host: host, port: port, options: .init(nonBlocking: false, sharesPort: false, backlog: 64))
        } catch {
            throw MetricsServerError(error)
        }
    }

    private static func boundPort(_ fd: Int32) throws(MetricsServerError) -> Int {
        do {
            return try ListeningSocket.boundPort(fd)
        } catch {
            throw MetricsServerError(error)
        }
    }
}

/// Parsing of the one request the metrics endpoint serves.
enum MetricsRequestHead {
    enum Outcome: Equatable {
        /// `GET /metrics` (with or without a query).
        case metrics
        /// Anything else: the HTTP status and a fixed reason (never the request's own text).
        case refused(Int, String)
    }

    /// Where the blank line ending a head starts, searching from `from`.
    static func endOfHead(in bytes: [UInt8], from: Int) -> Int? {
        guard bytes.count >= 4 else { return nil }
        var index = max(0, from)
        while index + 3 < bytes.count {
            if bytes[index] == 13, bytes[index + 1] == 10, bytes[index + 2] == 13, bytes[index + 3] == 10 { return index }
            index += 1
        }
        return nil
    }

    /// Judges a request head by its request line.
    static func parse(_ bytes: [UInt8]) -> Outcome {
        guard endOfHead(in: bytes, from: 0) != nil else { return .refused(400, "incomplete request head") }
        guard let lineEnd = bytes.firstIndex(of: 13), bytes.indices.contains(lineEnd + 1), bytes[lineEnd + 1] == 10 else {
            return .refused(400, "malformed request line")
        }
        let parts = bytes[..<lineEnd].split(separator: 32, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty,
              parts[2].elementsEqual("HTTP/1.1".utf8) || parts[2].elementsEqual("HTTP/1.0".utf8) else {
            return .refused(400, "malformed request line; expected GET /metrics HTTP/1.1")
        }
        let target = parts[1]
        let path = target.split(separator: UInt8(ascii: "?"), maxSplits: 1, omittingEmptySubsequences: false).first ?? target
        guard path.elementsEqual("/metrics".utf8) else { return .refused(404, "not found; metrics are at /metrics") }
        guard parts[0].elementsEqual("GET".utf8) else { return .refused(405, "only GET is served") }
        return .metrics
    }

    static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 200: return "OK"
        case 400: return "Bad Request"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 431: return "Request Header Fields Too Large"
        default: return "Error"
        }
    }
}
