import Dispatch
import Foundation

/// A pointer that may be captured by the worker closures of ``Parallel``.
///
/// Workers must touch disjoint elements; this wrapper only silences the Sendable check.
public struct SendablePointer<T>: @unchecked Sendable {
    public let p: UnsafeMutablePointer<T>
    @inlinable public init(_ p: UnsafeMutablePointer<T>) { self.p = p }
}

/// Splits loops over the cores with `DispatchQueue.concurrentPerform`.
public enum Parallel {
    /// Number of workers used by the kernels (the number of active processors, at least 1).
    public static let workers: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)

    /// Runs `body` over disjoint sub-ranges covering `0..<count`.
    ///
    /// Work smaller than `grain` items runs inline on the calling thread. `body` must only write
    /// elements belonging to its range.
    @inlinable
    public static func forRange(_ count: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
        if count <= 0 { return }
        let chunks = min(workers, max(1, count / max(grain, 1)))
        if chunks <= 1 {
            body(0..<count)
            return
        }
        withoutActuallyEscaping(body) { body in
            let box = UncheckedBox(body)
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                let lo = count * c / chunks
                let hi = count * (c + 1) / chunks
                box.value(lo..<hi)
            }
        }
    }

    /// Runs `body(i)` for every `i` in `0..<count`, items spread over the workers.
    @inlinable
    public static func forEach(_ count: Int, grain: Int = 1, _ body: (Int) -> Void) {
        forRange(count, grain: grain) { r in for i in r { body(i) } }
    }
}

/// Wraps a non-Sendable closure for `concurrentPerform`; the caller guarantees data-race freedom.
@usableFromInline
struct UncheckedBox<T>: @unchecked Sendable {
    @usableFromInline let value: T
    @usableFromInline init(_ value: T) { self.value = value }
}
