import CNGHTTP2
import CLinux
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// One accepted HTTP/2 connection, driven by libnghttp2 on one event loop.
///
/// Bytes move through a ``ConnectionTransport`` (cleartext or TLS), which the HTTP/2 code
/// does not otherwise know about. Reads are fed to `nghttp2_session_mem_recv`; frames nghttp2
/// produces are coalesced into a write buffer and sent with as few writes as possible. Every call on the connection
/// is a ``ServerCall``. Confined to its loop: other threads reach it only through
/// `EventLoop.execute`.
final class HTTP2Connection: EventSource, @unchecked Sendable {
    let fd: Int32
    unowned let loop: EventLoop
    let shared: ServerShared
    let onClose: (HTTP2Connection) -> Void
    /// Which listener accepted the connection (the admin socket or the main one).
    let listener: ListenerRole
    private let transport: any ConnectionTransport
    /// True until the transport's handshake (TLS) has finished; no HTTP/2 until then.
    private var handshaking: Bool
    /// The peer's address, for the per-peer connection limit.
    let peer: String

    private var session: OpaquePointer? = nil
    private(set) var calls: [Int32: ServerCall] = [:]
    private var writeBuffer: [UInt8] = []
    private var writeOffset = 0
    private var watchingWritable = false
    private(set) var isClosed = false
    private(set) var lastActivity: UInt64 = MonotonicClock.nanoseconds()
    private var goingAway = false
    /// After a fatal protocol error: GOAWAY sent, write side shut, input discarded until EOF.
    private var lingering = false

    // Budgets and timeouts (see ``RPCServerConfiguration``).
    /// Request bytes held by this connection's calls.
    private(set) var buffer: ConnectionBuffer! = nil
    /// Connection-level flow-control credit held back while the buffer is over its limit.
    private var withheldCredit = 0
    /// Calls whose stream is gone (reset, closed) but whose handler still runs: they count
    /// against the concurrent-stream limit until the handler returns.
    private var orphanedHandlers = 0
    private let acceptedAt = MonotonicClock.nanoseconds()
    /// When the client's preface became due: at accept, or when the TLS handshake finished
    /// (the handshake has its own time limit).
    private var prefaceClockStart = MonotonicClock.nanoseconds()
    /// The client's SETTINGS arrived (its preface was complete).
    private var prefaceReceived = false
    /// When the socket last took bytes, or when it first refused them.
    private var writeStalledSince: UInt64? = nil
    /// When the keepalive PING went out, until the peer is heard from again.
    private var pingSentAt: UInt64? = nil
    /// This connection's age limit, jittered by ±10 % so connections do not all go at once.
    private let ageLimitNanos: UInt64?
    /// When the age GOAWAY went out.
    private var agedOutAt: UInt64? = nil

    init(fd: Int32, peer: String, loop: EventLoop, shared: ServerShared, listener: ListenerRole = .main,
         transport: any ConnectionTransport, onClose: @escaping (HTTP2Connection) -> Void) throws {
        self.fd = fd
        self.peer = peer
        self.loop = loop
        self.shared = shared
        self.listener = listener
        self.transport = transport
        self.handshaking = transport.needsHandshake
        self.onClose = onClose
        let configuration = shared.configuration
        self.ageLimitNanos = configuration.maxConnectionAge.map {
            UInt64(Double(RPCServerConfiguration.nanoseconds($0)) * Double.random(in: 0.9...1.1))
        }
        writeBuffer.reserveCapacity(64 * 1024)

        var option: OpaquePointer? = nil
        nghttp2_option_new(&option)
        defer { nghttp2_option_del(option) }
        nghttp2_option_set_no_auto_window_update(option, 1)
        nghttp2_option_set_max_outbound_ack(option, 10_000)
        // Flood guards, set explicitly rather than relying on the library's defaults.
        nghttp2_option_set_max_settings(option, configuration.maxSettingsEntries)
        nghttp2_option_set_max_continuations(option, configuration.maxContinuations)
        nghttp2_option_set_stream_reset_rate_limit(option, configuration.resetBurst, configuration.resetRatePerSecond)

        let userData = Unmanaged.passUnretained(self).toOpaque()
        let result = nghttp2_session_server_new2(&session, HTTP2Callbacks.shared.pointer, userData, option)
        guard result == 0, session != nil else { throw RPCServerError.http2("nghttp2_session_server_new2", result) }

        var settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue),
                                   value: configuration.maxConcurrentStreams),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue),
                                   value: configuration.initialWindowBytes),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue),
                                   value: UInt32(configuration.maxHeaderListBytes)),
        ]
        nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
        nghttp2_session_set_local_window_size(
            session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, configuration.connectionWindowBytes)
        let connection = WeakConnection(self)
        let loop = self.loop
        buffer = ConnectionBuffer(limit: configuration.maxBufferedBytesPerConnection) {
            loop.execute { connection.value?.releaseWithheldCredit() }
        }
    }

    deinit {
        if let session { nghttp2_session_del(session) }
    }

    /// Registers with the loop and sends the server's SETTINGS (after the transport's
    /// handshake, which must finish within the configured time).
    func start() throws {
        try loop.register(fd: fd, events: EPOLLIN.rawValue | EPOLLRDHUP.rawValue, source: self)
        guard handshaking else {
            flush()
            return
        }
        loop.schedule(afterNanos: shared.configuration.security.handshakeTimeoutNanos) { [weak self] in
            guard let self, self.handshaking, !self.isClosed else { return }
            self.shared.logger.debug("closing a connection whose TLS handshake did not finish in time")
            self.close()
        }
        continueHandshake()
    }

    // MARK: I/O

    /// Advances the transport's handshake; once done, HTTP/2 starts with the server's SETTINGS.
    private func continueHandshake() {
        switch transport.handshake() {
        case nil:
            handshaking = false
            watchWritable(false)
            lastActivity = MonotonicClock.nanoseconds()
            prefaceClockStart = lastActivity
            flush()
            if !isClosed { readAvailable() }
        case .wantWrite?:
            watchWritable(true)
        case .wantRead?, .bytes?:
            watchWritable(false)
        case .closed?:
            close()
        case .failed(let reason)?:
            shared.logger.debug("closing a connection whose TLS handshake failed", metadata: ["reason": "\(reason)"])
            close()
        }
    }

    func handleEvents(_ events: UInt32) {
        if handshaking {
            continueHandshake()
            return
        }
        if events & EPOLLOUT.rawValue != 0 { flush() }
        if isClosed { return }
        if events & (EPOLLIN.rawValue | EPOLLERR.rawValue | EPOLLHUP.rawValue | EPOLLRDHUP.rawValue) != 0 {
            readAvailable()
        }
    }

    private func readAvailable() {
        let buffer = loop.readBuffer
        for _ in 0..<16 {
            let outcome = transport.read(into: buffer)
            if lingering {
                switch outcome {
                case .bytes: continue
                case .wantRead, .wantWrite: return
                case .closed, .failed: close()
                }
                return
            }
            switch outcome {
            case .bytes(let count):
                lastActivity = MonotonicClock.nanoseconds()
                pingSentAt = nil
                let consumed = nghttp2_session_mem_recv(
                    session, buffer.baseAddress!.assumingMemoryBound(to: UInt8.self), count)
                if consumed < 0 {
                    shared.logger.debug("closing connection after a protocol error", metadata: [
                        "error": "\(String(cString: nghttp2_strerror(Int32(consumed))))"])
                    closeAfterProtocolError()
                    return
                }
                if count < buffer.count { break }
                continue
            case .wantRead:
                break
            case .wantWrite:
                // TLS needs to write before it can read more (a key update): wait for room.
                watchWritable(true)
            case .closed, .failed:
                close()
                return
            }
            break
        }
        // TLS may hold whole records it already took off the socket; epoll will not say so.
        if !isClosed && transport.hasPendingInput {
            loop.execute { [weak self] in
                guard let self, !self.isClosed else { return }
                self.readAvailable()
            }
        }
        flush()
    }

    /// Sends everything nghttp2 has queued, watching for writability if the socket is full.
    func flush() {
        guard !isClosed, !handshaking, let session else { return }
        while true {
            if writeOffset < writeBuffer.count {
                let outcome = writeBuffer.withUnsafeBytes { raw in
                    transport.write(UnsafeRawBufferPointer(rebasing: raw[writeOffset...]))
                }
                let sent: Int
                switch outcome {
                case .bytes(let count):
                    sent = count
                case .wantWrite, .wantRead:
                    watchWritable(true)
                    return
                case .closed, .failed:
                    close()
                    return
                }
                writeOffset += sent
                writeStalledSince = nil
                if writeOffset < writeBuffer.count {
                    watchWritable(true)
                    return
                }
            }
            writeBuffer.removeAll(keepingCapacity: true)
            writeOffset = 0
            // Collect frames until the buffer is reasonably full.
            while writeBuffer.count < 64 * 1024 {
                var data: UnsafePointer<UInt8>? = nil
                let length = nghttp2_session_mem_send(session, &data)
                if length < 0 {
                    close()
                    return
                }
                if length == 0 { break }
                writeBuffer.append(contentsOf: UnsafeBufferPointer(start: data, count: length))
            }
            if writeBuffer.isEmpty { break }
        }
        watchWritable(false)
        if !lingering && nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0 {
            close()
        }
    }

    /// Sends GOAWAY, shuts the write side and discards input until the peer closes (or a
    /// second passes), so the peer reads the GOAWAY instead of a connection reset.
    private func closeAfterProtocolError() {
        guard let session else { return }
        lingering = true
        nghttp2_session_terminate_session(session, UInt32(NGHTTP2_PROTOCOL_ERROR.rawValue))
        flush()
        guard !isClosed else { return }
        transport.shutdown()
        shutdown(fd, Int32(SHUT_WR))
        loop.schedule(afterNanos: 1_000_000_000) { [weak self] in self?.close() }
    }

    private func watchWritable(_ on: Bool) {
        if on, writeStalledSince == nil { writeStalledSince = MonotonicClock.nanoseconds() }
        if !on { writeStalledSince = nil }
        guard on != watchingWritable else { return }
        watchingWritable = on
        var events = EPOLLIN.rawValue | EPOLLRDHUP.rawValue
        if on { events |= EPOLLOUT.rawValue }
        loop.modify(fd: fd, events: events)
    }

    /// Closes the socket and cancels every call still open.
    func close() {
        guard !isClosed else { return }
        isClosed = true
        loop.deregister(fd: fd)
        transport.shutdown()
        Glibc.close(fd)
        let open = calls
        calls.removeAll()
        for call in open.values {
            if let timer = call.deadlineTimer { loop.cancelTimer(timer) }
            releaseHeld(call)
            call.channel.cancel(RPCError(.cancelled, "the connection closed"))
        }
        onClose(self)
    }

    // MARK: Lifecycle

    /// Starts a graceful close: GOAWAY now, then the connection ends once its calls finish.
    func beginGracefulShutdown() {
        guard !isClosed, !goingAway, let session else { return }
        goingAway = true
        nghttp2_submit_shutdown_notice(session)
        flush()
        // A round trip later, name the last stream that will be processed.
        loop.schedule(afterNanos: 100_000_000) { [weak self] in
            guard let self, !self.isClosed, let session = self.session else { return }
            nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue),
                                  nghttp2_session_get_last_proc_stream_id(session),
                                  UInt32(NGHTTP2_NO_ERROR.rawValue), nil, 0)
            self.flush()
        }
    }

    /// Closes the connection with GOAWAY if it has had no open calls for `idleNanos`.
    func closeIfIdle(now: UInt64, idleNanos: UInt64) {
        guard !isClosed, calls.isEmpty, orphanedHandlers == 0, now &- lastActivity > idleNanos,
              let session else { return }
        nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue),
                              nghttp2_session_get_last_proc_stream_id(session),
                              UInt32(NGHTTP2_NO_ERROR.rawValue), nil, 0)
        goingAway = true
        flush()
        close()
    }

    /// The once-a-second check of every timeout: idle, header and body reads, stalled
    /// sends, keepalive and the connection's age. Loop thread.
    func sweep(now: UInt64) {
        guard !isClosed, !lingering else { return }
        let configuration = shared.configuration
        let headerNanos = RPCServerConfiguration.nanoseconds(configuration.headerReadTimeout)
        let sendNanos = RPCServerConfiguration.nanoseconds(configuration.sendTimeout)
        // A peer that never completes its preface, or a header block, holds a slot for nothing.
        if !prefaceReceived && !handshaking && now &- prefaceClockStart > headerNanos {
            shared.logger.debug("closing a connection that sent no preface in time", metadata: ["peer": "\(peer)"])
            close()
            return
        }
        if calls.values.contains(where: { !$0.headersComplete && now &- $0.openedAt > headerNanos }) {
            shared.logger.debug("closing a connection whose request headers did not complete in time",
                                metadata: ["peer": "\(peer)"])
            closeAfterProtocolError()
            return
        }
        // The socket has taken nothing for too long: the peer stopped reading.
        if let stalled = writeStalledSince, now &- stalled > sendNanos {
            shared.logger.debug("closing a connection whose peer stopped reading", metadata: ["peer": "\(peer)"])
            close()
            return
        }
        let bodyNanos = RPCServerConfiguration.nanoseconds(configuration.bodyReadTimeout)
        for call in Array(calls.values) where !call.completed {
            if call.headersComplete, !call.dispatched, !call.requestEnded, !call.streamsRequests,
               now &- call.lastReceivedAt > bodyNanos {
                releaseHeld(call)
                fail(call, status: RPCStatus(
                    code: .cancelled,
                    message: "the request stopped arriving (no data for \(configuration.bodyReadTimeout)); the server ended the call"))
            } else if call.headersSent, now &- call.lastSentAt > sendNanos, call.channel.hasPendingOutbound {
                // A reader that opens no window: reset the stream, free what it pins.
                resetStalled(call)
            }
        }
        if let interval = configuration.keepaliveInterval, let session {
            if let sent = pingSentAt {
                if now &- sent > RPCServerConfiguration.nanoseconds(configuration.keepaliveTimeout) {
                    shared.logger.debug("closing a connection that did not answer a keepalive PING",
                                        metadata: ["peer": "\(peer)"])
                    close()
                    return
                }
            } else if now &- lastActivity > RPCServerConfiguration.nanoseconds(interval) {
                pingSentAt = now
                nghttp2_submit_ping(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nil)
            }
        }
        if let limit = ageLimitNanos {
            if let since = agedOutAt {
                if now &- since > RPCServerConfiguration.nanoseconds(configuration.maxConnectionAgeGrace) {
                    close()
                    return
                }
            } else if now &- acceptedAt > limit {
                agedOutAt = now
                beginGracefulShutdown()
            }
        }
        flush()
    }

    /// Resets a stream whose reader opened no window within the send timeout.
    private func resetStalled(_ call: ServerCall) {
        guard let session else { return }
        call.completed = true
        if let timer = call.deadlineTimer { loop.cancelTimer(timer) }
        call.channel.abort(with: RPCStatus(
            code: .cancelled, message: "the client read nothing for \(shared.configuration.sendTimeout)"))
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), call.streamID, UInt32(NGHTTP2_CANCEL.rawValue))
    }

    /// Credits the connection window with what was held back, once the buffer has room.
    func releaseWithheldCredit() {
        guard !isClosed, withheldCredit > 0, !buffer.isOver, let session else { return }
        nghttp2_session_consume_connection(session, withheldCredit)
        withheldCredit = 0
        flush()
    }

    /// Credits `count` received bytes to the connection window, or holds them back while the
    /// connection's buffer is over its limit.
    private func creditConnection(_ count: Int) {
        guard let session else { return }
        if buffer.isOver {
            withheldCredit += count
            buffer.markStarved()
        } else {
            nghttp2_session_consume_connection(session, count + withheldCredit)
            withheldCredit = 0
        }
    }

    /// Brings the buffer's count of `call` up to date with what the loop holds for it.
    private func updateHeld(_ call: ServerCall) {
        let now = call.deframer.bufferedBytes + (call.pendingRequest?.count ?? 0)
        let delta = now - call.heldBytes
        call.heldBytes = now
        if delta > 0 { buffer.add(delta) } else if delta < 0 { buffer.remove(-delta) }
    }

    /// Takes `call`'s bytes out of the buffer's count (the call ended or was handed over).
    private func releaseHeld(_ call: ServerCall) {
        buffer.remove(call.heldBytes)
        call.heldBytes = 0
    }

    /// A handler task returned: an orphaned one frees its slot. Loop thread.
    func handlerReturned(streamID: Int32) {
        guard !isClosed else { return }
        if let call = calls[streamID] {
            call.handlerRunning = false
        } else if orphanedHandlers > 0 {
            orphanedHandlers -= 1
        }
    }

    /// The client's SETTINGS arrived.
    fileprivate func settingsReceived() {
        prefaceReceived = true
    }

    // MARK: Calls (invoked from the nghttp2 callbacks)

    fileprivate func beginCall(streamID: Int32) {
        let loop = self.loop
        let connection = WeakConnection(self)
        let call = ServerCall(
            streamID: streamID, maxMessageBytes: shared.configuration.maxReceiveMessageBytes, buffer: buffer,
            wakeLoop: {
                loop.execute { connection.value?.serviceCall(streamID: streamID) }
            })
        calls[streamID] = call
    }

    fileprivate func receiveHeader(streamID: Int32, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let call = calls[streamID] else { return true }
        call.headerBytes += name.count + value.count + 32
        if call.headerBytes > shared.configuration.maxHeaderListBytes {
            return false
        }
        let nameString = String(decoding: name, as: UTF8.self)
        let valueString = String(decoding: value, as: UTF8.self)
        if nameString.hasPrefix(":") {
            switch nameString {
            case ":path": call.path = valueString
            case ":method": call.method = valueString
            default: break
            }
            return true
        }
        switch nameString {
        case "content-type": call.contentType = valueString
        case "grpc-timeout": call.timeoutText = valueString
        case "grpc-encoding": call.encoding = valueString
        case "authorization": call.authorization = valueString
        case "te", "grpc-accept-encoding", "host", "connection": break
        default:
            if !call.metadata.addWireHeader(name: nameString, value: valueString) {
                call.badHeader = "metadata '\(nameString)' is not valid base64"
            }
        }
        return true
    }

    fileprivate func requestHeadersComplete(streamID: Int32, endStream: Bool) {
        guard let call = calls[streamID] else { return }
        call.headersComplete = true
        call.lastReceivedAt = MonotonicClock.nanoseconds()
        // Reset calls whose handlers still run hold their slot: a client cannot open and
        // reset streams faster than their work ends.
        let limit = Int(shared.configuration.maxConcurrentStreams)
        if calls.count + orphanedHandlers > limit {
            respondWithoutHandler(call, .grpcStatus(RPCStatus(
                code: .resourceExhausted,
                message: "this connection has \(limit) calls in flight (including cancelled calls still finishing); wait for one to end"),
                Metadata()))
            return
        }
        if let response = shared.admit(call: call, connection: self) {
            respondWithoutHandler(call, response)
            return
        }
        if call.streamsRequests { startHandler(call) }
        if endStream { requestEnded(streamID: streamID) }
    }

    fileprivate func receiveData(streamID: Int32, data: UnsafeRawBufferPointer) {
        guard let session else { return }
        guard let call = calls[streamID], !call.completed else {
            nghttp2_session_consume_connection(session, data.count)
            nghttp2_session_consume_stream(session, streamID, data.count)
            return
        }
        call.lastReceivedAt = MonotonicClock.nanoseconds()
        defer { creditConnection(data.count) }
        do {
            try call.deframer.process(data) { message in
                call.requestCount += 1
                if call.streamsRequests {
                    call.channel.deliver(message)
                } else if call.requestCount == 1 {
                    call.pendingRequest = message
                } else {
                    throw RPCError(.internal, "\(call.path) is a unary-request method but the client sent more than one message")
                }
            }
        } catch let error as MessageDeframer.DeframingError {
            releaseHeld(call)
            fail(call, status: Self.status(for: error, path: call.path))
            nghttp2_session_consume_stream(session, streamID, data.count)
            return
        } catch let error as RPCError {
            releaseHeld(call)
            fail(call, status: error.status)
            nghttp2_session_consume_stream(session, streamID, data.count)
            return
        } catch {
            releaseHeld(call)
            fail(call, status: RPCStatus(code: .internal, message: "\(error)"))
            return
        }
        updateHeld(call)
        if !call.streamsRequests || call.channel.inboundHasRoom() {
            nghttp2_session_consume_stream(session, streamID, data.count)
        } else {
            call.unconsumedBytes += data.count
        }
    }

    static func status(for error: MessageDeframer.DeframingError, path: String) -> RPCStatus {
        switch error {
        case .messageTooLarge(let declared, let limit):
            return RPCStatus(code: .resourceExhausted,
                             message: "request message of \(declared) bytes is over the \(limit)-byte limit of this server")
        case .compressedWithoutEncoding:
            return RPCStatus(code: .internal,
                             message: "a request message is marked compressed but the call sent no grpc-encoding")
        case .invalidFlag(let flag):
            return RPCStatus(code: .internal, message: "invalid message flag byte \(flag) in the request (expected 0 or 1)")
        }
    }

    fileprivate func requestEnded(streamID: Int32) {
        guard let call = calls[streamID], !call.completed else { return }
        call.requestEnded = true
        guard call.deframer.isAtMessageBoundary else {
            fail(call, status: RPCStatus(
                code: .internal,
                message: "the request ended inside a message (\(call.deframer.bufferedBytes) bytes of an incomplete message)"))
            return
        }
        if call.streamsRequests {
            call.channel.finishInbound()
            return
        }
        guard call.pendingRequest != nil else {
            fail(call, status: RPCStatus(code: .internal, message: "\(call.path) expects one request message; the client sent none"))
            return
        }
        startHandler(call)
    }

    fileprivate func streamClosed(streamID: Int32, errorCode: UInt32) {
        guard let call = calls.removeValue(forKey: streamID) else { return }
        if let timer = call.deadlineTimer { loop.cancelTimer(timer) }
        releaseHeld(call)
        if call.handlerRunning { orphanedHandlers += 1 }
        releaseWithheldCredit()
        if !call.completed {
            call.channel.cancel(RPCError(.cancelled, "the client cancelled the call (HTTP/2 error code \(errorCode))"))
        }
        call.completed = true
    }

    /// Sends the end of the response early: the call failed before or without its handler.
    private func fail(_ call: ServerCall, status: RPCStatus) {
        guard !call.completed else { return }
        call.channel.abort(with: status)
        serviceCall(call)
    }

    private func respondWithoutHandler(_ call: ServerCall, _ response: EarlyResponse) {
        guard let session else { return }
        call.completed = true
        call.dispatched = true
        var headers = HeaderBlock()
        switch response {
        case .httpStatus(let status):
            headers.add(":status", String(status))
            headers.withNameValues { nvs, count in
                _ = nghttp2_submit_response(session, call.streamID, nvs, count, nil)
            }
        case .grpcStatus(let status, let trailers):
            call.channel.abort(with: status)
            headers.add(":status", "200")
            headers.add("content-type", "application/grpc")
            headers.add("grpc-status", status.code.wireValue)
            if !status.message.isEmpty { headers.add("grpc-message", WireFormats.percentEncode(status.message)) }
            headers.add(trailers)
            headers.withNameValues { nvs, count in
                _ = nghttp2_submit_response(session, call.streamID, nvs, count, nil)
            }
        }
    }

    private func startHandler(_ call: ServerCall) {
        guard !call.dispatched, let route = call.route, let context = call.context else { return }
        call.dispatched = true
        defer {
            updateHeld(call)
            releaseWithheldCredit()
        }
        let loop = self.loop
        let connection = WeakConnection(self)
        let streamID = call.streamID
        let recorder = route.recorder
        let admitted = call.admittedNanos
        let started: UInt64
        if let recorder {
            recorder.handlerStarted()
            started = monotonicNanoseconds()
        } else {
            started = 0
        }
        // Records the end of the handler with the status it ended the call with.
        let record: @Sendable (StatusCode) -> Void = { code in
            guard let recorder else { return }
            let now = monotonicNanoseconds()
            recorder.handlerFinished(code: code, requestNanoseconds: now &- admitted, handlerNanoseconds: now &- started)
        }
        let returned: @Sendable () -> Void = {
            loop.execute { connection.value?.handlerReturned(streamID: streamID) }
        }
        // A unary handler running as a task (also an inline one that declined).
        func startUnaryTask(_ handler: @escaping @Sendable ([UInt8], ServerContext) async throws -> [UInt8]) {
            call.handlerRunning = true
            let request = call.pendingRequest ?? []
            call.pendingRequest = nil
            let channel = call.channel
            channel.attach(task: Task {
                do {
                    let response = try await handler(request, context)
                    try await channel.send(framed: MessageFramer.frame(response))
                    channel.finish(.ok)
                    record(.ok)
                } catch {
                    let (status, trailers) = Self.status(for: error)
                    channel.finish(status, trailingMetadata: trailers)
                    record(status.code)
                }
                returned()
            })
        }
        switch route.handler {
        case .inlineUnary, .inlineUnaryAnswering, .unary: break  // startUnaryTask marks a handler that runs as a task
        default: call.handlerRunning = true
        }
        switch route.handler {
        case .inlineUnary(let handler, let deferred):
            let request = call.pendingRequest ?? []
            do {
                guard let response = try handler(request, context) else {
                    if let deferred {
                        startUnaryTask(deferred)
                        return
                    }
                    throw RPCError(.internal, "the handler gave no response")
                }
                call.pendingRequest = nil
                call.channel.state.withLock { state in
                    let framed = MessageFramer.frame(response)
                    state.outbound.append(framed)
                    state.outboundBytes += framed.count
                    state.finalStatus = .ok
                }
                record(.ok)
            } catch {
                call.pendingRequest = nil
                let (status, trailers) = Self.status(for: error)
                call.channel.finish(status, trailingMetadata: trailers)
                record(status.code)
            }
            serviceCall(call)
        case .inlineUnaryAnswering(let handler, let deferred):
            let request = call.pendingRequest ?? []
            let channel = call.channel
            // Called once, on any thread, possibly before the handler returns.
            let respond: @Sendable (Result<[UInt8], any Error>) -> Void = { result in
                switch result {
                case .success(let response):
                    channel.finishUnary(with: response)
                    record(.ok)
                case .failure(let error):
                    let (status, trailers) = Self.status(for: error)
                    channel.finish(status, trailingMetadata: trailers)
                    record(status.code)
                }
                returned()
            }
            do {
                switch try handler(request, context, respond) {
                case .now(let response):
                    call.pendingRequest = nil
                    call.channel.state.withLock { state in
                        let framed = MessageFramer.frame(response)
                        state.outbound.append(framed)
                        state.outboundBytes += framed.count
                        state.finalStatus = .ok
                    }
                    record(.ok)
                case .later:
                    // The responder's `returned` reaches the loop after this.
                    call.pendingRequest = nil
                    call.handlerRunning = true
                    return
                case .declined:
                    startUnaryTask(deferred)
                    return
                }
            } catch {
                call.pendingRequest = nil
                let (status, trailers) = Self.status(for: error)
                call.channel.finish(status, trailingMetadata: trailers)
                record(status.code)
            }
            serviceCall(call)
        case .unary(let handler):
            startUnaryTask(handler)
        case .serverStreaming(let handler):
            let request = call.pendingRequest ?? []
            call.pendingRequest = nil
            let channel = call.channel
            channel.attach(task: Task {
                do {
                    try await handler(request, context)
                    channel.finish(.ok)
                    record(.ok)
                } catch {
                    let (status, trailers) = Self.status(for: error)
                    channel.finish(status, trailingMetadata: trailers)
                    record(status.code)
                }
                returned()
            })
        case .streamingRequests(let handler):
            let channel = call.channel
            channel.attach(task: Task {
                do {
                    try await handler(context)
                    channel.finish(.ok)
                    record(.ok)
                } catch {
                    let (status, trailers) = Self.status(for: error)
                    channel.finish(status, trailingMetadata: trailers)
                    record(status.code)
                }
                returned()
            })
        }
    }

    /// The status a handler's error ends the call with.
    static func status(for error: any Error) -> (RPCStatus, Metadata) {
        let converted = RPCError(converting: error)
        return (converted.status, converted.trailingMetadata)
    }

    /// Arms the call's deadline timer.
    func armDeadline(_ call: ServerCall, nanos: UInt64) {
        let streamID = call.streamID
        call.deadlineTimer = loop.schedule(afterNanos: nanos) { [weak self] in
            guard let self, let call = self.calls[streamID], !call.completed else { return }
            call.deadlineTimer = nil
            call.channel.abort(with: RPCStatus(code: .deadlineExceeded, message: "the call's deadline passed"))
            self.serviceCall(call)
            self.flush()
        }
    }

    /// Looks at a call's shared state and submits whatever response frames are due.
    func serviceCall(streamID: Int32) {
        guard !isClosed, let call = calls[streamID] else { return }
        serviceCall(call)
        flush()
    }

    private func serviceCall(_ call: ServerCall) {
        guard let session, !call.completed else { return }
        if call.unconsumedBytes > 0, call.channel.inboundHasRoom() {
            nghttp2_session_consume_stream(session, call.streamID, call.unconsumedBytes)
            call.unconsumedBytes = 0
        }
        let snapshot = call.channel.takeOutboundSnapshot()
        if !call.headersSent {
            if snapshot.hasData {
                call.headersSent = true
                call.lastSentAt = MonotonicClock.nanoseconds()
                var headers = HeaderBlock()
                headers.add(":status", "200")
                headers.add("content-type", "application/grpc")
                headers.add(call.channel.initialMetadata())
                var provider = nghttp2_data_provider()
                provider.read_callback = HTTP2Callbacks.readResponseData
                headers.withNameValues { nvs, count in
                    nghttp2_submit_response(session, call.streamID, nvs, count, &provider)
                }
            } else if let status = snapshot.finalStatus {
                // Trailers-only response.
                call.headersSent = true
                call.completed = true
                let (_, trailing) = call.channel.trailers()
                var headers = HeaderBlock()
                headers.add(":status", "200")
                headers.add("content-type", "application/grpc")
                headers.add(call.channel.initialMetadata())
                headers.add("grpc-status", status.code.wireValue)
                if !status.message.isEmpty { headers.add("grpc-message", WireFormats.percentEncode(status.message)) }
                headers.add(trailing)
                headers.withNameValues { nvs, count in
                    _ = nghttp2_submit_response(session, call.streamID, nvs, count, nil)
                }
                if let timer = call.deadlineTimer { loop.cancelTimer(timer) }
            }
        } else if call.dataDeferred {
            call.dataDeferred = false
            nghttp2_session_resume_data(session, call.streamID)
        }
    }

    /// Fills a DATA frame for `streamID` (nghttp2's data source callback).
    fileprivate func readResponseData(streamID: Int32, buffer: UnsafeMutablePointer<UInt8>, length: Int,
                                      flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let call = calls[streamID], let session else {
            return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
        }
        switch call.channel.pull(into: buffer, capacity: length) {
        case .copied(let count):
            call.lastSentAt = MonotonicClock.nanoseconds()
            return count
        case .wouldBlock:
            call.dataDeferred = true
            return Int(NGHTTP2_ERR_DEFERRED.rawValue)
        case .endOfData:
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue | NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
            let (status, trailing) = call.channel.trailers()
            var trailers = HeaderBlock()
            trailers.add("grpc-status", status.code.wireValue)
            if !status.message.isEmpty { trailers.add("grpc-message", WireFormats.percentEncode(status.message)) }
            trailers.add(trailing)
            trailers.withNameValues { nvs, count in
                _ = nghttp2_submit_trailer(session, streamID, nvs, count)
            }
            call.completed = true
            if let timer = call.deadlineTimer { loop.cancelTimer(timer) }
            return 0
        }
    }

    /// After the response ends, asks the client to stop sending if it has not finished.
    fileprivate func responseEnded(streamID: Int32) {
        guard let session else { return }
        if nghttp2_session_get_stream_remote_close(session, streamID) == 0 {
            nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, UInt32(NGHTTP2_NO_ERROR.rawValue))
        }
    }
}

/// A weak reference to a connection that calls may hold from any thread.
final class WeakConnection: Sendable {
    weak let value: HTTP2Connection?
    init(_ value: HTTP2Connection) { self.value = value }
}

/// A response sent without running a handler.
enum EarlyResponse {
    /// A plain HTTP status (not a gRPC request at all).
    case httpStatus(Int)
    /// A trailers-only gRPC response.
    case grpcStatus(RPCStatus, Metadata)
}

/// The nghttp2 callback table shared by every connection.
///
/// Each callback recovers its ``HTTP2Connection`` from nghttp2's `user_data`, which is an
/// unretained pointer: the connection owns the session and outlives it.
final class HTTP2Callbacks: @unchecked Sendable {
    static let shared = HTTP2Callbacks()
    let pointer: OpaquePointer

    private init() {
        var callbacks: OpaquePointer? = nil
        nghttp2_session_callbacks_new(&callbacks)
        pointer = callbacks!

        nghttp2_session_callbacks_set_on_begin_headers_callback(pointer) { _, frame, userData in
            guard let frame, let userData else { return 0 }
            if frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue),
               frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST {
                HTTP2Callbacks.connection(userData).beginCall(streamID: frame.pointee.hd.stream_id)
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_header_callback(pointer) { _, frame, name, nameLength, value, valueLength, _, userData in
            guard let frame, let userData, let name, let value else { return 0 }
            let accepted = HTTP2Callbacks.connection(userData).receiveHeader(
                streamID: frame.pointee.hd.stream_id,
                name: UnsafeBufferPointer(start: name, count: nameLength),
                value: UnsafeBufferPointer(start: value, count: valueLength))
            return accepted ? 0 : Int32(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(pointer) { _, frame, userData in
            guard let frame, let userData else { return 0 }
            let connection = HTTP2Callbacks.connection(userData)
            let streamID = frame.pointee.hd.stream_id
            let endStream = frame.pointee.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
            switch UInt32(frame.pointee.hd.type) {
            case NGHTTP2_HEADERS.rawValue:
                if frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST {
                    connection.requestHeadersComplete(streamID: streamID, endStream: endStream)
                } else if endStream {
                    connection.requestEnded(streamID: streamID)
                }
            case NGHTTP2_DATA.rawValue:
                if endStream { connection.requestEnded(streamID: streamID) }
            case NGHTTP2_SETTINGS.rawValue:
                connection.settingsReceived()
            default:
                break
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(pointer) { _, _, streamID, data, length, userData in
            guard let userData, let data else { return 0 }
            HTTP2Callbacks.connection(userData).receiveData(
                streamID: streamID, data: UnsafeRawBufferPointer(start: data, count: length))
            return 0
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(pointer) { _, streamID, errorCode, userData in
            guard let userData else { return 0 }
            HTTP2Callbacks.connection(userData).streamClosed(streamID: streamID, errorCode: errorCode)
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_send_callback(pointer) { _, frame, userData in
            guard let frame, let userData else { return 0 }
            if frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue),
               frame.pointee.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0 {
                HTTP2Callbacks.connection(userData).responseEnded(streamID: frame.pointee.hd.stream_id)
            }
            return 0
        }
    }

    static func connection(_ userData: UnsafeMutableRawPointer) -> HTTP2Connection {
        Unmanaged<HTTP2Connection>.fromOpaque(userData).takeUnretainedValue()
    }

    /// `nghttp2_data_source_read_callback` for gRPC responses.
    static let readResponseData: nghttp2_data_source_read_callback = { _, streamID, buffer, length, flags, _, userData in
        guard let userData, let buffer, let flags else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
        return HTTP2Callbacks.connection(userData).readResponseData(
            streamID: streamID, buffer: buffer, length: length, flags: flags)
    }
}
