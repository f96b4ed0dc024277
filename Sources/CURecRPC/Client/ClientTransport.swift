import CTLS

#if canImport(Glibc)
import Glibc
#endif

/// TLS settings of an ``RPCClient``.
public struct TLSClientSettings: Sendable, Hashable {
    /// PEM file of the CAs the server's certificate must chain to; nil: the system's CAs.
    public var caFile: String?
    /// PEM client certificate chain and key, for servers that require mutual TLS.
    public var certificateFile: String?
    public var privateKeyFile: String?
    /// The name the server's certificate must carry; nil: the host of the address.
    public var serverName: String?

    /// Creates the settings.
    public init(caFile: String? = nil, certificateFile: String? = nil, privateKeyFile: String? = nil,
                serverName: String? = nil) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.privateKeyFile = privateKeyFile
        self.serverName = serverName
    }
}

/// How the blocking client moves bytes: the socket itself, or TLS over it. `send` and
/// `receive` follow the socket calls' conventions (a count, or -1 with `errno`).
protocol ClientTransport: AnyObject {
    func send(_ bytes: UnsafeRawPointer, _ count: Int) -> Int
    func receive(_ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int
    /// Bytes already decrypted and waiting, which `poll` on the socket would not report.
    var hasBufferedInput: Bool { get }
}

final class PlainClientTransport: ClientTransport {
    let fd: Int32
    init(fd: Int32) { self.fd = fd }
    func send(_ bytes: UnsafeRawPointer, _ count: Int) -> Int { Glibc.send(fd, bytes, count, Int32(MSG_NOSIGNAL)) }
    func receive(_ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int { recv(fd, buffer, count, 0) }
    var hasBufferedInput: Bool { false }
}

/// TLS 1.2+ client over a connected blocking socket, verifying the server's certificate and
/// name and negotiating ALPN `h2`.
final class TLSClientTransport: ClientTransport {
    private let context: OpaquePointer
    private let ssl: OpaquePointer

    /// Runs the handshake; throws UNAVAILABLE with OpenSSL's reason when it fails.
    init(fd: Int32, host: String, settings: TLSClientSettings) throws(RPCError) {
        guard let context = SSL_CTX_new(TLS_client_method()) else {
            throw RPCError(.internal, "cannot create a TLS context: \(TLSError.lastError())")
        }
        self.context = context
        curec_tls_set_modes(context)
        _ = curec_tls_client_alpn_h2(context)
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
        let loaded = settings.caFile.map { SSL_CTX_load_verify_locations(context, $0, nil) } ?? SSL_CTX_set_default_verify_paths(context)
        guard loaded == 1 else {
            SSL_CTX_free(context)
            throw RPCError(.invalidArgument, "cannot use CA file \(settings.caFile ?? "(system)"): \(TLSError.lastError())")
        }
        if let certificate = settings.certificateFile {
            guard SSL_CTX_use_certificate_chain_file(context, certificate) == 1,
                  SSL_CTX_use_PrivateKey_file(context, settings.privateKeyFile ?? certificate, SSL_FILETYPE_PEM) == 1 else {
                SSL_CTX_free(context)
                throw RPCError(.invalidArgument, "cannot use client certificate \(certificate): \(TLSError.lastError())")
            }
        }
        guard let ssl = SSL_new(context) else {
            SSL_CTX_free(context)
            throw RPCError(.internal, "cannot create a TLS session: \(TLSError.lastError())")
        }
        self.ssl = ssl
        let name = settings.serverName ?? host
        var scratch = in6_addr()
        let isAddress = inet_pton(AF_INET, name, &scratch) == 1 || inet_pton(AF_INET6, name, &scratch) == 1
        guard curec_tls_client_set_host(ssl, name, isAddress ? 1 : 0) == 1, SSL_set_fd(ssl, fd) == 1 else {
            throw RPCError(.internal, "cannot set up TLS for \(name): \(TLSError.lastError())")
        }
        guard SSL_connect(ssl) == 1 else {
            let verify = SSL_get_verify_result(ssl)
            let reason = verify != X509_V_OK
                ? String(cString: X509_verify_cert_error_string(verify))
                : TLSError.lastError()
            throw RPCError(.unavailable, "TLS handshake with \(name) failed: \(reason.isEmpty ? "the server closed the connection" : reason)")
        }
        var selected = [CChar](repeating: 0, count: 16)
        guard curec_tls_alpn_selected(ssl, &selected, Int32(selected.count)) == 2 else {
            throw RPCError(.unavailable, "the server at \(name) did not agree to HTTP/2 (ALPN h2)")
        }
    }

    deinit {
        SSL_free(ssl)
        SSL_CTX_free(context)
    }

    func send(_ bytes: UnsafeRawPointer, _ count: Int) -> Int {
        let result = SSL_write(ssl, bytes, Int32(clamping: count))
        if result > 0 { return Int(result) }
        return failure(result)
    }

    func receive(_ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
        let result = SSL_read(ssl, buffer, Int32(clamping: count))
        if result > 0 { return Int(result) }
        if SSL_get_error(ssl, result) == SSL_ERROR_ZERO_RETURN { return 0 }
        return failure(result)
    }

    var hasBufferedInput: Bool { SSL_pending(ssl) > 0 }

    private func failure(_ result: Int32) -> Int {
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: errno = EAGAIN
        case SSL_ERROR_SYSCALL where errno != 0: break
        default: errno = EPROTO
        }
        _ = TLSError.lastError()
        return -1
    }
}
