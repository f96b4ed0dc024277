import CNGHTTP2
import CLinux
import Foundation
import SwiftProtobuf

#if canImport(Glibc)
import Glibc
#endif

/// A small blocking gRPC client over h2c on libnghttp2, for tools such as the `curec` CLI.
///
/// One connection, one call at a time, on the calling thread. Calls fail with ``RPCError``
/// carrying the server's status code and message (or UNAVAILABLE / DEADLINE_EXCEEDED for
/// transport problems), so tools can show exactly what the server said.
public final class RPCClient {
    private let fd: Int32
    private var session: OpaquePointer? = nil
    fileprivate var call: ClientCall? = nil
    private var readBuffer = [UInt8](repeating: 0, count: 64 * 1024)

    /// Connects to `host:port` (IPv4, IPv6 or a name) within `timeout` seconds.
    public init(address: String, timeout: Double = 5) throws(RPCError) {
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
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw RPCError(.unavailable, "cannot connect to \(address): \(reason) (is curecd running?)")
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        self.fd = fd
        let userData = Unmanaged.passUnretained(self).toOpaque()
        guard nghttp2_session_client_new(&session, ClientCallbacks.shared.pointer, userData) == 0 else {
            close(fd)
            throw RPCError(.internal, "cannot create an HTTP/2 session")
        }
        var settings = [nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: 1 << 20)]
        nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
    }

    deinit {
        if let session { nghttp2_session_del(session) }
        close(fd)
    }

    /// Calls a unary method.
    public func unary<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ path: String, _ request: Request, timeout: Double = 30, as: Response.Type = Response.self
    ) throws(RPCError) -> Response {
        var response: Response? = nil
        try serverStreaming(path, request, timeout: timeout) { (message: Response) in
            guard response == nil else { throw RPCError(.internal, "\(path) answered with more than one message") }
            response = message
        }
        guard let response else { throw RPCError(.internal, "\(path) answered OK without a message") }
        return response
    }

    /// Calls a server-streaming method; `onMessage` sees each response as it arrives.
    public func serverStreaming<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ path: String, _ request: Request, timeout: Double = 30,
        onMessage: (Response) throws -> Void
    ) throws(RPCError) {
        let body = MessageFramer.frame(try MessageCoding.encode(request))
        let call = ClientCall(body: body, maxMessageBytes: 64 * 1024 * 1024)
        self.call = call
        defer { self.call = nil }
        var headers = HeaderBlock()
        headers.add(":method", "POST")
        headers.add(":scheme", "http")
        headers.add(":path", path)
        headers.add(":authority", "curec")
        headers.add("content-type", "application/grpc")
        headers.add("te", "trailers")
        headers.add("user-agent", "curec-cli")
        if timeout > 0 { headers.add("grpc-timeout", "\(max(1, Int(timeout * 1000)))m") }
        var provider = nghttp2_data_provider()
        provider.read_callback = ClientCallbacks.readRequest
        let streamID = headers.withNameValues { nvs, count in
            nghttp2_submit_request(session, nil, nvs, count, &provider, nil)
        }
        guard streamID > 0 else { throw RPCError(.internal, "cannot submit the request (nghttp2 error \(streamID))") }
        let deadline = Date().addingTimeInterval(timeout > 0 ? timeout + 5 : 365 * 86400)
        while !call.closed {
            try pump(deadline: deadline)
            for message in call.takeMessages() {
                let decoded: Response
                do {
                    decoded = try Response(serializedBytes: message)
                } catch {
                    throw RPCError(.internal, "cannot parse the response as \(Response.protoMessageName): \(error)")
                }
                do {
                    try onMessage(decoded)
                } catch let error as RPCError {
                    nghttp2_submit_rst_stream(session, 0, streamID, UInt32(NGHTTP2_CANCEL.rawValue))
                    _ = try? pump(deadline: Date().addingTimeInterval(1), once: true)
                    throw error
                } catch {
                    throw RPCError(.cancelled, "\(error)")
                }
            }
        }
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
            if length <= 0 { break }
            var offset = 0
            while offset < length {
                let sent = send(fd, data! + offset, length - offset, Int32(MSG_NOSIGNAL))
                guard sent > 0 else { throw RPCError(.unavailable, "the connection to the server broke while sending") }
                offset += sent
            }
        }
        if call?.closed == true { return }
        let remaining = deadline.timeIntervalSinceNow
        guard remaining > 0 else { throw RPCError(.deadlineExceeded, "no answer from the server in time") }
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&poller, 1, Int32(min(remaining, 1) * 1000))
        if ready <= 0 { return }
        let count = readBuffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { throw RPCError(.unavailable, "the server closed the connection") }
        let consumed = readBuffer.withUnsafeBufferPointer { nghttp2_session_mem_recv(session, $0.baseAddress, count) }
        guard consumed >= 0 else { throw RPCError(.internal, "HTTP/2 protocol error from the server") }
        if !once, nghttp2_session_want_write(session) != 0 { try pump(deadline: deadline, once: true) }
    }
}

/// The state of the one call in progress.
final class ClientCall {
    let body: [UInt8]
    var bodyOffset = 0
    var deframer: MessageDeframer
    var messages: [[UInt8]] = []
    var httpStatus: String? = nil
    var statusCode: StatusCode? = nil
    var statusMessage = ""
    var failure: RPCError? = nil
    var closed = false

    init(body: [UInt8], maxMessageBytes: Int) {
        self.body = body
        self.deframer = MessageDeframer(maxMessageBytes: maxMessageBytes)
    }

    func takeMessages() -> [[UInt8]] {
        defer { messages.removeAll() }
        return messages
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

    /// Streams the request body, then ends the stream.
    static let readRequest: nghttp2_data_source_read_callback = { _, _, buffer, length, flags, _, userData in
        guard let call = ClientCallbacks.client(userData)?.call, let buffer, let flags else { return 0 }
        let count = min(length, call.body.count - call.bodyOffset)
        call.body.withUnsafeBufferPointer { source in
            buffer.update(from: source.baseAddress! + call.bodyOffset, count: count)
        }
        call.bodyOffset += count
        if call.bodyOffset == call.body.count { flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue }
        return count
    }
}
