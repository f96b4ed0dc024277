import CURecTensor

/// Where a linear layer's weight `W[out, in]` lives.
public enum LlamaLinearWeight: @unchecked Sendable {
    /// Float32, row-major `[out, in]`, inside the model's parameter buffer (trainable).
    case dense(UnsafeMutablePointer<Float>)
}

/// A trainable addition to a linear layer, e.g. a low-rank adapter: the layer computes
/// `y = x·Wᵀ + adapter(x)`.
///
/// The adapter keeps its own parameters and gradients. It receives the layer's input again in
/// ``backward(dinp:dout:inp:N:)``, so it needs no per-call state between forward and backward.
public protocol LlamaLinearAdapter: AnyObject {
    /// Adds the adapter's output for `inp[N, in]` into `out[N, out]`.
    func forward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, N: Int)
    /// Accumulates the adapter's parameter gradients from `dout[N, out]` and the layer input
    /// `inp[N, in]`, and ADDS its share of the input gradient into `dinp[N, in]` when non-nil.
    func backward(dinp: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
                  inp: UnsafePointer<Float>, N: Int)
}

/// One projection of a Llama block, `y = x · Wᵀ` with `W` `[outFeatures, inFeatures]`.
///
/// The block calls this type, never a matrix product directly, so the weight's storage
/// (``LlamaLinearWeight``) and an optional ``adapter`` can change without touching the block.
/// Not thread-safe: a model is used from one task at a time.
public final class LlamaLinear: @unchecked Sendable {
    /// Input width.
    public let inFeatures: Int
    /// Output width.
    public let outFeatures: Int
    /// The weight.
    public internal(set) var weight: LlamaLinearWeight
    /// An optional trainable addition (nil: the plain projection).
    public var adapter: (any LlamaLinearAdapter)?

    init(weight: LlamaLinearWeight, inFeatures: Int, outFeatures: Int) {
        self.weight = weight
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
    }

    /// `out[N, out] = residual + inp[N, in] · Wᵀ (+ adapter)`; `residual` may be nil or alias
    /// `out`.
    func forward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, N: Int,
                 residual: UnsafePointer<Float>? = nil) {
        switch weight {
        case .dense(let w):
            Linear.forward(out: out, inp: inp, weight: w, N: N, C: inFeatures, OC: outFeatures,
                           residual: residual)
        }
        adapter?.forward(out: out, inp: inp, N: N)
    }

    /// Backward: writes `dinp[N, in]` (ADDS when `accumulateInput`; skipped if nil), adds the
    /// weight gradient into `dweight` (skipped if nil: a frozen weight), then lets the adapter
    /// add its share.
    func backward(dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?,
                  dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, N: Int,
                  accumulateInput: Bool = false) {
        switch weight {
        case .dense(let w):
            Linear.backward(dinp: dinp, dweight: dweight, dout: dout, inp: inp, weight: w,
                            N: N, C: inFeatures, OC: outFeatures, accumulateInput: accumulateInput)
        }
        adapter?.backward(dinp: dinp, dout: dout, inp: inp, N: N)
    }
}
