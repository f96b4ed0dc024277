import Synchronization

/// The state one call shares between its connection's loop thread and its handler.
///
/// The loop pushes request messages in and pulls framed response bytes out; the handler
/// does the reverse through ``RequestStream`` and ``ResponseWriter``. Both directions are
/// bounded: a handler that sends faster than the peer reads is suspended once
/// `outboundHighWater` bytes are queued, and the loop stops crediting the peer's flow-control
/// window once `inboundHighWater` bytes of requests wait unread.
final class CallChannel: Sendable {
    struct State {
        var inbound: [[UInt8]] = []
        var inboundHead = 0
        var inboundBytes = 0
        var inboundFinished = false
        var inboundWaiter: CheckedContinuation<[UInt8]?, any Error>? = nil
        /// Set by the loop when it holds back flow-control credit for this call.
        var inboundThrottled = false

        var outbound: [[UInt8]] = []
        var outboundHead = 0
        var outboundOffset = 0
        var outboundBytes = 0
        var outboundWaiter: CheckedContinuation<Void, any Error>? = nil

        var initialMetadata = Metadata()
        var trailingMetadata = Metadata()
        var finalStatus: RPCStatus? = nil
        var cancellation: RPCError? = nil
        var task: Task<Void, Never>? = nil
        var wakeScheduled = false
    }

    /// Bytes of queued response data above which senders are suspended.
    static let outboundHighWater = 256 * 1024
    /// Bytes of queued response data below which suspended senders resume.
    static let outboundLowWater = 64 * 1024
    /// Bytes of unread requests above which the peer's window is no longer credited.
    static let inboundHighWater = 1024 * 1024

    let state = Mutex(State())
    /// Asks the owning loop to look at this call again (runs `serviceCall` on the loop).
    private let wakeLoop: @Sendable () -> Void
    /// The connection's request-byte budget: queued request messages count against it.
    private let buffer: ConnectionBuffer?

    init(buffer: ConnectionBuffer? = nil, wakeLoop: @escaping @Sendable () -> Void) {
        self.buffer = buffer
        self.wakeLoop = wakeLoop
    }

    // MARK: Handler side

    /// Waits for the next request message; nil once the client has finished sending.
    func receive() async throws -> [UInt8]? {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[UInt8]?, any Error>) in
                enum Outcome { case message([UInt8]?, wake: Bool), failure(any Error), wait }
                let outcome: Outcome = state.withLock { state in
                    if let cancellation = state.cancellation { return .failure(cancellation) }
                    if state.inboundHead < state.inbound.count {
                        let message = state.inbound[state.inboundHead]
                        state.inbound[state.inboundHead] = []
                        state.inboundHead += 1
                        if state.inboundHead == state.inbound.count {
                            state.inbound.removeAll(keepingCapacity: true)
                            state.inboundHead = 0
                        }
                        state.inboundBytes -= message.count
                        var wake = false
                        if state.inboundThrottled && state.inboundBytes < Self.inboundHighWater / 2 {
                            state.inboundThrottled = false
                            wake = true
                        }
                        return .message(message, wake: wake)
                    }
                    if state.inboundFinished { return .message(nil, wake: false) }
                    state.inboundWaiter = continuation
                    return .wait
                }
                switch outcome {
                case .message(let message, let wake):
                    if let message { buffer?.remove(message.count) }
                    if wake { wakeLoop() }
                    continuation.resume(returning: message)
                case .failure(let error):
                    continuation.resume(throwing: error)
                case .wait:
                    break
                }
            }
        } onCancel: {
            self.cancel(RPCError(.cancelled, "the handler's task was cancelled"))
        }
    }

    /// Queues one framed response message, waiting while too much is already queued.
    func send(framed bytes: [UInt8]) async throws {
        let mustWait: Bool = try state.withLock { state in
            if let cancellation = state.cancellation { throw cancellation }
            if state.finalStatus != nil {
                throw RPCError(.internal, "a response was sent after the call had ended")
            }
            state.outbound.append(bytes)
            state.outboundBytes += bytes.count
            return state.outboundBytes > Self.outboundHighWater
        }
        scheduleWake()
        if mustWait {
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    let resumeNow: (any Error)?? = state.withLock { state in
                        if let cancellation = state.cancellation { return .some(cancellation) }
                        if state.outboundBytes <= Self.outboundLowWater { return .some(nil) }
                        state.outboundWaiter = continuation
                        return .none
                    }
                    if let resumeNow {
                        if let error = resumeNow { continuation.resume(throwing: error) } else { continuation.resume() }
                    }
                }
            } onCancel: {
                self.cancel(RPCError(.cancelled, "the handler's task was cancelled"))
            }
        }
    }

    /// Ends the call with `status` (ignored if it already ended). Any thread.
    func finish(_ status: RPCStatus, trailingMetadata: Metadata = Metadata()) {
        let changed = state.withLock { state -> Bool in
            guard state.finalStatus == nil, state.cancellation == nil else { return false }
            state.finalStatus = status
            state.trailingMetadata.append(contentsOf: trailingMetadata)
            return true
        }
        if changed { scheduleWake() }
    }

    /// Ends a unary call with its one response (ignored once the call ended or was
    /// cancelled). Any thread.
    func finishUnary(with response: [UInt8]) {
        let framed = MessageFramer.frame(response)
        let changed = state.withLock { state -> Bool in
            guard state.finalStatus == nil, state.cancellation == nil else { return false }
            state.outbound.append(framed)
            state.outboundBytes += framed.count
            state.finalStatus = .ok
            return true
        }
        if changed { scheduleWake() }
    }

    /// Adds initial metadata; only effective before the first response is sent.
    func addInitialMetadata(_ metadata: Metadata) {
        state.withLock { $0.initialMetadata.append(contentsOf: metadata) }
    }

    /// Adds trailing metadata sent with the final status.
    func addTrailingMetadata(_ metadata: Metadata) {
        state.withLock { $0.trailingMetadata.append(contentsOf: metadata) }
    }

    /// Whether the call was cancelled (by the client, the deadline or shutdown).
    var isCancelled: Bool { state.withLock { $0.cancellation != nil } }

    private func scheduleWake() {
        let shouldWake = state.withLock { state -> Bool in
            if state.wakeScheduled { return false }
            state.wakeScheduled = true
            return true
        }
        if shouldWake { wakeLoop() }
    }

    // MARK: Loop side

    /// Delivers a request message to the handler.
    func deliver(_ message: [UInt8]) {
        enum Outcome { case handOver(CheckedContinuation<[UInt8]?, any Error>), queued, dropped }
        let outcome = state.withLock { state -> Outcome in
            if state.cancellation != nil { return .dropped }
            if let waiter = state.inboundWaiter {
                state.inboundWaiter = nil
                return .handOver(waiter)
            }
            state.inbound.append(message)
            state.inboundBytes += message.count
            return .queued
        }
        switch outcome {
        case .handOver(let waiter): waiter.resume(returning: message)
        case .queued: buffer?.add(message.count)
        case .dropped: break
        }
    }

    /// Whether response bytes wait to be sent. Loop thread.
    var hasPendingOutbound: Bool { state.withLock { $0.outboundBytes > 0 } }

    /// Marks the end of the request stream.
    func finishInbound() {
        let waiter = state.withLock { state -> CheckedContinuation<[UInt8]?, any Error>? in
            state.inboundFinished = true
            let waiter = state.inboundWaiter
            state.inboundWaiter = nil
            return waiter
        }
        waiter?.resume(returning: nil)
    }

    /// Cancels the call: waiters fail with `reason`, and the handler's task is cancelled.
    func cancel(_ reason: RPCError) {
        let (inboundWaiter, outboundWaiter, task, dropped) = state.withLock { state in
            if state.cancellation == nil { state.cancellation = reason }
            let taken = (state.inboundWaiter, state.outboundWaiter, state.task, state.inboundBytes)
            state.inboundWaiter = nil
            state.outboundWaiter = nil
            // Unread requests are of no use any more: free them and their share of the budget.
            state.inbound.removeAll()
            state.inboundHead = 0
            state.inboundBytes = 0
            return taken
        }
        buffer?.remove(dropped)
        inboundWaiter?.resume(throwing: reason)
        outboundWaiter?.resume(throwing: reason)
        task?.cancel()
    }

    /// Records the task running the handler, so cancellation can reach it.
    func attach(task: Task<Void, Never>) {
        let cancelled = state.withLock { state -> Bool in
            state.task = task
            return state.cancellation != nil
        }
        if cancelled { task.cancel() }
    }

    /// What the loop should do next with this call's response.
    struct OutboundSnapshot {
        var hasData: Bool
        var finalStatus: RPCStatus?
    }

    /// Clears the wake flag and reports pending output. Loop thread.
    func takeOutboundSnapshot() -> OutboundSnapshot {
        state.withLock { state in
            state.wakeScheduled = false
            return OutboundSnapshot(hasData: state.outboundBytes > 0, finalStatus: state.finalStatus)
        }
    }

    /// Result of pulling response bytes into an HTTP/2 DATA frame.
    enum Pull {
        /// `count` bytes were copied.
        case copied(Int)
        /// Nothing queued and the call has not ended: wait for more.
        case wouldBlock
        /// Nothing queued and the call has ended: send trailers.
        case endOfData
    }

    /// Copies up to `capacity` queued response bytes into `destination`. Loop thread.
    func pull(into destination: UnsafeMutablePointer<UInt8>, capacity: Int) -> Pull {
        var waiter: CheckedContinuation<Void, any Error>? = nil
        let result: Pull = state.withLock { state in
            var copied = 0
            while copied < capacity, state.outboundHead < state.outbound.count {
                let chunk = state.outbound[state.outboundHead]
                let available = chunk.count - state.outboundOffset
                let take = min(available, capacity - copied)
                chunk.withUnsafeBufferPointer { source in
                    (destination + copied).update(from: source.baseAddress! + state.outboundOffset, count: take)
                }
                copied += take
                state.outboundOffset += take
                if state.outboundOffset == chunk.count {
                    state.outbound[state.outboundHead] = []
                    state.outboundHead += 1
                    state.outboundOffset = 0
                }
            }
            if state.outboundHead == state.outbound.count {
                state.outbound.removeAll(keepingCapacity: true)
                state.outboundHead = 0
            }
            state.outboundBytes -= copied
            if state.outboundBytes <= Self.outboundLowWater, let pending = state.outboundWaiter {
                state.outboundWaiter = nil
                waiter = pending
            }
            if copied > 0 { return .copied(copied) }
            if state.finalStatus != nil || state.cancellation != nil { return .endOfData }
            state.wakeScheduled = false
            return .wouldBlock
        }
        waiter?.resume()
        return result
    }

    /// Ends the call from the loop with `status`, dropping unsent responses (deadline, shutdown).
    func abort(with status: RPCStatus) {
        state.withLock { state in
            if state.finalStatus == nil || state.finalStatus?.code == .ok {
                state.finalStatus = status
            }
            state.outbound.removeAll()
            state.outboundHead = 0
            state.outboundOffset = 0
            state.outboundBytes = 0
        }
        cancel(RPCError(status.code, status.message))
    }

    /// Final status and trailing metadata, for the trailers. Loop thread.
    func trailers() -> (RPCStatus, Metadata) {
        state.withLock { state in
            (state.finalStatus ?? RPCStatus(code: .cancelled, message: "call cancelled"), state.trailingMetadata)
        }
    }

    /// Initial metadata to send with the response headers. Loop thread.
    func initialMetadata() -> Metadata {
        state.withLock { $0.initialMetadata }
    }

    /// Updates the inbound backlog and reports whether flow-control credit may be given.
    func inboundHasRoom() -> Bool {
        state.withLock { state in
            if state.inboundBytes < Self.inboundHighWater { return true }
            state.inboundThrottled = true
            return false
        }
    }
}
