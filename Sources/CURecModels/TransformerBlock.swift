import CURecTensor
import Foundation

/// The twelve tensors of one GPT-style block, as pointers into a model's flat buffer (its
/// weights, or the gradients of the same layout). Matrices use the `Conv1D` layout `[in, out]`.
struct TransformerBlockWeights {
    /// LayerNorm before attention `[C]`.
    let ln1Weight, ln1Bias: UnsafeMutablePointer<Float>
    /// Query, key and value projection `[C,3C]`, `[3C]`.
    let qkvWeight, qkvBias: UnsafeMutablePointer<Float>
    /// Attention output projection `[C,C]`, `[C]`.
    let projWeight, projBias: UnsafeMutablePointer<Float>
    /// LayerNorm before the MLP `[C]`.
    let ln2Weight, ln2Bias: UnsafeMutablePointer<Float>
    /// MLP expansion `[C,H]`, `[H]`.
    let fcWeight, fcBias: UnsafeMutablePointer<Float>
    /// MLP contraction `[H,C]`, `[C]`.
    let fcProjWeight, fcProjBias: UnsafeMutablePointer<Float>
}

/// Where one block's forward pass writes its activations for `N` tokens. Training points
/// these into per-layer buffers kept for the backward pass; cached decoding reuses one set
/// for every block (and may alias `mid` with the block's input and `fcGelu` with `fc`); SASRec's
/// inference forward also shares one buffer between `ln1` and `ln2`.
struct TransformerBlockActivations {
    let ln1: UnsafeMutablePointer<Float>       // [N,C]
    let ln1Mean: UnsafeMutablePointer<Float>   // [N]
    let ln1Rstd: UnsafeMutablePointer<Float>   // [N]
    let qkv: UnsafeMutablePointer<Float>       // [N,3C]
    let atty: UnsafeMutablePointer<Float>      // [N,C]   attention output, before projection
    let mid: UnsafeMutablePointer<Float>       // [N,C]   residual stream after attention
    let ln2: UnsafeMutablePointer<Float>       // [N,C]
    let ln2Mean: UnsafeMutablePointer<Float>   // [N]
    let ln2Rstd: UnsafeMutablePointer<Float>   // [N]
    let fc: UnsafeMutablePointer<Float>        // [N,H]
    let fcGelu: UnsafeMutablePointer<Float>    // [N,H]
}

/// Gradient scratch of one block's backward pass, reused block after block.
struct TransformerBlockScratch {
    let dln: UnsafeMutablePointer<Float>       // [N,C]
    let datty: UnsafeMutablePointer<Float>     // [N,C]
    let dqkv: UnsafeMutablePointer<Float>      // [N,3C]
    let dfc: UnsafeMutablePointer<Float>       // [N,H]
}

/// How a block's attention sees its tokens.
enum TransformerBlockAttention {
    /// `B` whole sequences of `T` tokens (`N = B·T`), causal; the probabilities
    /// `att[B,NH,T,T]` are kept for the backward pass.
    case causal(att: UnsafeMutablePointer<Float>, B: Int, T: Int)
    /// New tokens against the keys and values of earlier ones (decoding): item `i` is at
    /// position `positions[i]` of cache row `rows[i]`; its key and value are stored there
    /// and it attends to positions `0...positions[i]` of that row.
    case cached(GPTKVCache, layer: Int, rows: [Int], positions: [Int])
    /// `B` whole sequences of `T` tokens (`N = B·T`, inference), of which only the last real
    /// position of each, `lengths[b] − 1`, goes on past attention: every position gives its
    /// key and value, one query per sequence attends. The block's output then has `B` rows;
    /// `gathered` `[B,C]` receives those positions' input rows (their residual).
    case lastPositions(lengths: UnsafePointer<Int>, B: Int, T: Int, gathered: UnsafeMutablePointer<Float>)
}

/// One GPT-style pre-LayerNorm transformer block, the same code for GPT training, GPT
/// decoding with a KV cache and SASRec:
///
///     mid = x   + Proj(CausalAttention(LN1(x)))           [N,C]
///     out = mid + FCProj(GELU(FC(LN2(mid))))               [N,C], MLP C → H → C
///
/// GPT uses `H = 4C`; SASRec its configured hidden width. What differs between the models
/// stays with them: the embeddings in front (GPT: token + position; SASRec: item table rows,
/// which carry projected content features, + position, + an optional user row), the head
/// behind (tied LM head; SASRec: scores against the item table), and the parameter layouts
/// (GPT stacks each tensor over layers, SASRec stores block after block), which is why the
/// block takes pointers rather than owning its weights. SASRec's reference implementation
/// adds dropout and a padding mask; ours trains without dropout and pads at the end of a row,
/// where causal attention already keeps padding out of every real position, so the block is
/// exactly GPT's.
struct TransformerBlock {
    /// Width `C`.
    let width: Int
    /// Attention heads `NH` (`C` divisible by `NH`).
    let heads: Int
    /// MLP hidden width `H`.
    let hidden: Int

    /// Forward pass of `N` tokens: `out[N,C]` from `inp[N,C]`. `out` may alias `inp` (and
    /// `a.mid`) when nothing is kept for a backward pass. With ``TransformerBlockAttention/lastPositions(lengths:B:T:gathered:)``
    /// the rows after attention (`atty`, `mid`, `ln2`, `fc`, `fcGelu` and `out`) are the `B`
    /// last positions only, and `out` must not alias `inp`.
    func forward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, weights w: TransformerBlockWeights,
                 activations a: TransformerBlockActivations, N: Int, attention: TransformerBlockAttention) {
        let C = width, H = hidden
        LayerNorm.forward(out: a.ln1, mean: a.ln1Mean, rstd: a.ln1Rstd, inp: inp,
                          weight: w.ln1Weight, bias: w.ln1Bias, N: N, C: C)
        Matmul.forward(out: a.qkv, inp: a.ln1, weight: w.qkvWeight, bias: w.qkvBias, N: N, C: C, OC: 3 * C)
        // The rows that go on past attention and their residual.
        var rows = N, residual = inp
        switch attention {
        case .causal(let att, let B, let T):
            CausalSelfAttention.forward(out: a.atty, att: att, qkv: a.qkv, B: B, T: T, C: C, NH: heads)
        case .cached(let cache, let layer, let rows, let positions):
            cachedAttention(out: a.atty, qkv: a.qkv, cache: cache, layer: layer, rows: rows, positions: positions)
        case .lastPositions(let lengths, let B, let T, let gathered):
            CausalSelfAttention.forwardLast(out: a.atty, qkv: a.qkv, lengths: lengths, B: B, T: T, C: C, NH: heads)
            for b in 0..<B { (gathered + b * C).update(from: inp + (b * T + lengths[b] - 1) * C, count: C) }
            rows = B
            residual = UnsafePointer(gathered)
        }
        Matmul.forward(out: a.mid, inp: a.atty, weight: w.projWeight, bias: w.projBias, N: rows, C: C, OC: C,
                       residual: residual)
        LayerNorm.forward(out: a.ln2, mean: a.ln2Mean, rstd: a.ln2Rstd, inp: a.mid,
                          weight: w.ln2Weight, bias: w.ln2Bias, N: rows, C: C)
        Matmul.forward(out: a.fc, inp: a.ln2, weight: w.fcWeight, bias: w.fcBias, N: rows, C: C, OC: H)
        GELU.forward(out: a.fcGelu, inp: a.fc, N: rows * H)
        Matmul.forward(out: out, inp: a.fcGelu, weight: w.fcProjWeight, bias: w.fcProjBias, N: rows, C: H, OC: C,
                       residual: a.mid)
    }

    /// Backward pass of a `.causal` forward over `B` sequences of `T` tokens.
    ///
    /// `dres[N,C]` holds the gradient of the block's output and is turned in place into the
    /// gradient of its input `inp`. Parameter gradients accumulate into `g`.
    func backward(dres: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, weights w: TransformerBlockWeights,
                  gradients g: TransformerBlockWeights, activations a: TransformerBlockActivations,
                  att: UnsafePointer<Float>, scratch s: TransformerBlockScratch, B: Int, T: Int) {
        let C = width, H = hidden, N = B * T
        // dres = d(out); it flows unchanged into d(mid) through the identity branch.
        Matmul.backward(dinp: s.dfc, dweight: g.fcProjWeight, dbias: g.fcProjBias, dout: dres,
                        inp: a.fcGelu, weight: w.fcProjWeight, N: N, C: H, OC: C)              // dfc [N,H]
        GELU.backward(dinp: s.dfc, inp: a.fc, dout: s.dfc, N: N * H)
        Matmul.backward(dinp: s.dln, dweight: g.fcWeight, dbias: g.fcBias, dout: s.dfc,
                        inp: a.ln2, weight: w.fcWeight, N: N, C: C, OC: H)                     // dln [N,C]
        LayerNorm.backward(dinp: dres, dweight: g.ln2Weight, dbias: g.ln2Bias, dout: s.dln,
                           inp: a.mid, weight: w.ln2Weight, mean: a.ln2Mean, rstd: a.ln2Rstd, N: N, C: C)
        // dres = d(mid); it flows into d(inp) and the attention branch.
        Matmul.backward(dinp: s.datty, dweight: g.projWeight, dbias: g.projBias, dout: dres,
                        inp: a.atty, weight: w.projWeight, N: N, C: C, OC: C)                  // datty [N,C]
        CausalSelfAttention.backward(dqkv: s.dqkv, dout: s.datty, qkv: a.qkv, att: att,
                                     B: B, T: T, C: C, NH: heads)                              // dqkv [N,3C]
        Matmul.backward(dinp: s.dln, dweight: g.qkvWeight, dbias: g.qkvBias, dout: s.dqkv,
                        inp: a.ln1, weight: w.qkvWeight, N: N, C: C, OC: 3 * C)               // dln [N,C]
        LayerNorm.backward(dinp: dres, dweight: g.ln1Weight, dbias: g.ln1Bias, dout: s.dln,
                           inp: inp, weight: w.ln1Weight, mean: a.ln1Mean, rstd: a.ln1Rstd, N: N, C: C)
    }

    /// Attention of new tokens over the cache: stores each item's key and value at its
    /// position, then `out[i] = softmax(q_i · K[0...pos]ᵀ / √hs) · V[0...pos]` per head.
    private func cachedAttention(out: UnsafeMutablePointer<Float>, qkv: UnsafeMutablePointer<Float>,
                                 cache: GPTKVCache, layer l: Int, rows: [Int], positions: [Int]) {
        let C = width, NH = heads, hs = C / NH, N = rows.count, T = cache.config.context
        for i in 0..<N {
            for hh in 0..<NH {
                let o = cache.offset(layer: l, row: rows[i], head: hh) + positions[i] * hs
                (cache.k.data + o).update(from: qkv + i * 3 * C + C + hh * hs, count: hs)
                (cache.v.data + o).update(from: qkv + i * 3 * C + 2 * C + hh * hs, count: hs)
            }
        }
        let scale = 1 / Float(hs).squareRoot()
        let yp = SendablePointer(out)
        let qp = SendablePointer(qkv)
        let saved = BLAS.enterConcurrentRegion()
        Parallel.forRange(N * NH) { r in
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: T)
            defer { scores.deallocate() }
            for ih in r {
                let i = ih / NH, hh = ih % NH
                let base = cache.offset(layer: l, row: rows[i], head: hh)
                CausalSelfAttention.attendOne(out: yp.p + i * C + hh * hs, q: qp.p + i * 3 * C + hh * hs,
                                              keys: cache.k.data + base, values: cache.v.data + base, stride: hs,
                                              count: positions[i] + 1, headSize: hs, scale: scale, scores: scores)
            }
        }
        BLAS.restore(saved)
    }
}
