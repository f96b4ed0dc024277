import Foundation

/// Settings of an ``RPCServer``. Every field has a production default.
public struct RPCServerConfiguration: Sendable {
    /// Address to bind: an IPv4 or IPv6 literal, or a host name. Default `127.0.0.1`.
    public var host: String = "127.0.0.1"
    /// Sees every routed call (for metrics); nil: calls are not observed.
    public var callObserver: (any RPCCallObserver)? = nil
    /// TCP port; 0 asks the kernel for a free one (see ``RPCServer/start()``). Default 50051.
    public var port: Int = 50051
    /// Number of I/O threads; connections are spread over them. Default: one per core.
    public var eventLoopCount: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)
    /// Largest request message accepted; a larger one ends the call with
    /// `RESOURCE_EXHAUSTED` before its body is read. Default 4 MiB.
    public var maxReceiveMessageBytes: Int = 4 * 1024 * 1024
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` per connection; a stream reset by the client
    /// still counts until its handler returns. Default 100 (as nghttpx and Envoy's
    /// recommended edge setting; nginx uses 128).
    public var maxConcurrentStreams: UInt32 = 100
    /// HTTP/2 initial stream flow-control window, in bytes. Default 1 MiB.
    public var initialWindowBytes: UInt32 = 1024 * 1024
    /// Connection-level receive window, in bytes. Default 16 MiB.
    public var connectionWindowBytes: Int32 = 16 * 1024 * 1024
    /// Request bytes one connection may hold in memory (incomplete messages, requests not yet
    /// handed to a handler, messages a streaming handler has not read). Above it the
    /// connection's flow-control window is no longer credited, so a peer can add at most one
    /// connection window more. Default 8 MiB (Envoy's per-connection buffer limit is 1 MiB,
    /// nghttpx lets a connection hold its 64 KiB..16 MiB window).
    public var maxBufferedBytesPerConnection: Int = 8 * 1024 * 1024
    /// Largest request header block, in bytes; a larger one resets the stream. Default 16 KiB.
    public var maxHeaderListBytes: Int = 16 * 1024
    /// A connection with no open streams for this long is closed with GOAWAY. Default 5 min.
    public var idleTimeout: Duration = .seconds(300)
    /// Connections beyond this many are closed as soon as they are accepted. Default 10,000.
    public var maxConnections: Int = 10_000
    /// Connections one peer address may hold open; more are closed as soon as they are
    /// accepted, so one client cannot lock others out. Default 256.
    public var maxConnectionsPerPeer: Int = 256
    /// Time a new connection has to send its preface and SETTINGS, and a stream to complete
    /// its request headers; then the connection is closed. Default 20 s (nginx
    /// `client_header_timeout` 60 s, Envoy `request_headers_timeout` is opt-in).
    public var headerReadTimeout: Duration = .seconds(20)
    /// Time a unary-request call may wait for more of its request (no DATA arriving) before
    /// it is ended with CANCELLED. Default 60 s (nginx `client_body_timeout` 60 s, Envoy
    /// `stream_idle_timeout` 5 min).
    public var bodyReadTimeout: Duration = .seconds(60)
    /// Time a response may wait for a peer that reads nothing (a zero flow-control window or
    /// a full socket) before the stream is reset, or the connection closed. Default 60 s
    /// (nginx `send_timeout` 60 s, nghttpx write timeout 30 s).
    public var sendTimeout: Duration = .seconds(60)
    /// The deadline a call gets when the client sends no `grpc-timeout`; nil: none. Default
    /// 10 min (Envoy's route timeout is 15 s; grpc-go has none).
    public var defaultDeadline: Duration? = .seconds(600)
    /// Method paths the default deadline does not apply to (long-lived watches).
    public var defaultDeadlineExemptPaths: Set<String> = []
    /// A connection silent for this long is sent a PING; nil turns keepalive off. Default
    /// 2 min (grpc-go's server sends its first after 2 h; gRPC clients commonly use 20 s..5 min).
    public var keepaliveInterval: Duration? = .seconds(120)
    /// A PING unanswered for this long closes the connection. Default 20 s (grpc-go's default).
    public var keepaliveTimeout: Duration = .seconds(20)
    /// Connections older than this (±10 %) are sent GOAWAY; nil: no limit. Default 2 h
    /// (grpc-go's `MaxConnectionAge` is off by default; Envoy's `max_connection_duration` too).
    public var maxConnectionAge: Duration? = .seconds(7200)
    /// Time calls in flight get after the age GOAWAY before the connection is closed.
    /// Default 5 min (grpc-go's `MaxConnectionAgeGrace` is unlimited by default).
    public var maxConnectionAgeGrace: Duration = .seconds(300)
    /// RST_STREAM frames a peer may send at once and per second before its connection is
    /// ended (nghttp2's reset flood guard). Default 1000 and 33 (nghttp2's).
    public var resetBurst: UInt64 = 1000
    public var resetRatePerSecond: UInt64 = 33
    /// CONTINUATION frames allowed after one HEADERS frame (nghttp2 default 8).
    public var maxContinuations: Int = 8
    /// Entries allowed in one SETTINGS frame (nghttp2 default 32).
    public var maxSettingsEntries: Int = 32
    /// First pause of `accept` after it fails for want of descriptors (EMFILE, ENFILE); it
    /// doubles up to one second while the failures last. Default 100 ms.
    public var acceptBackoff: Duration = .milliseconds(100)
    /// How long graceful shutdown waits for calls in flight before closing. Default 10 s.
    public var drainTimeout: Duration = .seconds(10)
    /// TLS, the admin socket and per-call authorization. Default: cleartext, none.
    public var security = RPCSecurityConfiguration()

    /// Creates the default configuration.
    public init() {}

    /// `duration` in nanoseconds (negative: 0).
    static func nanoseconds(_ duration: Duration) -> UInt64 {
        let parts = duration.components
        guard parts.seconds >= 0 else { return 0 }
        let seconds = UInt64(parts.seconds).multipliedReportingOverflow(by: 1_000_000_000)
        if seconds.overflow { return UInt64.max / 2 }
        return min(UInt64.max / 2, seconds.partialValue &+ UInt64(max(0, parts.attoseconds / 1_000_000_000)))
    }

    /// Parses `HOST:PORT` or `[IPv6]:PORT`.
    public static func parseListenAddress(_ text: String) throws(RPCServerError) -> (host: String, port: Int) {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"),
                  text[text.index(after: close)...].hasPrefix(":") else {
                throw .invalidAddress(text, "expected [IPv6]:PORT")
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw .invalidAddress(text, "expected HOST:PORT, e.g. 127.0.0.1:50051")
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard let port = Int(portText), (0...65535).contains(port) else {
            throw .invalidAddress(text, "the port must be a number from 0 to 65535")
        }
        guard !host.isEmpty else { throw .invalidAddress(text, "the host is empty") }
        return (String(host), port)
    }
}

/// Why the server could not start or run.
public enum RPCServerError: Error, CustomStringConvertible, Sendable {
    /// A system call failed; carries the call and `errno`.
    case system(String, Int32)
    /// The listen address could not be used.
    case invalidAddress(String, String)
    /// libnghttp2 refused an operation.
    case http2(String, Int32)
    /// TLS could not be set up (certificate, key or CA files).
    case tls(TLSError)

    public var description: String {
        switch self {
        case .system(let call, let code):
            return "\(call) failed: \(String(cString: strerror(code))) (errno \(code))"
        case .invalidAddress(let address, let reason):
            return "invalid listen address '\(address)': \(reason)"
        case .http2(let call, let code):
            return "\(call) failed: nghttp2 error \(code)"
        case .tls(let error):
            return "TLS setup failed: \(error)"
        }
    }
}
