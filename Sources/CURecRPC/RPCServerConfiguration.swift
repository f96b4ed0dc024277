import Foundation

/// Settings of an ``RPCServer``. Every field has a production default.
public struct RPCServerConfiguration: Sendable {
    /// Address to bind: an IPv4 or IPv6 literal, or a host name. Default `127.0.0.1`.
    public var host: String = "127.0.0.1"
    /// TCP port; 0 asks the kernel for a free one (see ``RPCServer/start()``). Default 50051.
    public var port: Int = 50051
    /// Number of I/O threads; connections are spread over them. Default: one per core.
    public var eventLoopCount: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)
    /// Largest request message accepted; a larger one ends the call with
    /// `RESOURCE_EXHAUSTED` before its body is read. Default 4 MiB.
    public var maxReceiveMessageBytes: Int = 4 * 1024 * 1024
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` per connection. Default 1024.
    public var maxConcurrentStreams: UInt32 = 1024
    /// HTTP/2 initial stream flow-control window, in bytes. Default 1 MiB.
    public var initialWindowBytes: UInt32 = 1024 * 1024
    /// Connection-level receive window, in bytes. Default 16 MiB.
    public var connectionWindowBytes: Int32 = 16 * 1024 * 1024
    /// Largest request header block, in bytes; a larger one resets the stream. Default 16 KiB.
    public var maxHeaderListBytes: Int = 16 * 1024
    /// A connection with no open streams for this long is closed with GOAWAY. Default 5 min.
    public var idleTimeout: Duration = .seconds(300)
    /// Connections beyond this many are closed as soon as they are accepted. Default 10,000.
    public var maxConnections: Int = 10_000
    /// How long graceful shutdown waits for calls in flight before closing. Default 10 s.
    public var drainTimeout: Duration = .seconds(10)
    /// TLS, the admin socket and per-call authorization. Default: cleartext, none.
    public var security = RPCSecurityConfiguration()

    /// Creates the default configuration.
    public init() {}

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
