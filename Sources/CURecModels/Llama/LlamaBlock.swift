import CURecTensor
import Foundation

/// The flat parameter buffer of a Llama model, its gradients and which tensors are trained.
final class LlamaParameterStore: @unchecked Sendable {
    let layout: LlamaLayout
    let values: Tensor
    /// Allocated by the first backward pass (inference never needs it).
    var gradients: Tensor?
    /// `trainable[param][layer]` (one entry for global tensors).
    var trainable: [[Bool]]

    init(layout: LlamaLayout, values: Tensor) {
        self.layout = layout
        self.values = values
        self.trainable = LlamaParam.allCases.map { [Bool](repeating: true, count: $0.perLayer ? layout.layers : 1) }
    }

    @inline(__always) func value(_ p: LlamaParam, _ layer: Int = 0) -> UnsafeMutablePointer<Float> {
        values.data + layout.offset(p, layer: layer)
    }

    /// Where the gradient of `p` accumulates, nil when `p` is frozen or no backward has run.
    @inline(__always) func gradient(_ p: LlamaParam, _ layer: Int = 0) -> UnsafeMutablePointer<Float>? {
        guard let g = gradients, trainable[p.rawValue][p.perLayer ? layer : 0] else { return nil }
        return g.data + layout.offset(p, layer: layer)
    }

    func ensureGradients() -> Tensor {
        if let g = gradients { return g }
        let g = Tensor(uncheckedZeros: [layout.total])
        gradients = g
        return g
    }
}

/// How the tokens of one forward pass sit in their sequences.
///
/// Item `i` of the pass belongs to the span covering it; its position is that span's `start`
/// plus its offset in the span. Training uses one span per batch row (``training(B:T:)``).
struct LlamaTokenLayout {
    /// Number of items.
    let N: Int
    /// Runs of consecutive positions of one sequence, covering `0..<N` in order.
    let spans: [AttentionSpan]
    /// Position of every item `[N]`.
    let positions: [Int32]

    init(spans: [AttentionSpan]) {
        var positions: [Int32] = []
        for s in spans { for j in 0..<s.count { positions.append(Int32(s.start + j)) } }
        self.spans = spans
        self.positions = positions
        self.N = positions.count
    }

    /// `B` rows of `T` tokens at positions `0..<T`; row `b` is cache row `b`.
    static func training(B: Int, T: Int) -> LlamaTokenLayout {
        LlamaTokenLayout(spans: (0..<B).map { AttentionSpan(row: $0, start: 0, first: $0 * T, count: T) })
    }
}

/// Where a block's attention reads and writes keys and values, laid out by `layout`.
struct LlamaKeyValues {
    let keys: UnsafeMutablePointer<Float>
    let values: UnsafeMutablePointer<Float>
    let layout: KeyValueLayout
}

/// The activations of one block's forward pass for up to `N` tokens. Training keeps one set
/// per block for the backward pass; inference reuses one set for every block.
final class LlamaBlockBuffers {
    let N: Int
    let rstd1: Tensor       // [N]
    let norm1: Tensor       // [N,C]   attention norm output, input of q, k, v
    let q: Tensor           // [N,C]   rotated queries
    let k: Tensor           // [N,KV]  rotated keys (the training pass's key cache)
    let v: Tensor           // [N,KV]  values (the training pass's value cache)
    let probs: Tensor?      // attention probabilities, training only
    let attention: Tensor   // [N,C]   attention output, input of the output projection
    let mid: Tensor         // [N,C]   residual stream after attention
    let rstd2: Tensor       // [N]
    let norm2: Tensor       // [N,C]   ffn norm output, input of gate and up
    let gate: Tensor        // [N,F]
    let up: Tensor          // [N,F]
    let act: Tensor         // [N,F]   silu(gate)·up, input of down

    /// Buffers for `N` tokens; `probabilities` floats of attention probabilities kept for
    /// backward (nil: not kept).
    init(config c: LlamaConfig, N: Int, probabilities: Int?) {
        self.N = N
        let C = c.width, KV = c.kvWidth, F = c.hidden
        rstd1 = Tensor(uncheckedZeros: [N])
        norm1 = Tensor(uncheckedZeros: [N, C])
        q = Tensor(uncheckedZeros: [N, C])
        k = Tensor(uncheckedZeros: [N, KV])
        v = Tensor(uncheckedZeros: [N, KV])
        probs = probabilities.map { Tensor(uncheckedZeros: [$0]) }
        attention = Tensor(uncheckedZeros: [N, C])
        mid = Tensor(uncheckedZeros: [N, C])
        rstd2 = Tensor(uncheckedZeros: [N])
        norm2 = Tensor(uncheckedZeros: [N, C])
        gate = Tensor(uncheckedZeros: [N, F])
        up = Tensor(uncheckedZeros: [N, F])
        act = Tensor(uncheckedZeros: [N, F])
    }

    /// The buffers' own keys and values as a cache of `B` rows of `T` positions (training).
    func ownKeyValues(T: Int, config c: LlamaConfig) -> LlamaKeyValues {
        LlamaKeyValues(keys: k.data, values: v.data,
                       layout: .positionMajor(capacity: T, NKV: c.kvHeads, hs: c.headSize))
    }
}

/// Gradients of one block's activations, reused block after block.
final class LlamaBlockGradients {
    let dnorm: Tensor       // [N,C]
    let dattention: Tensor  // [N,C]
    let dq: Tensor          // [N,C]
    let dk: Tensor          // [N,KV]
    let dv: Tensor          // [N,KV]
    let dffn: Tensor        // [N,F]  d(act), then d(gate) in place
    let dup: Tensor         // [N,F]

    init(config c: LlamaConfig, N: Int) {
        let C = c.width, KV = c.kvWidth, F = c.hidden
        dnorm = Tensor(uncheckedZeros: [N, C])
        dattention = Tensor(uncheckedZeros: [N, C])
        dq = Tensor(uncheckedZeros: [N, C])
        dk = Tensor(uncheckedZeros: [N, KV])
        dv = Tensor(uncheckedZeros: [N, KV])
        dffn = Tensor(uncheckedZeros: [N, F])
        dup = Tensor(uncheckedZeros: [N, F])
    }
}

/// One Llama transformer block, the same code for training and for cached decoding:
///
///     h   = x + W_o · attention(rope(W_q · rms(x)), rope(W_k · rms(x)), W_v · rms(x))
///     out = h + W_down · (silu(W_gate · rms(h)) ⊙ (W_up · rms(h)))
///
/// The projections are ``LlamaLinear`` layers (so adapters and other weight storage attach
/// there); the norm weights and gradients live in the model's parameter buffer.
public final class LlamaBlock: @unchecked Sendable {
    /// Index of the block in the model.
    public let layer: Int
    /// The projections `[out, in]`: query `[C,C]`, key and value `[KV,C]`, attention output
    /// `[C,C]`, gate and up `[F,C]`, down `[C,F]`.
    public let query, key, value, output, gate, up, down: LlamaLinear
    let config: LlamaConfig
    let store: LlamaParameterStore
    let rope: RotaryEmbedding

    /// A block whose projection `p` has the weight `weight(p)`; its norm weights are in `store`.
    init(layer: Int, config c: LlamaConfig, store: LlamaParameterStore, rope: RotaryEmbedding,
         weight: (LlamaParam) -> LlamaLinearWeight) {
        self.layer = layer
        self.config = c
        self.store = store
        self.rope = rope
        func linear(_ p: LlamaParam) -> LlamaLinear {
            let shape = p.shape(c)
            return LlamaLinear(weight: weight(p), inFeatures: shape[1], outFeatures: shape[0])
        }
        query = linear(.query)
        key = linear(.key)
        value = linear(.value)
        output = linear(.attentionOutput)
        gate = linear(.gate)
        up = linear(.up)
        down = linear(.down)
    }

    /// The projections with the parameter each one's dense weight belongs to.
    var linears: [(LlamaParam, LlamaLinear)] {
        [(.query, query), (.key, key), (.value, value), (.attentionOutput, output),
         (.gate, gate), (.up, up), (.down, down)]
    }

    /// Forward pass of `layout.N` tokens: `out[N,C]` from `inp[N,C]` (`out` may alias `inp`).
    ///
    /// The new keys and values are rotated and stored in `kv` at each item's sequence and
    /// position (nothing to copy when `kv` is the buffers' own keys and values, the training
    /// case); attention then reads positions `0...position` of each sequence from `kv`. With
    /// `saveProbabilities` the attention probabilities go to `b.probs` for the backward pass.
    func forward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                 buffers b: LlamaBlockBuffers, layout: LlamaTokenLayout, kv: LlamaKeyValues,
                 saveProbabilities: Bool) {
        let c = config, N = layout.N, C = c.width, KV = c.kvWidth, F = c.hidden
        RMSNorm.forward(out: b.norm1.data, rstd: b.rstd1.data, inp: inp,
                        weight: store.value(.attentionNorm, layer), eps: c.rmsEps, N: N, C: C)
        var x1 = LlamaLinearInput(b.norm1.data, N: N)
        LlamaLinear.forward([(query, b.q.data), (key, b.k.data), (value, b.v.data)], input: &x1)
        layout.positions.withUnsafeBufferPointer { pos in
            guard let p = pos.baseAddress else { return }
            rope.forward(b.q.data, positions: p, N: N, heads: c.heads)
            rope.forward(b.k.data, positions: p, N: N, heads: c.kvHeads)
        }
        if kv.keys != b.k.data {
            // Item i's head g goes to position start + (i - first) of head g of the span's row.
            let hs = c.headSize, at = kv.layout
            for s in layout.spans {
                for j in 0..<s.count {
                    for g in 0..<c.kvHeads {
                        let dst = s.row * at.rowStride + g * at.headStride + (s.start + j) * at.positionStride
                        let src = (s.first + j) * KV + g * hs
                        (kv.keys + dst).update(from: b.k.data + src, count: hs)
                        (kv.values + dst).update(from: b.v.data + src, count: hs)
                    }
                }
            }
        }
        GroupedQueryAttention.forward(
            out: b.attention.data, probs: saveProbabilities ? b.probs?.data : nil, q: b.q.data,
            keys: kv.keys, values: kv.values, layout: kv.layout, spans: layout.spans,
            NH: c.heads, NKV: c.kvHeads, hs: c.headSize)
        output.forward(out: b.mid.data, inp: b.attention.data, N: N, residual: inp)
        RMSNorm.forward(out: b.norm2.data, rstd: b.rstd2.data, inp: b.mid.data,
                        weight: store.value(.ffnNorm, layer), eps: c.rmsEps, N: N, C: C)
        var x2 = LlamaLinearInput(b.norm2.data, N: N)
        LlamaLinear.forward([(gate, b.gate.data), (up, b.up.data)], input: &x2)
        SwiGLU.forward(out: b.act.data, gate: b.gate.data, up: b.up.data, N: N * F)
        down.forward(out: out, inp: b.act.data, N: N, residual: b.mid.data)
    }

    /// Backward pass of a training forward (spans starting at 0 on distinct rows, keys and
    /// values in the buffers, probabilities saved).
    ///
    /// `dres[N,C]` holds the gradient of the block's output and is turned in place into the
    /// gradient of its input `inp`. Parameter gradients of trainable tensors accumulate in
    /// the model's gradient buffer; adapters accumulate their own.
    func backward(dres: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                  buffers b: LlamaBlockBuffers, layout: LlamaTokenLayout, T: Int,
                  gradients g: LlamaBlockGradients) {
        let c = config, N = layout.N, C = c.width, F = c.hidden
        let l = layer
        guard let probs = b.probs else { preconditionFailure("backward needs training buffers") }
        // Feed-forward branch; dres holds d(out) = d(mid) through the identity branch.
        down.backward(dinp: g.dffn.data, dweight: store.gradient(.down, l), dout: dres,
                      inp: b.act.data, N: N)
        SwiGLU.backward(dgate: g.dffn.data, dup: g.dup.data, dout: g.dffn.data,
                        gate: b.gate.data, up: b.up.data, N: N * F)
        up.backward(dinp: g.dnorm.data, dweight: store.gradient(.up, l), dout: g.dup.data,
                    inp: b.norm2.data, N: N)
        gate.backward(dinp: g.dnorm.data, dweight: store.gradient(.gate, l), dout: g.dffn.data,
                      inp: b.norm2.data, N: N, accumulateInput: true)
        RMSNorm.backward(dinp: dres, dweight: store.gradient(.ffnNorm, l), dout: g.dnorm.data,
                         inp: b.mid.data, weight: store.value(.ffnNorm, l), rstd: b.rstd2.data,
                         N: N, C: C)
        // Attention branch; dres now holds d(mid) = d(inp) through the identity branch.
        output.backward(dinp: g.dattention.data, dweight: store.gradient(.attentionOutput, l),
                        dout: dres, inp: b.attention.data, N: N)
        GroupedQueryAttention.backward(
            dq: g.dq.data, dkeys: g.dk.data, dvalues: g.dv.data, dout: g.dattention.data,
            q: b.q.data, keys: b.k.data, values: b.v.data, probs: probs.data, capacity: T,
            spans: layout.spans, NH: c.heads, NKV: c.kvHeads, hs: c.headSize)
        layout.positions.withUnsafeBufferPointer { pos in
            guard let p = pos.baseAddress else { return }
            rope.backward(g.dq.data, positions: p, N: N, heads: c.heads)
            rope.backward(g.dk.data, positions: p, N: N, heads: c.kvHeads)
        }
        query.backward(dinp: g.dnorm.data, dweight: store.gradient(.query, l), dout: g.dq.data,
                       inp: b.norm1.data, N: N)
        key.backward(dinp: g.dnorm.data, dweight: store.gradient(.key, l), dout: g.dk.data,
                     inp: b.norm1.data, N: N, accumulateInput: true)
        value.backward(dinp: g.dnorm.data, dweight: store.gradient(.value, l), dout: g.dv.data,
                       inp: b.norm1.data, N: N, accumulateInput: true)
        RMSNorm.backward(dinp: dres, dweight: store.gradient(.attentionNorm, l),
                         dout: g.dnorm.data, inp: inp, weight: store.value(.attentionNorm, l),
                         rstd: b.rstd1.data, N: N, C: C)
    }
}
