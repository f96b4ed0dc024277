import CTLS

#if canImport(Glibc)
import Glibc
#endif

/// The outcome of one non-blocking read or write on a connection's transport.
enum TransportIO: Equatable {
    /// This many bytes were read or written (more than zero).
    case bytes(Int)
    /// Nothing can move until the socket is readable again.
    case wantRead
    /// Nothing can move until the socket is writable again.
    case wantWrite
    /// The peer closed the connection (reads only).
    case closed
    /// The connection failed; carries a short reason for the debug log.
    case failed(String)
}

/// How an accepted connection's bytes reach the socket: in the clear or through TLS.
///
/// The HTTP/2 layer reads and writes through this and does not know which it has. All
/// methods are non-blocking and run on the connection's event loop.
protocol ConnectionTransport: AnyObject {
    /// Whether ``handshake()`` must finish before HTTP/2 starts.
    var needsHandshake: Bool { get }
    /// Advances the handshake; nil once it is done (plain transports have none).
    func handshake() -> TransportIO?
    /// Reads up to `buffer.count` bytes.
    func read(into buffer: UnsafeMutableRawBufferPointer) -> TransportIO
    /// Writes up to `bytes.count` bytes.
    func write(_ bytes: UnsafeRawBufferPointer) -> TransportIO
    /// Ends the session politely if there is one (TLS close_notify); the caller closes the fd.
    func shutdown()
    /// Whether bytes already taken off the socket wait inside the transport (TLS records
    /// read ahead): epoll will not report them, so the reader must come back on its own.
    var hasPendingInput: Bool { get }
}

/// Cleartext HTTP/2 (h2c): the socket calls themselves.
final class PlainTransport: ConnectionTransport {
    let fd: Int32

    init(fd: Int32) { self.fd = fd }

    var needsHandshake: Bool { false }

    func handshake() -> TransportIO? { nil }

    func read(into buffer: UnsafeMutableRawBufferPointer) -> TransportIO {
        while true {
            let count = recv(fd, buffer.baseAddress, buffer.count, 0)
            if count > 0 { return .bytes(count) }
            if count == 0 { return .closed }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { return .wantRead }
            return .failed("recv: errno \(errno)")
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer) -> TransportIO {
        while true {
            let count = send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
            if count >= 0 { return count == 0 ? .wantWrite : .bytes(count) }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { return .wantWrite }
            return .failed("send: errno \(errno)")
        }
    }

    func shutdown() {}

    var hasPendingInput: Bool { false }
}

/// TLS over the socket with OpenSSL, server side; ALPN must settle on `h2`.
///
/// The handshake runs on the event loop like any other I/O: ``handshake()`` is called again
/// whenever the socket is ready until it returns nil.
final class TLSServerTransport: ConnectionTransport {
    private let ssl: OpaquePointer
    private var handshakeDone = false
    /// After a fatal error or a sent close_notify OpenSSL must not be asked to shut down again.
    private var finished = false

    init(fd: Int32, context: TLSServerContext) throws(TLSError) {
        guard let ssl = SSL_new(context.context) else { throw .openSSL("SSL_new", TLSError.lastError()) }
        guard SSL_set_fd(ssl, fd) == 1 else {
            SSL_free(ssl)
            throw .openSSL("SSL_set_fd", TLSError.lastError())
        }
        SSL_set_accept_state(ssl)
        self.ssl = ssl
    }

    deinit { SSL_free(ssl) }

    var needsHandshake: Bool { true }

    func handshake() -> TransportIO? {
        if handshakeDone { return nil }
        // OpenSSL's error queue is per thread and shared by every connection of this loop:
        // start each operation from an empty one so SSL_get_error sees only this call's.
        ERR_clear_error()
        let result = SSL_do_handshake(ssl)
        if result == 1 {
            var protocolName = [CChar](repeating: 0, count: 16)
            let length = curec_tls_alpn_selected(ssl, &protocolName, Int32(protocolName.count))
            guard length == 2, protocolName[0] == CChar(UInt8(ascii: "h")), protocolName[1] == CChar(UInt8(ascii: "2")) else {
                return .failed("the client did not negotiate ALPN h2")
            }
            handshakeDone = true
            return nil
        }
        return outcome(of: result, operation: "handshake")
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) -> TransportIO {
        // One SSL_read returns at most one record: fill the buffer from as many as are ready,
        // so data OpenSSL has already taken off the socket is not left waiting for an event.
        var total = 0
        ERR_clear_error()
        while total < buffer.count {
            let remaining = Int32(clamping: buffer.count - total)
            let result = SSL_read(ssl, buffer.baseAddress! + total, remaining)
            if result > 0 {
                total += Int(result)
                continue
            }
            let outcome = outcome(of: result, operation: "read")
            if total > 0, outcome == .wantRead || outcome == .wantWrite { break }
            return total > 0 ? .bytes(total) : outcome
        }
        return .bytes(total)
    }

    func write(_ bytes: UnsafeRawBufferPointer) -> TransportIO {
        guard !bytes.isEmpty else { return .bytes(0) }
        ERR_clear_error()
        let result = SSL_write(ssl, bytes.baseAddress, Int32(clamping: bytes.count))
        if result > 0 { return .bytes(Int(result)) }
        return outcome(of: result, operation: "write")
    }

    func shutdown() {
        guard handshakeDone, !finished else { return }
        finished = true
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
    }

    var hasPendingInput: Bool { !finished && SSL_has_pending(ssl) == 1 }

    private func outcome(of result: Int32, operation: String) -> TransportIO {
        let code = SSL_get_error(ssl, result)
        switch code {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        case SSL_ERROR_ZERO_RETURN: return .closed
        case SSL_ERROR_SYSCALL:
            let saved = errno
            let detail = TLSError.lastError()
            if saved == EAGAIN || saved == EWOULDBLOCK || saved == EINTR { return .wantRead }
            finished = true
            if result == 0 || saved == 0 { return detail.isEmpty ? .closed : .failed("TLS \(operation): \(detail)") }
            return .failed("TLS \(operation): errno \(saved)")
        default:
            finished = true
            return .failed("TLS \(operation): \(TLSError.lastError())")
        }
    }
}
