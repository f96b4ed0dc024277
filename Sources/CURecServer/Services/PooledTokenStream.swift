import Synchronization

/// One generation run on the bounded ``GenerationPool`` whose tokens reach the calling task
/// as they are produced: the streaming loop shared by `Generate` and `GenerateReason`.
///
/// The generation thread stops between tokens once the caller has gone (cancellation, deadline,
/// reset, a failed send) or once the caller has seen enough (`onToken` returns false); a
/// generation whose caller left before it started never starts.
enum PooledTokenStream {
    /// Runs `generate` on `pool` and hands each token it emits to `onToken`, in order, on the
    /// calling task; returns what `generate` returned.
    ///
    /// `generate` gets `emit` for each token and `isStopped`, which it must poll between tokens
    /// (and once more after waiting for its model). When `onToken` returns false, generation is
    /// asked to stop and later tokens are drained without being handed on.
    ///
    /// Throws `CancellationError` when the calling task was cancelled, whatever `onToken`
    /// throws, and DEADLINE_EXCEEDED when the call ended before the generation started.
    static func run<Outcome: Sendable>(
        pool: GenerationPool, shouldStop: @escaping @Sendable () -> Bool,
        generate: @escaping @Sendable (_ emit: @escaping @Sendable (Int) -> Void,
                                       _ isStopped: @escaping @Sendable () -> Bool) -> Outcome,
        onToken: (Int) async throws -> Bool
    ) async throws -> Outcome {
        let (tokens, continuation) = AsyncStream.makeStream(of: Int.self, bufferingPolicy: .unbounded)
        let outcome = OutcomeBox<Outcome>()
        let stop = StopFlag()
        let isStopped: @Sendable () -> Bool = { stop.isSet || shouldStop() }
        try pool.submit(GenerationPool.Work(isAbandoned: isStopped) { abandoned in
            defer { continuation.finish() }
            if abandoned { return }
            let result = generate({ continuation.yield($0) }, isStopped)
            outcome.set(result)
        })
        // A cancelled call ends the token stream; the generation thread must stop too, or it
        // would hold the model to the end.
        try await withTaskCancellationHandler {
            do {
                var handingOn = true
                for await token in tokens where handingOn {
                    handingOn = try await onToken(token)
                    if !handingOn { stop.set() }
                }
            } catch {
                stop.set()
                throw error
            }
        } onCancel: {
            stop.set()
        }
        try Task.checkCancellation()
        guard let result = outcome.get() else {
            throw ServingError.deadlineExceeded("the call ended before its generation started")
        }
        return result
    }
}

/// A flag set from one thread and read from another.
final class StopFlag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}

/// What the generation thread returned, handed to the streaming task.
final class OutcomeBox<Value: Sendable>: Sendable {
    private let value = Mutex<Value?>(nil)
    func set(_ result: Value) { value.withLock { $0 = result } }
    func get() -> Value? { value.withLock { $0 } }
}
