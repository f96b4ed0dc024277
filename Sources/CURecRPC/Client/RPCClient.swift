import CNGHTTP2
import CLinux
import Foundation
import SwiftProtobuf

#if canImport(Glibc)
import Glibc
#endif

/// A small blocking gRPC client over HTTP/2 on libnghttp2 (cleartext, TLS, or a UNIX socket),
/// for tools such as the `curec` CLI.
///
/// One connection, one call at a time, on the calling thread. Calls fail with ``RPCError``
/// carrying the server's status code and message (or UNAVAILABLE / DEADLINE_EXCEEDED for
/// transport problems), so tools can show exactly what the server said.
public final class RPCClient {
    private let fd: Int32
    private let transport: any ClientTransport
    /// Sent as `authorization: Bearer <token>` on every call.
    private let bearerToken: String?
    private let scheme: String
    private var session: OpaquePointer? = nil
    fileprivate var call: ClientCall? = nil
    private var readBuffer = [UInt8](repeating: 0, count: 64 * 1024)

    /// Connects to `host:port` (IPv4, IPv6 or a name), or to `unix:/path` (the daemon's admin
    /// socket), within `timeout` seconds; with `tls`, runs the TLS handshake; with
    /// `bearerToken`, sends it on every call.
    public init(address: String, timeout: Double = 5, tls: TLSClientSettings? = nil,
                bearerToken: String? = nil) throws(RPCError) {
        self.bearerToken = bearerToken
        self.scheme = tls == nil ? "http" : "https"
        let fd: Int32
        let host: String
        if address.hasPrefix("unix:") {
            host = "localhost"
            fd = try Self.connectUnix(path: String(address.dropFirst("unix:".count)), timeout: timeout)
        } else {
            (fd, host) = try Self.connectTCP(address: address, timeout: timeout)
        }
        do {
            transport = try tls.map { settings throws(RPCError) in try TLSClientTransport(fd: fd, host: host, settings: settings) }
                ?? PlainClientTransport(fd: fd)
        } catch {
            close(fd)
            throw error
        }
        self.fd = fd
        let userData = Unmanaged.passUnretained(self).toOpaque()
        guard nghttp2_session_client_new(&session, ClientCallbacks.shared.pointer, userData) == 0 else {
            close(fd)
            throw RPCError(.internal, "cannot create an HTTP/2 session")
        }
        var settings = [nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: 1 << 20)]
        nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
    }

    private static func connectUnix(path: String, timeout: Double) throws(RPCError) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw RPCError(.invalidArgument, "unix socket path must be 1 to 107 bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw RPCError(.unavailable, "socket() failed: errno \(errno)") }
        SocketTimeout.set(fd, SO_SNDTIMEO, .seconds(timeout))
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw RPCError(.unavailable, "cannot connect to unix:\(path): \(reason) (is curecd running with admin_socket?)")
        }
        return fd
    }

    private static func connectTCP(address: String, timeout: Double) throws(RPCError) -> (Int32, String) {
        let parsed: (host: String, port: Int)
        do {
            parsed = try RPCServerConfiguration.parseListenAddress(address)
        } catch {
            throw RPCError(.invalidArgument, "\(error)")
        }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var results: UnsafeMutablePointer<addrinfo>? = nil
        guard getaddrinfo(parsed.host, String(parsed.port), &hints, &results) == 0, let first = results else {
            throw RPCError(.unavailable, "cannot resolve \(parsed.host)")
        }
        defer { freeaddrinfo(results) }
        let fd = socket(first.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw RPCError(.unavailable, "socket() failed: errno \(errno)") }
        SocketTimeout.set(fd, SO_SNDTIMEO, .seconds(timeout))
        guard connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw RPCError(.unavailable, "cannot connect to \(address): \(reason) (is curecd running?)")
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        // Bounds the TLS handshake too: a server that never answers it fails the connect.
        SocketTimeout.set(fd, SO_RCVTIMEO, .seconds(timeout))
        return (fd, parsed.host)
    }

    deinit {
        if let session { nghttp2_session_del(session) }
        close(fd)
    }

    /// Calls a unary method.
    public func unary<Request, Response>(
        _ method: RPCMethod<Request, Response>, _ request: Request, timeout: Double = 30
    ) throws(RPCError) -> Response {
        let path = method.path
        var response: Response? = nil
        try call(path, request, timeout: timeout) { (message: Response) in
            guard response == nil else { throw RPCError(.internal, "\(path) answered with more than one message") }
            response = message
        }
        guard let response else { throw RPCError(.internal, "\(path) answered OK without a message") }
        return response
    }

    /// Calls a server-streaming method; `onMessage` sees each response as it arrives.
    ///
    /// An ``RPCError`` thrown by `onMessage` cancels the call and is rethrown as it is; any
    /// other error cancels it too and becomes CANCELLED with the error's description.
    public func serverStreaming<Request, Response>(
        _ method: RPCMethod<Request, Response>, _ request: Request, timeout: Double = 30,
        onMessage: (Response) throws -> Void
    ) throws(RPCError) {
        try call(method.path, request, timeout: timeout, onMessage: onMessage)
    }

    /// Sends one request message to `path` and hands each response to `onMessage`.
    private func call<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ path: String, _ request: Request, timeout: Double, onMessage: (Response) throws -> Void
    ) throws(RPCError) {
        var body: [UInt8]? = MessageFramer.frame(try MessageCoding.encode(request))
        try perform(path, timeout: timeout, nextFrame: {
            defer { body = nil }
            return body
        }, onMessage: onMessage)
    }

    /// Calls a client-streaming method and returns its one response.
    ///
    /// `nextRequest` is called for each request message when the connection can take more
    /// (HTTP/2 flow control), so a large upload is produced piece by piece, never held whole;
    /// it returns nil after the last message. The server may answer before the requests are
    /// all sent (e.g. an error about an early one); `nextRequest` is then not called again.
    /// An ``RPCError`` thrown by `nextRequest` cancels the call and is rethrown as it is; any
    /// other error cancels it too and becomes CANCELLED with the error's description.
    ///
    ///     let file = try FileHandle(forReadingFrom: url)
    ///     var headerSent = false
    ///     let stored = try client.clientStreaming(Curec_V1_DatasetService.Method.upload) {
    ///         if !headerSent { headerSent = true; return Curec_V1_UploadDatasetRequest.with { $0.header.name = "films" } }
    ///         guard let chunk = try file.read(upToCount: 256 * 1024), !chunk.isEmpty else { return nil }
    ///         return Curec_V1_UploadDatasetRequest.with { $0.chunk = chunk }
    ///     }
    public func clientStreaming<Request, Response>(
        _ method: RPCMethod<Request, Response>, timeout: Double = 30,
        nextRequest: () throws -> Request?
    ) throws(RPCError) -> Response {
        let path = method.path
        var response: Response? = nil
        try perform(path, timeout: timeout, nextFrame: { () throws -> [UInt8]? in
            guard let request = try nextRequest() else { return nil }
            return MessageFramer.frame(try MessageCoding.encode(request))
        }, onMessage: { (message: Response) in
            guard response == nil else { throw RPCError(.internal, "\(path) answered with more than one message") }
            response = message
        })
        guard let response else { throw RPCError(.internal, "\(path) answered OK without a message") }
        return response
    }

    /// Runs one call: the request body comes from `nextFrame` (framed messages, nil at the
    /// end) as nghttp2 asks for data; each response message goes to `onMessage`.
    private func perform<Response: SwiftProtobuf.Message>(
        _ path: String, timeout: Double, nextFrame: () throws -> [UInt8]?,
        onMessage: (Response) throws -> Void
    ) throws(RPCError) {
        // The producer is only kept by the call, which ends before this returns.
        let outcome: Result<Void, RPCError> = withoutActuallyEscaping(nextFrame) { producer in
            do throws(RPCError) {
                try run(path, timeout: timeout, producer: producer, onMessage: onMessage)
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try outcome.get()
    }

    private func run<Response: SwiftProtobuf.Message>(
        _ path: String, timeout: Double, producer: @escaping () throws -> [UInt8]?,
        onMessage: (Response) throws -> Void
    ) throws(RPCError) {
        let call = ClientCall(producer: producer, maxMessageBytes: 64 * 1024 * 1024)
        self.call = call
        defer {
            call.producer = nil
            self.call = nil
        }
        var headers = HeaderBlock()
        headers.add(":method", "POST")
        headers.add(":scheme", scheme)
        headers.add(":path", path)
        headers.add(":authority", "curec")
        headers.add("content-type", "application/grpc")
        headers.add("te", "trailers")
        headers.add("user-agent", "curec-cli")
        if let bearerToken { headers.add("authorization", "Bearer \(bearerToken)") }
        if timeout > 0 { headers.add("grpc-timeout", "\(max(1, Int(timeout * 1000)))m") }
        var provider = nghttp2_data_provider()
        provider.read_callback = ClientCallbacks.readRequest
        let streamID = headers.withNameValues { nvs, count in
            nghttp2_submit_request(session, nil, nvs, count, &provider, nil)
        }
        guard streamID > 0 else { throw RPCError(.internal, "cannot submit the request (nghttp2 error \(streamID))") }
        /// Resets the stream if it is still open (the server sees a cancelled call) and sends that out.
        func cancelStream() {
            guard !call.closed else { return }
            nghttp2_submit_rst_stream(session, 0, streamID, UInt32(NGHTTP2_CANCEL.rawValue))
            _ = try? pump(deadline: Date().addingTimeInterval(1), once: true)
        }
        /// Hands the messages received so far to `onMessage`; its error cancels the call.
        func deliver() throws(RPCError) {
            for message in call.takeMessages() {
                let decoded: Response
                do {
                    decoded = try Response(serializedBytes: message)
                } catch {
                    cancelStream()
                    throw RPCError(.internal, "cannot parse the response as \(Response.protoMessageName): \(error)")
                }
                do {
                    try onMessage(decoded)
                } catch let error as RPCError {
                    cancelStream()
                    throw error
                } catch {
                    cancelStream()
                    throw RPCError(.cancelled, "\(error)")
                }
            }
        }
        let deadline = Date().addingTimeInterval(timeout > 0 ? timeout + 5 : 365 * 86400)
        // The call is over when the stream closes, or once the server's trailers have come
        // (it may answer a client-streaming call before every request was sent).
        while !call.closed && call.statusCode == nil {
            try pump(deadline: deadline)
            if let failure = call.producerFailure {
                cancelStream()
                throw failure
            }
            try deliver()
        }
        try deliver()
        cancelStream()
        if let failure = call.failure { throw failure }
        guard let code = call.statusCode else {
            throw RPCError(.internal, "the server closed the call without a grpc-status (HTTP status \(call.httpStatus ?? "none"))")
        }
        guard code == .ok else { throw RPCError(code, call.statusMessage) }
    }

    /// Sends what nghttp2 has queued, then waits for and processes input.
    private func pump(deadline: Date, once: Bool = false) throws(RPCError) {
        while nghttp2_session_want_write(session) != 0 {
            var data: UnsafePointer<UInt8>? = nil
            let length = nghttp2_session_mem_send(session, &data)
            guard length > 0, let data else { break }
            var offset = 0
            while offset < length {
                let sent = transport.send(data + offset, length - offset)
                if sent < 0, errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR {
                    // The socket's buffer is full (a large upload to a busy server): wait for room.
                    guard deadline.timeIntervalSinceNow > 0 else {
                        throw RPCError(.deadlineExceeded, "the server did not take the request in time")
                    }
                    var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&poller, 1, 1000)
                    continue
                }
                guard sent > 0 else { throw RPCError(.unavailable, "the connection to the server broke while sending (a server that speaks TLS closes cleartext connections)") }
                offset += sent
            }
        }
        if call?.closed == true || call?.producerFailure != nil { return }
        let remaining = deadline.timeIntervalSinceNow
        guard remaining > 0 else { throw RPCError(.deadlineExceeded, "no answer from the server in time") }
        if !transport.hasBufferedInput {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32(min(remaining, 1) * 1000))
            if ready <= 0 { return }
        }
        let count = readBuffer.withUnsafeMutableBytes { transport.receive($0.baseAddress!, $0.count) }
        if count < 0, errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return }
        guard count > 0 else { throw RPCError(.unavailable, "the server closed the connection") }
        let consumed = readBuffer.withUnsafeBufferPointer { nghttp2_session_mem_recv(session, $0.baseAddress, count) }
        guard consumed >= 0 else { throw RPCError(.internal, "HTTP/2 protocol error from the server") }
        if !once, nghttp2_session_want_write(session) != 0 { try pump(deadline: deadline, once: true) }
    }
}

/// The state of the one call in progress.
final class ClientCall {
    /// Gives the request body's next framed message, nil after the last. Called from
    /// nghttp2's data callback on the calling thread; cleared when the call ends.
    var producer: (() throws -> [UInt8]?)?
    /// The framed message being sent and how much of it has gone.
    var pending: [UInt8] = []
    var pendingOffset = 0
    var producerDone = false
    /// Set when `producer` threw: the call is then cancelled and this is its error.
    var producerFailure: RPCError? = nil
    var deframer: MessageDeframer
    var messages: [[UInt8]] = []
    var httpStatus: String? = nil
    var statusCode: StatusCode? = nil
    var statusMessage = ""
    var failure: RPCError? = nil
    var closed = false

    init(producer: @escaping () throws -> [UInt8]?, maxMessageBytes: Int) {
        self.producer = producer
        self.deframer = MessageDeframer(maxMessageBytes: maxMessageBytes)
    }

    func takeMessages() -> [[UInt8]] {
        defer { messages.removeAll() }
        return messages
    }

    /// Makes `pending` hold unsent bytes unless the body has ended; false when it has (or
    /// the producer failed).
    func refill() -> Bool {
        while pendingOffset == pending.count {
            guard !producerDone, producerFailure == nil, let producer else { return false }
            do {
                if let next = try producer() {
                    pending = next
                    pendingOffset = 0
                } else {
                    producerDone = true
                }
            } catch let error as RPCError {
                producerFailure = error
            } catch {
                producerFailure = RPCError(.cancelled, "\(error)")
            }
        }
        return true
    }
}

/// nghttp2 callbacks of the client session.
final class ClientCallbacks: @unchecked Sendable {
    static let shared = ClientCallbacks()
    let pointer: OpaquePointer

    static func client(_ userData: UnsafeMutableRawPointer?) -> RPCClient? {
        userData.map { Unmanaged<RPCClient>.fromOpaque($0).takeUnretainedValue() }
    }

    private init() {
        var callbacks: OpaquePointer? = nil
        nghttp2_session_callbacks_new(&callbacks)
        pointer = callbacks!
        nghttp2_session_callbacks_set_on_header_callback(pointer) { _, _, name, nameLength, value, valueLength, _, userData in
            guard let call = ClientCallbacks.client(userData)?.call, let name, let value else { return 0 }
            let key = String(decoding: UnsafeBufferPointer(start: name, count: nameLength), as: UTF8.self)
            let text = String(decoding: UnsafeBufferPointer(start: value, count: valueLength), as: UTF8.self)
            switch key {
            case ":status": call.httpStatus = text
            case "grpc-status": call.statusCode = Int(text).flatMap { StatusCode(rawValue: $0) } ?? .unknown
            case "grpc-message": call.statusMessage = WireFormats.percentDecode(text)
            default: break
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(pointer) { _, _, _, data, length, userData in
            guard let call = ClientCallbacks.client(userData)?.call, let data else { return 0 }
            do {
                try call.deframer.process(UnsafeRawBufferPointer(start: data, count: length)) { call.messages.append($0) }
            } catch {
                call.failure = RPCError(.internal, "malformed response message: \(error)")
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(pointer) { _, _, errorCode, userData in
            guard let call = ClientCallbacks.client(userData)?.call else { return 0 }
            call.closed = true
            if call.statusCode == nil && call.failure == nil && errorCode != 0 {
                call.failure = RPCError(.unavailable, "the server reset the call (HTTP/2 error \(errorCode))")
            }
            return 0
        }
    }

    /// Streams the request body message by message as flow control allows, then ends the
    /// stream. When the producer fails, sending pauses and the call is cancelled.
    static let readRequest: nghttp2_data_source_read_callback = { _, _, buffer, length, flags, _, userData in
        guard let buffer, let flags else { return 0 }
        guard let call = ClientCallbacks.client(userData)?.call else {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            return 0
        }
        guard call.refill() else {
            if call.producerFailure != nil { return Int(NGHTTP2_ERR_DEFERRED.rawValue) }
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            return 0
        }
        let count = min(length, call.pending.count - call.pendingOffset)
        call.pending.withUnsafeBufferPointer { source in
            if let base = source.baseAddress { buffer.update(from: base + call.pendingOffset, count: count) }
        }
        call.pendingOffset += count
        // End the stream with this frame when nothing follows.
        if call.pendingOffset == call.pending.count, !call.refill(), call.producerFailure == nil {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
        }
        return count
    }
}
