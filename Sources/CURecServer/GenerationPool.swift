import CURecRPC
import Dispatch
import Synchronization

/// Runs CPU-bound generation (token streams, pair reasons, reasons for recommendations) on
/// a fixed number of threads, with a bounded queue in front.
///
/// A generation is submitted with a check of whether its caller is still there. At most
/// ``workers`` run at once; at most ``queueLimit`` wait, and a submission beyond that is
/// refused with RESOURCE_EXHAUSTED at once, so a burst of requests costs a status each, not
/// a thread each. A waiting generation whose caller has gone (reset, disconnect, deadline)
/// leaves the queue without running and without taking a worker.
final class GenerationPool: Sendable {
    /// One queued generation.
    struct Work: Sendable {
        /// True once the caller has gone.
        let isAbandoned: @Sendable () -> Bool
        /// Runs the generation; given `true` when it is skipped because its caller left
        /// (it must then only release what it holds, e.g. finish its token stream).
        let run: @Sendable (_ abandoned: Bool) -> Void
    }

    private struct State {
        var running = 0
        var waiting: [Work] = []
    }

    /// Generations running at once.
    let workers: Int
    /// Generations allowed to wait for a worker.
    let queueLimit: Int
    private let state = Mutex(State())

    init(workers: Int, queueLimit: Int) {
        self.workers = max(1, workers)
        self.queueLimit = max(0, queueLimit)
    }

    /// The pool the services use when the daemon configures none (tests).
    static let standard = GenerationPool(workers: 2, queueLimit: 16)

    /// Generations running and waiting now.
    var load: (running: Int, waiting: Int) { state.withLock { ($0.running, $0.waiting.count) } }

    /// Starts `work` on a worker, queues it, or refuses it when the queue is full.
    func submit(_ work: Work) throws(ServingError) {
        enum Decision { case start, queued, refused(Int, Int) }
        var abandoned: [Work] = []
        let decision: Decision = state.withLock { state in
            // Callers that left while waiting free their places first.
            abandoned = state.waiting.filter { $0.isAbandoned() }
            if !abandoned.isEmpty { state.waiting.removeAll { $0.isAbandoned() } }
            if state.running < workers {
                state.running += 1
                return .start
            }
            guard state.waiting.count < queueLimit else { return .refused(state.running, state.waiting.count) }
            state.waiting.append(work)
            return .queued
        }
        for work in abandoned { work.run(true) }
        switch decision {
        case .start: launch(work)
        case .queued: break
        case .refused(let running, let waiting):
            throw .resourceExhausted(
                "generation is at capacity (\(running) running, \(waiting) waiting); try again shortly")
        }
    }

    /// Runs `body` on the pool and returns its result; `isAbandoned` is checked before it
    /// starts. Throws RESOURCE_EXHAUSTED when the queue is full, CANCELLED when the caller
    /// left before it started.
    func run<T: Sendable>(isAbandoned: @escaping @Sendable () -> Bool,
                          _ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let work = Work(isAbandoned: isAbandoned) { abandoned in
                if abandoned {
                    continuation.resume(throwing: RPCError(.cancelled, "the call ended before its generation started"))
                    return
                }
                do {
                    continuation.resume(returning: try body())
                } catch {
                    continuation.resume(throwing: ServingError.classified(error))
                }
            }
            do {
                try submit(work)
            } catch {
                continuation.resume(throwing: error)
            }
        }
    }

    private func launch(_ work: Work) {
        DispatchQueue.global().async { [self] in
            var next: Work? = work
            while let current = next {
                current.run(current.isAbandoned())
                next = takeNext()
            }
        }
    }

    /// The next waiting generation for a worker that finished, or nil (the worker stops).
    private func takeNext() -> Work? {
        state.withLock { state in
            if !state.waiting.isEmpty { return state.waiting.removeFirst() }
            state.running -= 1
            return nil
        }
    }
}
