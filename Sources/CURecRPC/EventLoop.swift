import Foundation
import Synchronization
import CLinux
import CURecCollections

#if canImport(Glibc)
import Glibc
#endif

/// Something registered with an ``EventLoop`` that reacts to readiness of one descriptor.
///
/// Implementations are confined to the loop they are registered with.
protocol EventSource: AnyObject {
    /// Called on the loop thread with the `epoll` event bits that fired.
    func handleEvents(_ events: UInt32)
}

/// Monotonic time in nanoseconds, from `CLOCK_MONOTONIC`.
enum MonotonicClock {
    static func nanoseconds() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
    }
}

/// One I/O thread: an `epoll` set, a queue of work submitted from other threads and a
/// timer heap.
///
/// All descriptors and sources registered with a loop, and every timer callback, run on the
/// loop's own thread. `execute(_:)` is the only method that may be called from any thread.
final class EventLoop: @unchecked Sendable {
    /// Index of this loop in its group, for logs.
    let index: Int

    private let epollFD: Int32
    private let wakeFD: Int32
    private let submitted = Mutex<[@Sendable () -> Void]>([])
    private let wakeRequested = Atomic<Bool>(false)

    // Loop-confined state.
    private var sources: [Int32: EventSource] = [:]
    private var timerHeap = Heap<TimerEntry>()
    private var timerCallbacks: [UInt64: () -> Void] = [:]
    private var nextTimerID: UInt64 = 1
    private var stopRequested = false
    private var threadID: pthread_t? = nil

    /// A scratch buffer the loop's connections read into (one read at a time per loop).
    let readBuffer: UnsafeMutableRawBufferPointer

    /// Creates a loop; throws if the kernel refuses an epoll set or eventfd.
    init(index: Int) throws {
        self.index = index
        let epollFD = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epollFD >= 0 else { throw RPCServerError.system("epoll_create1", errno) }
        let wakeFD = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard wakeFD >= 0 else {
            close(epollFD)
            throw RPCServerError.system("eventfd", errno)
        }
        self.epollFD = epollFD
        self.wakeFD = wakeFD
        self.readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 * 1024, alignment: 16)
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.fd = wakeFD
        epoll_ctl(epollFD, EPOLL_CTL_ADD, wakeFD, &event)
    }

    deinit {
        close(epollFD)
        close(wakeFD)
        readBuffer.deallocate()
    }

    /// True when called on this loop's thread.
    var inLoop: Bool {
        guard let threadID else { return false }
        return pthread_equal(threadID, pthread_self()) != 0
    }

    /// Runs `work` on the loop thread soon. Safe to call from any thread.
    func execute(_ work: @escaping @Sendable () -> Void) {
        submitted.withLock { $0.append(work) }
        if !wakeRequested.exchange(true, ordering: .acquiringAndReleasing) {
            var one: UInt64 = 1
            _ = write(wakeFD, &one, 8)
        }
    }

    /// Registers `source` for `events` on `fd`. Loop thread only.
    func register(fd: Int32, events: UInt32, source: EventSource) throws {
        var event = epoll_event()
        event.events = events
        event.data.fd = fd
        guard epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) == 0 else {
            throw RPCServerError.system("epoll_ctl(ADD)", errno)
        }
        sources[fd] = source
    }

    /// Changes the events watched on `fd`. Loop thread only.
    func modify(fd: Int32, events: UInt32) {
        var event = epoll_event()
        event.events = events
        event.data.fd = fd
        epoll_ctl(epollFD, EPOLL_CTL_MOD, fd, &event)
    }

    /// Stops watching `fd` (the caller closes it). Loop thread only.
    func deregister(fd: Int32) {
        epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, nil)
        sources[fd] = nil
    }

    /// Runs `callback` on the loop after `delayNanos`. Loop thread only.
    @discardableResult
    func schedule(afterNanos delayNanos: UInt64, _ callback: @escaping () -> Void) -> UInt64 {
        let id = nextTimerID
        nextTimerID += 1
        timerCallbacks[id] = callback
        let deadline = MonotonicClock.nanoseconds() &+ delayNanos
        timerHeap.insert(TimerEntry(deadline: deadline, id: id))
        return id
    }

    /// Cancels a timer; harmless if it already ran. Loop thread only.
    func cancelTimer(_ id: UInt64) {
        timerCallbacks[id] = nil
        // A cancelled entry leaves the heap only when it comes due; far deadlines (a client's
        // grpc-timeout of years) would pile up, so rebuild once most entries are cancelled.
        if timerHeap.count > 1024 && timerCallbacks.count < timerHeap.count / 2 {
            timerHeap = Heap(timerHeap.unordered.filter { timerCallbacks[$0.id] != nil })
        }
    }

    /// Asks the loop to return from `run()` after its current iteration.
    func stop() {
        execute { [self] in self.stopRequested = true }
    }

    /// Runs the loop on the calling thread until `stop()`.
    func run() {
        threadID = pthread_self()
        let maxEvents = 128
        var events = [epoll_event](repeating: epoll_event(), count: maxEvents)
        while !stopRequested {
            let timeout = nextTimeoutMillis()
            let ready = events.withUnsafeMutableBufferPointer { buffer in
                epoll_wait(epollFD, buffer.baseAddress, Int32(maxEvents), timeout)
            }
            if ready < 0 && errno != EINTR { break }
            if ready > 0 {
                for index in 0..<Int(ready) {
                    let fd = events[index].data.fd
                    let bits = events[index].events
                    if fd == wakeFD {
                        var value: UInt64 = 0
                        _ = read(wakeFD, &value, 8)
                        continue
                    }
                    sources[fd]?.handleEvents(bits)
                }
            }
            runSubmitted()
            runDueTimers()
        }
        runSubmitted()
    }

    private func runSubmitted() {
        wakeRequested.store(false, ordering: .releasing)
        let work = submitted.withLock { queue -> [@Sendable () -> Void] in
            let taken = queue
            queue.removeAll(keepingCapacity: true)
            return taken
        }
        for item in work { item() }
    }

    private func nextTimeoutMillis() -> Int32 {
        if submitted.withLock({ !$0.isEmpty }) { return 0 }
        while let top = timerHeap.min, timerCallbacks[top.id] == nil { timerHeap.popMin() }
        guard let top = timerHeap.min else { return 1000 }
        let now = MonotonicClock.nanoseconds()
        if top.deadline <= now { return 0 }
        let millis = (top.deadline - now + 999_999) / 1_000_000
        return Int32(min(millis, 1000))
    }

    private func runDueTimers() {
        let now = MonotonicClock.nanoseconds()
        while let top = timerHeap.min, top.deadline <= now {
            timerHeap.popMin()
            if let callback = timerCallbacks.removeValue(forKey: top.id) { callback() }
        }
    }
}

/// A timer in the loop's heap: the earliest deadline comes out first; timers due at the same
/// instant run in the order they were scheduled.
private struct TimerEntry: Comparable {
    let deadline: UInt64
    let id: UInt64

    static func < (lhs: TimerEntry, rhs: TimerEntry) -> Bool {
        (lhs.deadline, lhs.id) < (rhs.deadline, rhs.id)
    }
}
