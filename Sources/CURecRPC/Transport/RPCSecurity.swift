/// Which of a server's listeners accepted a connection.
public enum ListenerRole: Sendable, Hashable {
    /// The TCP listener clients use (`host:port`).
    case main
    /// The administration listener, a UNIX socket only local users with file access reach.
    case admin
}

/// Decides whether a call may run, before its handler starts or its body is read.
///
/// The server calls it once per call with the routed method, the call's `authorization`
/// header (which handlers never see) and the listener that accepted the connection.
/// Implementations must be fast and must not block: they run on the I/O loop.
public protocol RPCAuthorizer: Sendable {
    /// Nil to let the call run; otherwise the status that ends it (UNAUTHENTICATED,
    /// PERMISSION_DENIED, ...), with a short message that does not echo the header.
    func authorize(method: RPCMethodDescriptor, authorization: String?, listener: ListenerRole) -> RPCStatus?
}

/// Transport security and access control of an ``RPCServer``.
public struct RPCSecurityConfiguration: Sendable {
    /// TLS for the main listener; nil serves cleartext HTTP/2 (h2c).
    public var tls: TLSServerSettings? = nil
    /// A TLS handshake that has not finished this long after accept closes the connection.
    /// Default 10 s.
    public var handshakeTimeout: Duration = .seconds(10)
    /// Path of a UNIX socket to serve as the administration listener (mode 0600, cleartext,
    /// no TLS); nil: none.
    public var adminSocketPath: String? = nil
    /// Checks every call; nil lets every call run.
    public var authorizer: (any RPCAuthorizer)? = nil

    /// Creates the default: cleartext, no admin socket, no checks.
    public init() {}

    var handshakeTimeoutNanos: UInt64 {
        RPCServerConfiguration.nanoseconds(handshakeTimeout)
    }
}
