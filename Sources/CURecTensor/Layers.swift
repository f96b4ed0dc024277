import COpenBLAS
import Foundation

// Forward and backward kernels of a GPT-2 style transformer, one type per layer, written out
// plainly in the style of llm.c. All buffers are contiguous row-major float32; shapes are given
// in the doc comments. Conventions for the backward passes:
//   * parameter gradients (dw, db, dwte, ...) are ACCUMULATED (+=), so the caller zeroes them
//     once per step;
//   * activation gradients are OVERWRITTEN, except where a comment says "adds" (LayerNorm and
//     residual backward add into the residual stream, the embedding adds into its tables).
// Pointers are not bounds-checked: the model layer validates shapes and token ids first.

/// Token embedding plus learned position embedding.
public enum Embedding {
    /// `out[B,T,C] = wte[tokens[b,t], :] + wpe[t, :]`.
    ///
    /// - Parameters: `tokens` `[B,T]`, each in `0..<V`; `wte` `[V,C]`; `wpe` `[maxT>=T, C]`.
    public static func forward(
        out: UnsafeMutablePointer<Float>, tokens: UnsafePointer<Int32>,
        wte: UnsafePointer<Float>, wpe: UnsafePointer<Float>, B: Int, T: Int, C: Int
    ) {
        let o = SendablePointer(out)
        Parallel.forRange(B * T, grain: 64) { r in
            for bt in r {
                let t = bt % T
                let dst = o.p + bt * C
                let w = wte + Int(tokens[bt]) * C
                let p = wpe + t * C
                for i in 0..<C { dst[i] = w[i] + p[i] }
            }
        }
    }

    /// Adds `dout[B,T,C]` into `dwte[tokens[b,t], :]` and `dwpe[t, :]`.
    ///
    /// Split over channels so that repeated tokens never race.
    public static func backward(
        dwte: UnsafeMutablePointer<Float>, dwpe: UnsafeMutablePointer<Float>,
        dout: UnsafePointer<Float>, tokens: UnsafePointer<Int32>, B: Int, T: Int, C: Int
    ) {
        let dw = SendablePointer(dwte), dp = SendablePointer(dwpe)
        Parallel.forRange(C, grain: 32) { r in
            for bt in 0..<(B * T) {
                let t = bt % T
                let g = dout + bt * C
                let w = dw.p + Int(tokens[bt]) * C
                let p = dp.p + t * C
                for i in r {
                    w[i] += g[i]
                    p[i] += g[i]
                }
            }
        }
    }
}

/// Layer normalisation over the last dimension, `eps = 1e-5` as in GPT-2.
public enum LayerNorm {
    /// The epsilon added to the variance.
    public static let eps: Float = 1e-5

    /// `out[N,C] = (inp - mean) * rstd * w + b`; saves `mean[N]` and `rstd[N]` for backward.
    public static func forward(
        out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
        rstd: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, N: Int, C: Int
    ) {
        let o = SendablePointer(out), mp = SendablePointer(mean), rp = SendablePointer(rstd)
        // Rows of eight lanes at a time, then the remainder; 64 rows of 64 are a few
        // microseconds, less than handing work to another core costs.
        Parallel.forRange(N, grain: max(16, 4096 / max(C, 1))) { r in
            let wide = C & ~7
            for n in r {
                let x = inp + n * C
                var lanes = SIMD8<Float>()
                var i = 0
                while i < wide { lanes += load8(x + i); i += 8 }
                var m = lanes.sum()
                while i < C { m += x[i]; i += 1 }
                m /= Float(C)
                let mv = SIMD8<Float>(repeating: m)
                lanes = SIMD8<Float>()
                i = 0
                while i < wide { let d = load8(x + i) - mv; lanes += d * d; i += 8 }
                var v = lanes.sum()
                while i < C { let d = x[i] - m; v += d * d; i += 1 }
                v /= Float(C)
                let s = 1 / (v + eps).squareRoot()
                let sv = SIMD8<Float>(repeating: s)
                let y = o.p + n * C
                i = 0
                while i < wide {
                    store8((load8(x + i) - mv) * sv * load8(weight + i) + load8(bias + i), y + i)
                    i += 8
                }
                while i < C { y[i] = (x[i] - m) * s * weight[i] + bias[i]; i += 1 }
                mp.p[n] = m
                rp.p[n] = s
            }
        }
    }

    @inline(__always) @usableFromInline static func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }

    @inline(__always) @usableFromInline static func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
    }

    /// Backward of ``forward(out:mean:rstd:inp:weight:bias:N:C:)``.
    ///
    /// Adds into `dinp[N,C]` (the residual stream), `dweight[C]` and `dbias[C]`.
    public static func backward(
        dinp: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>,
        dbias: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
        N: Int, C: Int
    ) {
        let chunks = min(Parallel.workers, max(1, N / 16))
        // Per-chunk partial sums of dweight and dbias, reduced at the end.
        let partial = UnsafeMutablePointer<Float>.allocate(capacity: chunks * 2 * C)
        defer { partial.deallocate() }
        partial.initialize(repeating: 0, count: chunks * 2 * C)
        let di = SendablePointer(dinp), pp = SendablePointer(partial)
        Parallel.forEach(chunks) { c in
            let lo = N * c / chunks, hi = N * (c + 1) / chunks
            let dw = pp.p + c * 2 * C, db = dw + C
            for n in lo..<hi {
                let x = inp + n * C, g = dout + n * C, d = di.p + n * C
                let m = mean[n], s = rstd[n]
                var dnormMean: Float = 0, dnormNormMean: Float = 0
                for i in 0..<C {
                    let norm = (x[i] - m) * s
                    let dnorm = weight[i] * g[i]
                    dnormMean += dnorm
                    dnormNormMean += dnorm * norm
                }
                dnormMean /= Float(C)
                dnormNormMean /= Float(C)
                for i in 0..<C {
                    let norm = (x[i] - m) * s
                    let dnorm = weight[i] * g[i]
                    db[i] += g[i]
                    dw[i] += norm * g[i]
                    d[i] += (dnorm - dnormMean - norm * dnormNormMean) * s
                }
            }
        }
        for c in 0..<chunks {
            let dw = partial + c * 2 * C, db = dw + C
            for i in 0..<C {
                dweight[i] += dw[i]
                dbias[i] += db[i]
            }
        }
    }
}

/// A fully connected layer with Conv1D (GPT-2) weight layout `[in, out]`.
public enum Matmul {
    /// `out[N,OC] = residual[N,OC] + inp[N,C] @ weight[C,OC] + bias[OC]`.
    ///
    /// `bias` and `residual` may be nil. Passing `residual` fuses the residual connection that
    /// follows a projection (its backward is the identity, so ``backward`` is unchanged).
    public static func forward(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, N: Int, C: Int, OC: Int,
        residual: UnsafePointer<Float>? = nil
    ) {
        var beta: Float = 0
        let o = SendablePointer(out)
        if let residual, let bias {
            Parallel.forRange(N, grain: 64) { r in
                for n in r {
                    let d = o.p + n * OC, x = residual + n * OC
                    for i in 0..<OC { d[i] = x[i] + bias[i] }
                }
            }
            beta = 1
        } else if let residual {
            if UnsafePointer(out) != residual { out.update(from: residual, count: N * OC) }
            beta = 1
        } else if let bias {
            Parallel.forRange(N, grain: 64) { r in
                for n in r { (o.p + n * OC).update(from: bias, count: OC) }
            }
            beta = 1
        }
        BLAS.gemm(transA: false, transB: false, m: N, n: OC, k: C, a: inp, lda: C,
                  b: weight, ldb: OC, beta: beta, c: out, ldc: OC)
    }

    /// Backward of ``forward(out:inp:weight:bias:N:C:OC:)``.
    ///
    /// Writes `dinp[N,C] = dout @ weightᵀ` (skipped if nil); adds `dweight[C,OC] += inpᵀ @ dout`
    /// and `dbias[OC] += Σₙ dout[n]` (skipped if nil).
    public static func backward(
        dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>,
        dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
        inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, N: Int, C: Int, OC: Int
    ) {
        if let dinp {
            BLAS.gemm(transA: false, transB: true, m: N, n: C, k: OC, a: dout, lda: OC,
                      b: weight, ldb: OC, beta: 0, c: dinp, ldc: C)
        }
        BLAS.gemm(transA: true, transB: false, m: C, n: OC, k: N, a: inp, lda: C,
                  b: dout, ldb: OC, beta: 1, c: dweight, ldc: OC)
        if let dbias {
            let db = SendablePointer(dbias)
            Parallel.forRange(OC, grain: 64) { r in
                for n in 0..<N {
                    let g = dout + n * OC
                    for o in r { db.p[o] += g[o] }
                }
            }
        }
    }
}

/// Causal multi-head self-attention on a packed `qkv` activation.
///
/// Per (batch, head) pair: `S = scale · Q Kᵀ` (sgemm), causal mask + softmax row by row,
/// `Y = P V` (sgemm). Pairs are spread over the workers, each running single-threaded sgemm.
public enum CausalSelfAttention {
    /// Forward pass.
    ///
    /// - Parameters:
    ///   - out: `[B,T,C]`, heads concatenated along `C`.
    ///   - att: `[B,NH,T,T]` softmax probabilities (zeros above the diagonal), kept for backward.
    ///   - qkv: `[B,T,3C]`, laid out `q | k | v`, each `[NH, hs]` with `hs = C / NH`.
    public static func forward(
        out: UnsafeMutablePointer<Float>, att: UnsafeMutablePointer<Float>,
        qkv: UnsafePointer<Float>, B: Int, T: Int, C: Int, NH: Int
    ) {
        let hs = C / NH
        let C3 = 3 * C
        let scale = 1 / Float(hs).squareRoot()
        let o = SendablePointer(out), a = SendablePointer(att)
        let saved = BLAS.enterConcurrentRegion()
        defer { BLAS.restore(saved) }
        Parallel.forEach(B * NH) { bh in
            let b = bh / NH, h = bh % NH
            let q = qkv + b * T * C3 + h * hs
            let k = q + C
            let v = q + 2 * C
            let p = a.p + bh * T * T
            BLAS.single(false, true, T, T, hs, scale, q, C3, k, C3, 0, p, T)
            for i in 0..<T {
                let row = p + i * T
                var mx = -Float.infinity
                for j in 0...i where row[j] > mx { mx = row[j] }
                var sum: Float = 0
                for j in 0...i {
                    let e = expf(row[j] - mx)
                    row[j] = e
                    sum += e
                }
                let inv = 1 / sum
                for j in 0...i { row[j] *= inv }
                for j in (i + 1)..<T { row[j] = 0 }
            }
            BLAS.single(false, false, T, hs, T, 1, p, T, v, C3, 0, o.p + b * T * C + h * hs, C)
        }
    }

    /// Backward pass: writes `dqkv[B,T,3C]` from `dout[B,T,C]`, `qkv` and the saved `att`.
    public static func backward(
        dqkv: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
        qkv: UnsafePointer<Float>, att: UnsafePointer<Float>, B: Int, T: Int, C: Int, NH: Int
    ) {
        let hs = C / NH
        let C3 = 3 * C
        let scale = 1 / Float(hs).squareRoot()
        let d = SendablePointer(dqkv)
        let saved = BLAS.enterConcurrentRegion()
        defer { BLAS.restore(saved) }
        let chunks = min(Parallel.workers, B * NH)
        Parallel.forEach(chunks) { c in
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: T * T)
            defer { scratch.deallocate() }
            for bh in (B * NH * c / chunks)..<(B * NH * (c + 1) / chunks) {
                let b = bh / NH, h = bh % NH
                let q = qkv + b * T * C3 + h * hs
                let k = q + C, v = q + 2 * C
                let dq = d.p + b * T * C3 + h * hs
                let dk = dq + C, dv = dq + 2 * C
                let dy = dout + b * T * C + h * hs
                let p = att + bh * T * T
                // dP = dY Vᵀ   [T,T]
                BLAS.single(false, true, T, T, hs, 1, dy, C, v, C3, 0, scratch, T)
                // dV = Pᵀ dY   [T,hs]
                BLAS.single(true, false, T, hs, T, 1, p, T, dy, C, 0, dv, C3)
                // dS = P ⊙ (dP − rowsum(P ⊙ dP)), zero above the diagonal
                for i in 0..<T {
                    let pr = p + i * T, dr = scratch + i * T
                    var dot: Float = 0
                    for j in 0...i { dot += pr[j] * dr[j] }
                    for j in 0...i { dr[j] = pr[j] * (dr[j] - dot) }
                    for j in (i + 1)..<T { dr[j] = 0 }
                }
                // dQ = scale · dS K ; dK = scale · dSᵀ Q
                BLAS.single(false, false, T, hs, T, scale, scratch, T, k, C3, 0, dq, C3)
                BLAS.single(true, false, T, hs, T, scale, scratch, T, q, C3, 0, dk, C3)
            }
        }
    }
}

extension CausalSelfAttention {
    /// One query against `count` keys and values of one head (inference only, nothing kept):
    /// `out[hs] = softmax(scale · K q) · V`, with `K` and `V` `[count, hs]` whose rows lie
    /// `stride` floats apart. `scores` is scratch of at least `count` floats.
    ///
    /// The attention of a decoded token over its cache and of a sequence's last position over
    /// its window; ``forward(out:att:qkv:B:T:C:NH:)`` computes the same row for every position.
    public static func attendOne(
        out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, keys: UnsafePointer<Float>,
        values: UnsafePointer<Float>, stride: Int, count: Int, headSize hs: Int, scale: Float,
        scores: UnsafeMutablePointer<Float>
    ) {
        // scores[count] = scale · K q
        cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(count), Int32(hs), scale, keys, Int32(stride), q, 1, 0, scores, 1)
        var mx = -Float.infinity
        for j in 0..<count where scores[j] > mx { mx = scores[j] }
        var sum: Float = 0
        for j in 0..<count {
            let e = expf(scores[j] - mx)
            scores[j] = e
            sum += e
        }
        let inv = 1 / sum
        for j in 0..<count { scores[j] *= inv }
        // out[hs] = Vᵀ scores
        cblas_sgemv(CblasRowMajor, CblasTrans, Int32(count), Int32(hs), 1, values, Int32(stride), scores, 1, 0, out, 1)
    }

    /// Inference forward of one position per sequence: row `b` of `out[B,C]` is the attention
    /// output of position `lengths[b] − 1` of sequence `b` over its positions `0..<lengths[b]`
    /// (causal), equal to that row of ``forward(out:att:qkv:B:T:C:NH:)``.
    ///
    /// - Parameters:
    ///   - qkv: `[B,T,3C]` as in ``forward(out:att:qkv:B:T:C:NH:)``.
    ///   - lengths: `[B]`, each in `1...T`.
    public static func forwardLast(
        out: UnsafeMutablePointer<Float>, qkv: UnsafePointer<Float>, lengths: UnsafePointer<Int>,
        B: Int, T: Int, C: Int, NH: Int
    ) {
        let hs = C / NH, C3 = 3 * C
        let scale = 1 / Float(hs).squareRoot()
        let o = SendablePointer(out)
        let saved = BLAS.enterConcurrentRegion()
        defer { BLAS.restore(saved) }
        Parallel.forRange(B * NH, grain: 4) { r in
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: T)
            defer { scores.deallocate() }
            for bh in r {
                let b = bh / NH, h = bh % NH
                let len = lengths[b]
                let row = qkv + b * T * C3
                attendOne(out: o.p + b * C + h * hs, q: row + (len - 1) * C3 + h * hs, keys: row + C + h * hs,
                          values: row + 2 * C + h * hs, stride: C3, count: len, headSize: hs, scale: scale,
                          scores: scores)
            }
        }
    }
}

/// GELU with the tanh approximation used by GPT-2.
public enum GELU {
    @usableFromInline static let s: Float = (2 / Float.pi).squareRoot()

    /// `exp(x)` of eight lanes for `x` in `[−18, 18]`: `2^k · p(r)` with `k = round(x / ln 2)`,
    /// `r = x − k ln 2` (in two parts) and Cephes' degree-6 polynomial for `exp(r)`; within
    /// 2 ulp of `expf`. Only vector arithmetic, so a row runs eight lanes at a time.
    @inline(__always) @usableFromInline
    static func exp8(_ x: SIMD8<Float>) -> SIMD8<Float> {
        // Adding 1.5·2^23 rounds x/ln2 to an integer held in the low mantissa bits.
        let shifter = SIMD8<Float>(repeating: 12_582_912)
        let t = x * 1.442_695_04 + shifter
        let k = t - shifter
        let r = x - k * 0.693_359_375 - k * -2.121_944_4e-4
        var p = SIMD8<Float>(repeating: 1.987_569_15e-4)
        p = p * r + 1.398_199_95e-3
        p = p * r + 8.333_451_9e-3
        p = p * r + 4.166_579_59e-2
        p = p * r + 0.166_666_655
        p = p * r + 0.500_000_01
        let e = p * (r * r) + r + 1
        // 2^k: k + 127 in the exponent field.
        let kInt = unsafeBitCast(t, to: SIMD8<Int32>.self) &- 0x4B40_0000
        let scale = unsafeBitCast((kInt &+ 127) &<< 23, to: SIMD8<Float>.self)
        return e * scale
    }

    /// `tanh(u)` as `(e−1)/(e+1)` with `e = exp(2u)` (``exp8(_:)``) instead of libm's `tanhf`
    /// (which goes through `expm1f` and dominated the MLP). Absolute error below 3e-7, which
    /// is what GELU needs since it uses `1 + tanh`.
    @inline(__always) @usableFromInline
    static func tanh8(_ u: SIMD8<Float>) -> SIMD8<Float> {
        let c = u.clamped(lowerBound: SIMD8(repeating: -9), upperBound: SIMD8(repeating: 9))
        let e = exp8(c + c)
        return (e - 1) / (e + 1)
    }

    /// `tanh(u)` of one value, the same arithmetic as ``tanh8(_:)``.
    @inline(__always) @usableFromInline
    static func fastTanh(_ u: Float) -> Float { tanh8(SIMD8(repeating: u))[0] }

    /// Eight values of the forward: `0.5 x (1 + tanh(√(2/π)(x + 0.044715 x³)))`.
    @inline(__always) @usableFromInline
    static func forward8(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let u = s * (x + 0.044715 * x * x * x)
        return 0.5 * x * (1 + tanh8(u))
    }

    /// Eight values of the derivative `gelu'(x)`.
    @inline(__always) @usableFromInline
    static func derivative8(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let u = s * (x + 0.044715 * x * x * x)
        let th = tanh8(u)
        let sech2 = 1 - th * th
        return 0.5 * (1 + th) + 0.5 * x * sech2 * s * (1 + 3 * 0.044715 * x * x)
    }

    /// `out[N] = 0.5 x (1 + tanh(√(2/π)(x + 0.044715 x³)))` (`out` may alias `inp`).
    public static func forward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, N: Int) {
        let o = SendablePointer(out)
        Parallel.forRange(N, grain: 16384) { r in
            var i = r.lowerBound
            while i + 8 <= r.upperBound {
                LayerNorm.store8(forward8(LayerNorm.load8(inp + i)), o.p + i)
                i += 8
            }
            while i < r.upperBound {
                o.p[i] = forward8(SIMD8(repeating: inp[i]))[0]
                i += 1
            }
        }
    }

    /// Writes `dinp[N] = gelu'(inp) · dout` (`dinp` may alias `dout`).
    public static func backward(
        dinp: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, dout: UnsafePointer<Float>,
        N: Int
    ) {
        let d = SendablePointer(dinp)
        Parallel.forRange(N, grain: 16384) { r in
            var i = r.lowerBound
            while i + 8 <= r.upperBound {
                LayerNorm.store8(derivative8(LayerNorm.load8(inp + i)) * LayerNorm.load8(dout + i), d.p + i)
                i += 8
            }
            while i < r.upperBound {
                d.p[i] = derivative8(SIMD8(repeating: inp[i]))[0] * dout[i]
                i += 1
            }
        }
    }
}

/// Residual connection `out = a + b`.
public enum Residual {
    /// `out[N] = a[N] + b[N]` (`out` may alias `a`).
    public static func forward(
        out: UnsafeMutablePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>, N: Int
    ) {
        let o = SendablePointer(out)
        Parallel.forRange(N, grain: 8192) { r in
            for i in r { o.p[i] = a[i] + b[i] }
        }
    }

    /// Adds `dout` into both `da` and `db`.
    public static func backward(
        da: UnsafeMutablePointer<Float>, db: UnsafeMutablePointer<Float>,
        dout: UnsafePointer<Float>, N: Int
    ) {
        let x = SendablePointer(da), y = SendablePointer(db)
        Parallel.forRange(N, grain: 8192) { r in
            for i in r {
                x.p[i] += dout[i]
                y.p[i] += dout[i]
            }
        }
    }
}

/// Softmax followed by cross-entropy against integer targets.
///
/// A negative target marks a position that does not contribute (loss 0, gradient 0).
public enum SoftmaxCrossEntropy {
    /// Writes `probs[N,V] = softmax(logits)` (may alias `logits`) and `losses[N] = −log p[target]`.
    public static func forward(
        losses: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
        logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>, N: Int, V: Int
    ) {
        let l = SendablePointer(losses), pr = SendablePointer(probs)
        Parallel.forRange(N, grain: 4) { r in
            for n in r {
                let x = logits + n * V, p = pr.p + n * V
                var mx = -Float.infinity
                for i in 0..<V where x[i] > mx { mx = x[i] }
                var sum: Float = 0
                for i in 0..<V {
                    let e = expf(x[i] - mx)
                    p[i] = e
                    sum += e
                }
                let inv = 1 / sum
                for i in 0..<V { p[i] *= inv }
                let t = Int(targets[n])
                l.p[n] = t >= 0 ? -logf(p[t]) : 0
            }
        }
    }

    /// Writes `dlogits[N,V] = (probs − onehot(target)) · dloss[n]` (may alias `probs`).
    public static func backward(
        dlogits: UnsafeMutablePointer<Float>, probs: UnsafePointer<Float>,
        targets: UnsafePointer<Int32>, dloss: UnsafePointer<Float>, N: Int, V: Int
    ) {
        let dl = SendablePointer(dlogits)
        Parallel.forRange(N, grain: 4) { r in
            for n in r {
                let p = probs + n * V, d = dl.p + n * V
                let t = Int(targets[n])
                let g = t >= 0 ? dloss[n] : 0
                for i in 0..<V { d[i] = p[i] * g }
                if t >= 0 { d[t] -= g }
            }
        }
    }

    /// Fused training pass: replaces `logits[N,V]` in place by `dloss·w[n]·(softmax − onehot)`
    /// and writes the unweighted `losses[N]`. `weights[N]` (nil: all 1) scales each position's
    /// gradient, e.g. advantages of a policy-gradient loss. Uses one read and one write of the
    /// logits instead of four.
    public static func forwardBackward(
        losses: UnsafeMutablePointer<Float>, logits: UnsafeMutablePointer<Float>,
        targets: UnsafePointer<Int32>, dloss: Float, weights: UnsafePointer<Float>? = nil,
        N: Int, V: Int
    ) {
        let l = SendablePointer(losses), lg = SendablePointer(logits)
        Parallel.forRange(N, grain: 4) { r in
            for n in r {
                let x = lg.p + n * V
                let t = Int(targets[n])
                if t < 0 {
                    x.update(repeating: 0, count: V)
                    l.p[n] = 0
                    continue
                }
                var mx = -Float.infinity
                for i in 0..<V where x[i] > mx { mx = x[i] }
                let xt = x[t]
                var sum: Float = 0
                for i in 0..<V {
                    let e = expf(x[i] - mx)
                    x[i] = e
                    sum += e
                }
                l.p[n] = logf(sum) - (xt - mx)
                let scale = dloss * (weights?[n] ?? 1)
                let g = scale / sum
                for i in 0..<V { x[i] *= g }
                x[t] -= scale
            }
        }
    }
}

/// A fully connected layer without bias in the PyTorch / GGUF weight layout `[out, in]`:
/// `y = x · Wᵀ`. Used by the Llama blocks and, with the token embedding as `W`, by the tied
/// language-model heads.
public enum Linear {
    /// `out[N,OC] = residual[N,OC] + inp[N,C] @ weight[OC,C]ᵀ`.
    ///
    /// `residual` may be nil or alias `out`; passing it fuses the residual connection that
    /// follows a projection (its backward is the identity, so ``backward`` is unchanged).
    public static func forward(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, N: Int, C: Int, OC: Int,
        residual: UnsafePointer<Float>? = nil
    ) {
        var beta: Float = 0
        if let residual {
            if UnsafePointer(out) != residual { out.update(from: residual, count: N * OC) }
            beta = 1
        }
        BLAS.gemm(transA: false, transB: true, m: N, n: OC, k: C, a: inp, lda: C,
                  b: weight, ldb: C, beta: beta, c: out, ldc: OC)
    }

    /// Backward of ``forward(out:inp:weight:N:C:OC:residual:)``.
    ///
    /// Writes `dinp[N,C] = dout @ weight` (skipped if nil; ADDED instead of written when
    /// `accumulateInput`, for inputs that feed several projections) and adds
    /// `dweight[OC,C] += doutᵀ @ inp` (skipped if nil, e.g. for a frozen weight).
    public static func backward(
        dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?,
        dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        N: Int, C: Int, OC: Int, accumulateInput: Bool = false
    ) {
        if let dinp {
            BLAS.gemm(transA: false, transB: false, m: N, n: C, k: OC, a: dout, lda: OC,
                      b: weight, ldb: C, beta: accumulateInput ? 1 : 0, c: dinp, ldc: C)
        }
        if let dweight {
            BLAS.gemm(transA: true, transB: false, m: OC, n: C, k: N, a: dout, lda: OC,
                      b: inp, ldb: C, beta: 1, c: dweight, ldc: C)
        }
    }
}

/// The language-model head tied to the token embedding: `logits = x · wteᵀ`, a ``Linear``
/// layer whose weight is the embedding table `[V, C]`.
public enum TiedLMHead {
    /// `logits[N,V] = inp[N,C] @ wte[V,C]ᵀ`.
    public static func forward(
        logits: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
        wte: UnsafePointer<Float>, N: Int, C: Int, V: Int
    ) {
        Linear.forward(out: logits, inp: inp, weight: wte, N: N, C: C, OC: V)
    }

    /// Writes `dinp[N,C] = dlogits @ wte` and adds `dwte[V,C] += dlogitsᵀ @ inp`.
    public static func backward(
        dinp: UnsafeMutablePointer<Float>, dwte: UnsafeMutablePointer<Float>,
        dlogits: UnsafePointer<Float>, inp: UnsafePointer<Float>, wte: UnsafePointer<Float>,
        N: Int, C: Int, V: Int
    ) {
        Linear.backward(dinp: dinp, dweight: dwte, dout: dlogits, inp: inp, weight: wte,
                        N: N, C: C, OC: V)
    }
}
