import CTLS
#if canImport(Glibc)
import Glibc
#endif

/// Why TLS could not be set up.
public enum TLSError: Error, CustomStringConvertible, Sendable, Equatable {
    /// A certificate, key or CA file could not be used; carries the file and OpenSSL's reason.
    case unusableFile(String, String)
    /// An OpenSSL call failed.
    case openSSL(String, String)

    public var description: String {
        switch self {
        case .unusableFile(let path, let reason): return "cannot use \(path): \(reason)"
        case .openSSL(let call, let reason): return "\(call) failed: \(reason)"
        }
    }

    /// OpenSSL's latest error on this thread, as text; clears its error queue.
    static func lastError() -> String {
        var text = [CChar](repeating: 0, count: 256)
        curec_tls_last_error(&text, text.count)
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Server TLS settings: the certificate chain and key the server presents, and optionally
/// the CA that client certificates must chain to (mutual TLS).
public struct TLSServerSettings: Sendable, Hashable {
    /// PEM file with the server certificate (and any intermediates after it).
    public var certificateChainFile: String
    /// PEM file with the server's private key.
    public var privateKeyFile: String
    /// PEM file of the CAs client certificates must chain to; nil: no client certificates.
    public var clientCAFile: String?

    /// Creates the settings.
    public init(certificateChainFile: String, privateKeyFile: String, clientCAFile: String? = nil) {
        self.certificateChainFile = certificateChainFile
        self.privateKeyFile = privateKeyFile
        self.clientCAFile = clientCAFile
    }
}

/// An OpenSSL server context built from ``TLSServerSettings``: TLS 1.2 or later, ALPN `h2`
/// only, and with a client CA, a client certificate required and verified.
final class TLSServerContext: @unchecked Sendable {
    let context: OpaquePointer

    init(settings: TLSServerSettings) throws(TLSError) {
        guard let context = SSL_CTX_new(TLS_server_method()) else {
            throw .openSSL("SSL_CTX_new", TLSError.lastError())
        }
        self.context = context
        curec_tls_set_modes(context)
        curec_tls_server_alpn_h2(context)
        guard SSL_CTX_use_certificate_chain_file(context, settings.certificateChainFile) == 1 else {
            throw .unusableFile(settings.certificateChainFile, "not a PEM certificate chain (\(TLSError.lastError()))")
        }
        guard SSL_CTX_use_PrivateKey_file(context, settings.privateKeyFile, SSL_FILETYPE_PEM) == 1 else {
            throw .unusableFile(settings.privateKeyFile, "not a PEM private key (\(TLSError.lastError()))")
        }
        guard SSL_CTX_check_private_key(context) == 1 else {
            throw .unusableFile(settings.privateKeyFile, "the key does not match the certificate in \(settings.certificateChainFile)")
        }
        if let clientCA = settings.clientCAFile {
            guard SSL_CTX_load_verify_locations(context, clientCA, nil) == 1 else {
                throw .unusableFile(clientCA, "not a PEM CA certificate (\(TLSError.lastError()))")
            }
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
        }
    }

    deinit { SSL_CTX_free(context) }
}

/// SHA-256, for token hashes.
public enum SHA256Digest {
    /// The lowercase hex SHA-256 of `bytes`.
    public static func hex(of bytes: some Collection<UInt8>) -> String {
        let input = Array(bytes)
        var digest = [UInt8](repeating: 0, count: 32)
        let ok = input.withUnsafeBytes { curec_sha256($0.baseAddress, $0.count, &digest) }
        precondition(ok == 1, "OpenSSL SHA-256 failed")
        return hex(digest: digest)
    }

    /// Why a file could not be hashed.
    public struct FileError: Error, CustomStringConvertible {
        public let path: String
        public let reason: String
        public var description: String { "cannot hash \(path): \(reason)" }
    }

    /// The lowercase hex SHA-256 of the file at `path`, read in 1 MiB chunks, and its size in bytes.
    public static func hexOfFile(atPath path: String) throws(FileError) -> (hex: String, size: Int64) {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw FileError(path: path, reason: String(cString: strerror(errno))) }
        defer { close(descriptor) }
        guard let context = curec_sha256_begin() else { throw FileError(path: path, reason: "OpenSSL SHA-256 is unavailable") }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var size: Int64 = 0
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                let reason = String(cString: strerror(errno))
                var discarded = [UInt8](repeating: 0, count: 32)
                _ = curec_sha256_end(context, &discarded)
                throw FileError(path: path, reason: reason)
            }
            if count == 0 { break }
            size += Int64(count)
            _ = buffer.withUnsafeBytes { curec_sha256_update(context, $0.baseAddress, count) }
        }
        var digest = [UInt8](repeating: 0, count: 32)
        guard curec_sha256_end(context, &digest) == 1 else { throw FileError(path: path, reason: "OpenSSL SHA-256 failed") }
        return (hex(digest: digest), size)
    }

    private static func hex(digest: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text = [UInt8]()
        text.reserveCapacity(64)
        for byte in digest {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
