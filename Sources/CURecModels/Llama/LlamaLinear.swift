import CURecTensor

/// Where a linear layer's weight `W[out, in]` lives.
public enum LlamaLinearWeight: @unchecked Sendable {
    /// Float32, row-major `[out, in]`, inside the model's parameter buffer (trainable).
    case dense(UnsafeMutablePointer<Float>)
    /// Kept in its stored GGUF block form (Q4_0, Q4_1, Q8_0; see ``QuantizedMatrix``), for
    /// inference: the input is quantized to 8 bits per block of 32 and multiplied by the
    /// blocks in place. There is no backward pass through such a weight.
    case quantized(QuantizedMatrix)

    /// Whether the weight is kept quantized.
    public var isQuantized: Bool {
        if case .quantized = self { return true }
        return false
    }
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

/// The input `x[N, in]` of one or more projections. Projections that read the same input
/// (query, key and value; gate and up) pass the same value, so a quantized weight's 8-bit
/// copy of the input is made once for all of them.
struct LlamaLinearInput {
    let x: UnsafePointer<Float>
    let N: Int
    /// The 8-bit blocks of `x`, made by the first quantized projection that reads it.
    private(set) var quantized: QuantizedActivations?

    init(_ x: UnsafePointer<Float>, N: Int) {
        self.x = x
        self.N = N
    }

    /// `x` quantized per block of 32 (`columns` = in).
    mutating func activations(columns: Int) -> QuantizedActivations {
        if let q = quantized, q.columns == columns { return q }
        let q = QuantizedActivations(x, rows: N, columns: columns)
        quantized = q
        return q
    }
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
        var input = LlamaLinearInput(inp, N: N)
        forward(out: out, input: &input, residual: residual)
    }

    /// ``forward(out:inp:N:residual:)`` on an input shared with other projections.
    func forward(out: UnsafeMutablePointer<Float>, input: inout LlamaLinearInput,
                 residual: UnsafePointer<Float>? = nil) {
        let N = input.N
        switch weight {
        case .dense(let w):
            Linear.forward(out: out, inp: input.x, weight: w, N: N, C: inFeatures, OC: outFeatures,
                           residual: residual)
        case .quantized(let m):
            // out = residual, then out += x · Wᵀ
            if let residual, residual != UnsafePointer(out) {
                out.update(from: residual, count: N * outFeatures)
            }
            if m.type == .f32 {
                m.forward(out: out, inp: input.x, n: N, accumulate: residual != nil)
            } else {
                m.forward(out: out, activations: input.activations(columns: inFeatures),
                          accumulate: residual != nil)
            }
        }
        adapter?.forward(out: out, inp: input.x, N: N)
    }

    /// Several projections of one input (query, key and value; gate and up):
    /// `outputs[i][N, out_i] = x · W_iᵀ (+ adapter_i)`. When every weight is quantized their
    /// rows are split over the workers together (one thread hop for all of them); otherwise
    /// they run one after the other.
    static func forward(_ layers: [(LlamaLinear, UnsafeMutablePointer<Float>)], input: inout LlamaLinearInput) {
        var products: [QuantizedProduct] = []
        for (layer, out) in layers {
            guard case .quantized(let m) = layer.weight, m.type != .f32 else { break }
            products.append(QuantizedProduct(m, out: out))
        }
        guard products.count == layers.count, let first = layers.first else {
            for (layer, out) in layers { layer.forward(out: out, input: &input) }
            return
        }
        QuantizedMatrix.forward(products, activations: input.activations(columns: first.0.inFeatures))
        for (layer, out) in layers { layer.adapter?.forward(out: out, inp: input.x, N: input.N) }
    }

    /// Backward: writes `dinp[N, in]` (ADDS when `accumulateInput`; skipped if nil), adds the
    /// weight gradient into `dweight` (skipped if nil: a frozen weight), then lets the adapter
    /// add its share.
    ///
    /// Only dense weights have a backward pass; the model refuses to train before reaching a
    /// quantized one (``LlamaError/quantizedWeights(operation:)``).
    func backward(dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?,
                  dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, N: Int,
                  accumulateInput: Bool = false) {
        switch weight {
        case .dense(let w):
            Linear.backward(dinp: dinp, dweight: dweight, dout: dout, inp: inp, weight: w,
                            N: N, C: inFeatures, OC: outFeatures, accumulateInput: accumulateInput)
        case .quantized:
            preconditionFailure("no backward pass through a quantized weight; the model refuses to train")
        }
        adapter?.backward(dinp: dinp, dout: dout, inp: inp, N: N)
    }

    /// Row lookup: `out[n, :] = W[tokens[n], :]` for `n < N` (`out` `[N, in]`, tokens in
    /// `0..<out`), e.g. the token embedding that the tied output head multiplies by.
    func gatherRows(out: UnsafeMutablePointer<Float>, tokens: UnsafePointer<Int32>, N: Int) {
        switch weight {
        case .dense(let w):
            TokenEmbedding.forward(out: out, tokens: tokens, wte: w, N: N, C: inFeatures)
        case .quantized(let m):
            let o = SendablePointer(out), C = inFeatures
            Parallel.forRange(N, grain: 64) { r in
                for n in r { m.dequantizeRow(Int(tokens[n]), into: o.p + n * C) }
            }
        }
    }

    /// The weight `[out, in]` as float32 (a copy).
    public func dequantizedWeight() -> [Float] {
        switch weight {
        case .dense(let w): return Array(UnsafeBufferPointer(start: w, count: outFeatures * inFeatures))
        case .quantized(let m): return m.dequantized()
        }
    }
}
