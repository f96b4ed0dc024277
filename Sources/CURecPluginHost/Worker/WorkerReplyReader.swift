import CLinux
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Waits for the replies of one worker's calls made without blocking their callers, and
/// completes each call on its own thread.
///
/// A call (``start(_:on:deadline:completion:)``) writes its request on an idle channel and
/// arms that channel in an `epoll` set (one-shot); the reader thread reads the reply when it
/// arrives and hands it to the call's completion, or fails the call with
/// ``WireIO/Failure/timedOut`` at its deadline. Starting a call wakes nobody: the reader
/// never sleeps longer than ``idleWake``, which is no longer than any call's time limit, so
/// it always wakes before the deadline of a call armed while it slept.
///
/// Channels used by blocking calls (training, saving) are not armed and so not read here.
final class WorkerReplyReader: @unchecked Sendable {
    /// What a completed call gets: the reply frame's kind and bytes, or how the channel broke.
    typealias Completion = @Sendable (Result<(WorkerFrame.Kind, [UInt8]), WireIO.Failure>) -> Void

    private struct Pending {
        var deadline: ContinuousClock.Instant
        var completion: Completion
    }

    /// The worker whose channels are read; held so its descriptors stay open while the
    /// reader runs.
    private let process: WorkerProcess
    private let epollDescriptor: Int32
    private let stopDescriptor: Int32
    private let idleWake: Duration
    // Guarded by `lock`.
    private let lock = NSLock()
    private var pending: [Int32: Pending] = [:]
    private var stopped = false

    /// Makes the reader of `process`'s channels; it runs once ``run()`` is started on a thread.
    init(process: WorkerProcess, idleWake: Duration) throws(PluginHostError) {
        self.process = process
        self.idleWake = idleWake
        let epollDescriptor = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epollDescriptor >= 0 else { throw .host("cannot watch a plugin worker's channels: \(String(cString: strerror(errno)))") }
        let stopDescriptor = eventfd(0, Int32(EFD_CLOEXEC))
        guard stopDescriptor >= 0 else {
            close(epollDescriptor)
            throw .host("cannot watch a plugin worker's channels: \(String(cString: strerror(errno)))")
        }
        self.epollDescriptor = epollDescriptor
        self.stopDescriptor = stopDescriptor
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.fd = stopDescriptor
        epoll_ctl(epollDescriptor, EPOLL_CTL_ADD, stopDescriptor, &event)
        // Each channel is in the set but disarmed (one-shot with no events) until a call arms
        // it; a hang-up while disarmed is reported at most once and ignored.
        for channel in process.channels {
            var disarmed = epoll_event()
            disarmed.events = EPOLLONESHOT.rawValue
            disarmed.data.fd = channel
            epoll_ctl(epollDescriptor, EPOLL_CTL_ADD, channel, &disarmed)
        }
    }

    deinit {
        close(epollDescriptor)
        close(stopDescriptor)
    }

    /// Starts the reader thread.
    func startThread(named name: String) {
        let thread = Thread { [self] in run() }
        thread.name = name
        thread.start()
    }

    /// Sends `request` on `channel` (idle, owned by the caller until `completion` runs) and
    /// arms it; `completion` runs once, on the reader thread, or here when sending fails or
    /// the reader has stopped.
    func start(_ request: [UInt8], on channel: Int32, deadline: ContinuousClock.Instant,
               completion: @escaping Completion) {
        lock.lock()
        guard !stopped else {
            lock.unlock()
            completion(.failure(.closed))
            return
        }
        pending[channel] = Pending(deadline: deadline, completion: completion)
        lock.unlock()
        do throws(WireIO.Failure) {
            try WireIO.send(request, on: channel)
        } catch {
            take(channel)?.completion(.failure(error))
            return
        }
        var armed = epoll_event()
        armed.events = EPOLLIN.rawValue | EPOLLONESHOT.rawValue
        armed.data.fd = channel
        if epoll_ctl(epollDescriptor, EPOLL_CTL_MOD, channel, &armed) != 0 {
            take(channel)?.completion(.failure(.system(errno)))
        }
    }

    /// Stops the reader: calls still waiting fail with ``WireIO/Failure/closed``.
    func stop() {
        lock.lock()
        let wasStopped = stopped
        stopped = true
        lock.unlock()
        guard !wasStopped else { return }
        var one: UInt64 = 1
        _ = write(stopDescriptor, &one, 8)
    }

    /// Removes and returns the call waiting on `channel`, if any (whoever takes it completes it).
    private func take(_ channel: Int32) -> Pending? {
        lock.lock()
        defer { lock.unlock() }
        return pending.removeValue(forKey: channel)
    }

    /// The reader thread: reads armed channels as they become readable, fails calls past
    /// their deadline, and on stop fails whatever still waits.
    private func run() {
        var events = [epoll_event](repeating: epoll_event(), count: 16)
        while true {
            lock.lock()
            let isStopped = stopped
            let now = ContinuousClock.now
            var wake = now.advanced(by: idleWake)
            for call in pending.values where call.deadline < wake { wake = call.deadline }
            lock.unlock()
            if isStopped { break }
            let left = now.duration(to: wake)
            let milliseconds = left <= .zero ? 0 : Int32(clamping: left.components.seconds * 1000
                + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            let ready = events.withUnsafeMutableBufferPointer { buffer in
                epoll_wait(epollDescriptor, buffer.baseAddress, Int32(buffer.count), milliseconds)
            }
            if ready < 0 && errno != EINTR { break }
            for index in 0..<max(0, Int(ready)) {
                let descriptor = events[index].data.fd
                guard descriptor != stopDescriptor, let call = take(descriptor) else { continue }
                // A buffer per reply: the completion takes it to another thread.
                var buffer: [UInt8] = []
                let result: Result<(WorkerFrame.Kind, [UInt8]), WireIO.Failure>
                do throws(WireIO.Failure) {
                    let kind = try WireIO.receive(on: descriptor, deadline: call.deadline, buffer: &buffer)
                    result = .success((kind, buffer))
                } catch {
                    result = .failure(error)
                }
                call.completion(result)
            }
            // Only once the earliest deadline (or the idle wake) has come: no scan per reply.
            if ContinuousClock.now >= wake { failExpired() }
        }
        lock.lock()
        stopped = true
        let left = pending.values
        pending = [:]
        lock.unlock()
        for call in left { call.completion(.failure(.closed)) }
    }

    /// Fails the calls whose deadline has passed.
    private func failExpired() {
        let now = ContinuousClock.now
        lock.lock()
        let expired = pending.filter { $0.value.deadline <= now }
        for channel in expired.keys { pending[channel] = nil }
        lock.unlock()
        for call in expired.values { call.completion(.failure(.timedOut)) }
    }
}
