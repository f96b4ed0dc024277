import Foundation

/// Errors raised by tensor construction and the shape checks of the kernels.
public enum TensorError: Error, Equatable, CustomStringConvertible {
    /// A dimension was negative.
    case negativeDimension(shape: [Int])
    /// The number of values does not match the element count of the shape.
    case countMismatch(shape: [Int], expected: Int, got: Int)
    /// Two tensors that must have the same shape do not.
    case shapeMismatch(expected: [Int], got: [Int])

    public var description: String {
        switch self {
        case .negativeDimension(let shape):
            return "tensor shape \(shape) has a negative dimension"
        case .countMismatch(let shape, let expected, let got):
            return "tensor shape \(shape) holds \(expected) values but \(got) were given"
        case .shapeMismatch(let expected, let got):
            return "tensor shape mismatch: expected \(expected), got \(got)"
        }
    }
}

/// A contiguous, row-major float32 buffer with a shape.
///
/// `Tensor` is a reference type: copies of a reference share storage, and the kernels read and
/// write through `data` directly (in the style of llm.c). Storage is 64-byte aligned so the BLAS
/// and SIMD loops see aligned rows. Use ``copy()`` for an independent duplicate.
///
/// A tensor is not synchronised; it is `@unchecked Sendable` so that kernels can split work over
/// threads, and callers must not mutate one tensor from two tasks at once.
public final class Tensor: @unchecked Sendable {
    /// Dimensions, outermost first, e.g. `[B, T, C]`.
    public let shape: [Int]
    /// Number of elements (product of `shape`).
    public let count: Int
    /// The storage: `count` floats, row-major.
    public let data: UnsafeMutablePointer<Float>

    /// A zero-filled tensor of the given shape.
    public init(zeros shape: [Int]) throws(TensorError) {
        guard shape.allSatisfy({ $0 >= 0 }) else { throw .negativeDimension(shape: shape) }
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.data = Tensor.allocate(count)
        data.initialize(repeating: 0, count: count)
    }

    /// A tensor holding `values` with the given shape.
    public convenience init(shape: [Int], values: [Float]) throws(TensorError) {
        try self.init(zeros: shape)
        guard values.count == count else {
            throw .countMismatch(shape: shape, expected: count, got: values.count)
        }
        values.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { data.update(from: base, count: count) }
        }
    }

    /// A zero-filled tensor for shapes the caller has already validated (dimensions known to be
    /// non-negative, e.g. derived from a validated model config). Traps on a negative dimension.
    public init(uncheckedZeros shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.data = Tensor.allocate(count)
        data.initialize(repeating: 0, count: count)
    }

    deinit {
        data.deinitialize(count: count)
        UnsafeMutableRawPointer(data).deallocate()
    }

    private static func allocate(_ count: Int) -> UnsafeMutablePointer<Float> {
        let raw = UnsafeMutableRawPointer.allocate(
            byteCount: max(count, 1) * MemoryLayout<Float>.stride, alignment: 64)
        return raw.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    /// An independent copy with the same shape and values.
    public func copy() -> Tensor {
        let t = Tensor(uncheckedZeros: shape)
        t.data.update(from: data, count: count)
        return t
    }

    /// The values as an array (row-major).
    public var values: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    /// Sets every element to `value`.
    public func fill(_ value: Float) { data.update(repeating: value, count: count) }

    /// Sets every element to zero.
    public func zero() { memset(data, 0, count * MemoryLayout<Float>.stride) }

    /// Copies all values from `other`, which must have the same element count.
    public func assign(from other: Tensor) throws(TensorError) {
        guard other.count == count else { throw .shapeMismatch(expected: shape, got: other.shape) }
        data.update(from: other.data, count: count)
    }

    /// Element at a flat index (bounds are the caller's responsibility in release builds).
    public subscript(_ i: Int) -> Float {
        get { data[i] }
        set { data[i] = newValue }
    }
}
