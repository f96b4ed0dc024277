import CQuantKernels
import Foundation

// Forward and backward kernels of a Llama-style transformer (token embedding, RMSNorm, rotary
// position embedding, grouped-query causal attention over a key/value cache, SwiGLU), in the style of
// Layers.swift: contiguous row-major float32 buffers, shapes in the doc comments, parameter
// gradients ACCUMULATED (+=), activation gradients OVERWRITTEN unless a comment says "adds".
// The projections use ``Linear`` (weights `[out, in]`). Pointers are not bounds-checked: the
// model layer validates shapes, positions and token ids first.

/// Token embedding without position embedding (positions enter through ``RotaryEmbedding``).
public enum TokenEmbedding {
    /// `out[N,C] = wte[tokens[n], :]`; `tokens` `[N]`, each in `0..<V`; `wte` `[V,C]`.
    public static func forward(
        out: UnsafeMutablePointer<Float>, tokens: UnsafePointer<Int32>,
        wte: UnsafePointer<Float>, N: Int, C: Int
    ) {
        let o = SendablePointer(out)
        Parallel.forRange(N, grain: 64) { r in
            for n in r { (o.p + n * C).update(from: wte + Int(tokens[n]) * C, count: C) }
        }
    }

    /// Adds `dout[N,C]` into `dwte[tokens[n], :]`, split over channels so that repeated tokens
    /// never race.
    public static func backward(
        dwte: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
        tokens: UnsafePointer<Int32>, N: Int, C: Int
    ) {
        let dw = SendablePointer(dwte)
        Parallel.forRange(C, grain: 32) { r in
            for n in 0..<N {
                let g = dout + n * C, w = dw.p + Int(tokens[n]) * C
                for i in r { w[i] += g[i] }
            }
        }
    }
}

/// Root-mean-square normalisation over the last dimension (no mean subtraction, no bias).
public enum RMSNorm {
    /// `out[N,C] = inp · rstd · weight` with `rstd[n] = 1/√(mean(inp[n]²) + eps)`.
    ///
    /// Saves `rstd[N]` for backward when it is non-nil. `out` may alias `inp`.
    public static func forward(
        out: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>?,
        inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, eps: Float, N: Int, C: Int
    ) {
        let o = SendablePointer(out)
        let rp = rstd.map { SendablePointer($0) }
        Parallel.forRange(N, grain: 16) { r in
            for n in r {
                let x = inp + n * C
                var ss: Float = 0
                for i in 0..<C { ss += x[i] * x[i] }
                let s = 1 / (ss / Float(C) + eps).squareRoot()
                let y = o.p + n * C
                for i in 0..<C { y[i] = x[i] * s * weight[i] }
                rp?.p[n] = s
            }
        }
    }

    /// Backward of ``forward(out:rstd:inp:weight:eps:N:C:)``.
    ///
    /// With `g = dout ⊙ weight`: ADDS `rstd·g − rstd³·inp·(g·inp)/C` into `dinp[N,C]` (the
    /// residual stream) and `dout ⊙ inp · rstd` summed over rows into `dweight[C]` (skipped if
    /// nil, e.g. for a frozen weight).
    public static func backward(
        dinp: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>?,
        dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        rstd: UnsafePointer<Float>, N: Int, C: Int
    ) {
        let chunks = min(Parallel.workers, max(1, N / 16))
        // Per-chunk partial sums of dweight, reduced at the end.
        let partial = UnsafeMutablePointer<Float>.allocate(capacity: chunks * C)
        defer { partial.deallocate() }
        partial.initialize(repeating: 0, count: chunks * C)
        let di = SendablePointer(dinp), pp = SendablePointer(partial)
        Parallel.forEach(chunks) { c in
            let dw = pp.p + c * C
            for n in (N * c / chunks)..<(N * (c + 1) / chunks) {
                let x = inp + n * C, g = dout + n * C, d = di.p + n * C
                let s = rstd[n]
                var dot: Float = 0
                for i in 0..<C { dot += weight[i] * g[i] * x[i] }
                let k = s * s * s * dot / Float(C)
                for i in 0..<C {
                    d[i] += s * weight[i] * g[i] - k * x[i]
                    dw[i] += g[i] * x[i] * s
                }
            }
        }
        guard let dweight else { return }
        for c in 0..<chunks {
            let dw = partial + c * C
            for i in 0..<C { dweight[i] += dw[i] }
        }
    }
}

/// Rotary position embedding on ADJACENT pairs, as ggml's "normal" rope mode and the GGUF row
/// order of Llama's query and key projections expect.
///
/// In each head of size `hs`, the pair `(x[2i], x[2i+1])` is rotated by the angle
/// `p · base^(−2i/hs)`, `p` the position of the row. (Hugging Face's `rotate_half` pairs
/// `x[i]` with `x[i + hs/2]` instead; the two agree once the projection rows are permuted, see
/// the model's row-order mapping.) Cosines and sines are precomputed for positions
/// `0..<maxPositions`, angles computed in double precision.
public struct RotaryEmbedding: Sendable {
    /// Size of one head (even).
    public let headSize: Int
    /// The base θ of the frequencies.
    public let base: Double
    /// Positions covered by the table.
    public let maxPositions: Int
    /// `[maxPositions, headSize/2]` interleaved as (cos, sin).
    private let table: [Float]

    /// Precomputes the table; `headSize` must be even and positive, `maxPositions` positive.
    public init(headSize: Int, base: Double, maxPositions: Int) {
        precondition(headSize > 0 && headSize % 2 == 0 && maxPositions > 0,
                     "rotary embedding needs an even head size and positive positions")
        self.headSize = headSize
        self.base = base
        self.maxPositions = maxPositions
        let half = headSize / 2
        var table = [Float](repeating: 0, count: maxPositions * half * 2)
        for i in 0..<half {
            let frequency = pow(base, -2 * Double(i) / Double(headSize))
            for p in 0..<maxPositions {
                let angle = Double(p) * frequency
                table[(p * half + i) * 2] = Float(cos(angle))
                table[(p * half + i) * 2 + 1] = Float(sin(angle))
            }
        }
        self.table = table
    }

    /// Rotates `x[N, heads, headSize]` in place, row `n` by its position `positions[n]`
    /// (each in `0..<maxPositions`).
    public func forward(_ x: UnsafeMutablePointer<Float>, positions: UnsafePointer<Int32>,
                        N: Int, heads: Int) {
        rotate(x, positions: positions, N: N, heads: heads, sign: 1)
    }

    /// Backward of ``forward(_:positions:N:heads:)``: the rotation is orthogonal, so the
    /// gradient `dx[N, heads, headSize]` is rotated in place by the opposite angle.
    public func backward(_ dx: UnsafeMutablePointer<Float>, positions: UnsafePointer<Int32>,
                         N: Int, heads: Int) {
        rotate(dx, positions: positions, N: N, heads: heads, sign: -1)
    }

    private func rotate(_ x: UnsafeMutablePointer<Float>, positions: UnsafePointer<Int32>,
                        N: Int, heads: Int, sign: Float) {
        let xp = SendablePointer(x)
        let half = headSize / 2, hs = headSize
        table.withUnsafeBufferPointer { tb in
            guard let t = tb.baseAddress else { return }
            Parallel.forRange(N, grain: 32) { r in
                for n in r {
                    let cs = t + Int(positions[n]) * half * 2
                    for h in 0..<heads {
                        let v = xp.p + (n * heads + h) * hs
                        for i in 0..<half {
                            let c = cs[2 * i], s = sign * cs[2 * i + 1]
                            let a = v[2 * i], b = v[2 * i + 1]
                            v[2 * i] = a * c - b * s
                            v[2 * i + 1] = a * s + b * c
                        }
                    }
                }
            }
        }
    }
}

/// A run of consecutive query positions of one sequence, the unit of work of
/// ``GroupedQueryAttention``.
///
/// The queries `first..<first+count` of the query buffer belong to sequence `row` of the
/// key/value cache, at positions `start..<start+count`; query `j` attends to cached positions
/// `0...start+j`. Training uses one span per batch row (`start` 0, `count` T); decoding uses
/// one span per sequence with `start` = tokens already cached.
public struct AttentionSpan: Sendable, Equatable {
    /// Sequence (row of the key/value cache).
    public var row: Int
    /// Position of the first query (number of positions cached before the span).
    public var start: Int
    /// Index of the first query in the query buffer.
    public var first: Int
    /// Number of queries.
    public var count: Int

    public init(row: Int, start: Int, first: Int, count: Int) {
        self.row = row
        self.start = start
        self.first = first
        self.count = count
    }

    /// Positions attended to by the span's last query: `start + count`.
    public var keys: Int { start + count }
}

/// Where a key/value cache keeps position `i` of key/value head `g` of sequence `row`:
/// `row·rowStride + g·headStride + i·positionStride` floats from its start (`hs` contiguous
/// floats from there).
public struct KeyValueLayout: Sendable, Equatable {
    public var rowStride: Int
    public var headStride: Int
    public var positionStride: Int

    public init(rowStride: Int, headStride: Int, positionStride: Int) {
        self.rowStride = rowStride
        self.headStride = headStride
        self.positionStride = positionStride
    }

    /// `[rows, capacity, NKV·hs]`: the heads of a position together, as the key and value
    /// projections of a training pass come out.
    public static func positionMajor(capacity: Int, NKV: Int, hs: Int) -> KeyValueLayout {
        KeyValueLayout(rowStride: capacity * NKV * hs, headStride: hs, positionStride: NKV * hs)
    }

    /// `[rows, NKV, capacity, hs]`: the positions of a head together, so that attention reads
    /// each head's keys and values as one contiguous stream (a decoding cache).
    public static func headMajor(capacity: Int, NKV: Int, hs: Int) -> KeyValueLayout {
        KeyValueLayout(rowStride: NKV * capacity * hs, headStride: capacity * hs, positionStride: hs)
    }
}

/// Causal attention with `NH` query heads sharing `NKV` key/value heads (grouped-query
/// attention): query head `h` uses key/value head `h / (NH/NKV)`.
///
/// Keys and values are read from a cache (``KeyValueLayout``) that already holds the span's
/// own keys and values: in training the cache is the step's key/value projection
/// `[B, T, NKV·hs]` (position-major, capacity `T`); when decoding it is the model's KV cache.
/// Per (span, head): `S = scale · Q Kᵀ` (sgemm), causal mask + softmax row by row, `Y = P V`
/// (sgemm); pairs are spread over the workers, each running single-threaded sgemm. A
/// decoding step (one query per span) goes through `curec_attention_single` instead.
public enum GroupedQueryAttention {
    /// Offsets of each span's probabilities in the `probs` buffer, and the total size.
    public static func probabilityOffsets(_ spans: [AttentionSpan], NH: Int) -> (offsets: [Int], total: Int) {
        var offsets: [Int] = []
        offsets.reserveCapacity(spans.count)
        var total = 0
        for s in spans {
            offsets.append(total)
            total += NH * s.count * s.keys
        }
        return (offsets, total)
    }

    /// Forward pass.
    ///
    /// - Parameters:
    ///   - out: `[N, NH·hs]`, heads concatenated; row `first+j` of each span written.
    ///   - probs: softmax probabilities kept for backward, or nil; per span in order
    ///     `[NH, count, start+count]` (zeros above the causal diagonal), i.e. `[B, NH, T, T]`
    ///     for training spans. Size: ``probabilityOffsets(_:NH:)``.
    ///   - q: `[N, NH·hs]` queries (already rotated).
    ///   - keys, values: cache `[rows, capacity, NKV·hs]` holding positions `0..<start+count`
    ///     of every span's row (keys already rotated).
    public static func forward(
        out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>?,
        q: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
        capacity: Int, spans: [AttentionSpan], NH: Int, NKV: Int, hs: Int
    ) {
        forward(out: out, probs: probs, q: q, keys: keys, values: values,
                layout: .positionMajor(capacity: capacity, NKV: NKV, hs: hs), spans: spans, NH: NH, NKV: NKV, hs: hs)
    }

    /// ``forward(out:probs:q:keys:values:capacity:spans:NH:NKV:hs:)`` over a cache laid out by
    /// `layout`.
    public static func forward(
        out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>?,
        q: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
        layout: KeyValueLayout, spans: [AttentionSpan], NH: Int, NKV: Int, hs: Int
    ) {
        let QC = NH * hs, group = NH / NKV, ld = layout.positionStride
        let scale = 1 / Float(hs).squareRoot()
        let offsets = probabilityOffsets(spans, NH: NH).offsets
        let o = SendablePointer(out)
        let pr = probs.map { SendablePointer($0) }
        let saved = BLAS.enterConcurrentRegion()
        defer { BLAS.restore(saved) }
        if probs == nil && spans.allSatisfy({ $0.count == 1 }) {
            // A decoding step, one query per span: the `group` query heads sharing a key/value
            // head are adjacent in the query row and go through curec_attention_single together,
            // which reads each cached key and value row once (one-row sgemm calls, two per head,
            // cost more in calls and packing than in arithmetic). Pairs (span, key/value head)
            // spread over the workers, two at least per thread hop.
            Parallel.forRange(spans.count * NKV, grain: 2) { r in
                let most = r.map { spans[$0 / NKV].keys }.max() ?? 0
                let p = UnsafeMutablePointer<Float>.allocate(capacity: max(group * most, 1))  // [group, L]
                defer { p.deallocate() }
                for u in r {
                    let s = spans[u / NKV], g = u % NKV
                    let at = s.first * QC + g * group * hs, cached = s.row * layout.rowStride + g * layout.headStride
                    curec_attention_single(q + at, keys + cached, values + cached, Int64(s.keys), Int64(ld),
                                           Int64(group), Int64(hs), scale, p, o.p + at)
                }
            }
            return
        }
        Parallel.forRange(spans.count * NH) { r in
            var scratch: UnsafeMutablePointer<Float>? = nil
            if pr == nil {
                let most = r.map { spans[$0 / NH].count * spans[$0 / NH].keys }.max() ?? 0
                scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(most, 1))
            }
            defer { scratch?.deallocate() }
            for sh in r {
                let s = spans[sh / NH], h = sh % NH
                let L = s.keys
                let qh = q + s.first * QC + h * hs
                let kg = keys + s.row * layout.rowStride + (h / group) * layout.headStride
                let vg = values + s.row * layout.rowStride + (h / group) * layout.headStride
                let p: UnsafeMutablePointer<Float>
                if let pr {
                    p = pr.p + offsets[sh / NH] + h * s.count * L
                } else if let scratch {
                    p = scratch
                } else {
                    continue
                }
                BLAS.single(false, true, s.count, L, hs, scale, qh, QC, kg, ld, 0, p, L)
                for j in 0..<s.count {
                    let row = p + j * L
                    let valid = s.start + j + 1
                    var mx = -Float.infinity
                    for i in 0..<valid where row[i] > mx { mx = row[i] }
                    var sum: Float = 0
                    for i in 0..<valid {
                        let e = expf(row[i] - mx)
                        row[i] = e
                        sum += e
                    }
                    let inv = 1 / sum
                    for i in 0..<valid { row[i] *= inv }
                    for i in valid..<L { row[i] = 0 }
                }
                BLAS.single(false, false, s.count, hs, L, 1, p, L, vg, ld, 0,
                            o.p + s.first * QC + h * hs, QC)
            }
        }
    }

    /// Backward pass for spans on distinct cache rows (the training case).
    ///
    /// From `dout[N, NH·hs]` and the saved `probs`, writes `dq[N, NH·hs]` (rows of the spans)
    /// and `dkeys`, `dvalues` `[rows, capacity, NKV·hs]` (positions `0..<start+count` of each
    /// span's row; the heads of a group are summed).
    public static func backward(
        dq: UnsafeMutablePointer<Float>, dkeys: UnsafeMutablePointer<Float>,
        dvalues: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
        q: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
        probs: UnsafePointer<Float>, capacity: Int, spans: [AttentionSpan],
        NH: Int, NKV: Int, hs: Int
    ) {
        let QC = NH * hs, KC = NKV * hs, group = NH / NKV
        let scale = 1 / Float(hs).squareRoot()
        let offsets = probabilityOffsets(spans, NH: NH).offsets
        let dqp = SendablePointer(dq), dkp = SendablePointer(dkeys), dvp = SendablePointer(dvalues)
        let saved = BLAS.enterConcurrentRegion()
        defer { BLAS.restore(saved) }
        Parallel.forRange(spans.count * NKV) { r in
            let most = r.map { spans[$0 / NKV].count * spans[$0 / NKV].keys }.max() ?? 0
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(most, 1))
            defer { scratch.deallocate() }
            for sg in r {
                let s = spans[sg / NKV], g = sg % NKV
                let L = s.keys, n = s.count
                let kg = keys + s.row * capacity * KC + g * hs
                let vg = values + s.row * capacity * KC + g * hs
                let dkg = dkp.p + s.row * capacity * KC + g * hs
                let dvg = dvp.p + s.row * capacity * KC + g * hs
                for h in (g * group)..<((g + 1) * group) {
                    let beta: Float = h == g * group ? 0 : 1
                    let qh = q + s.first * QC + h * hs
                    let dqh = dqp.p + s.first * QC + h * hs
                    let dy = dout + s.first * QC + h * hs
                    let p = probs + offsets[sg / NKV] + h * n * L
                    // dP = dY Vᵀ   [n, L]
                    BLAS.single(false, true, n, L, hs, 1, dy, QC, vg, KC, 0, scratch, L)
                    // dV += Pᵀ dY  [L, hs]
                    BLAS.single(true, false, L, hs, n, 1, p, L, dy, QC, beta, dvg, KC)
                    // dS = P ⊙ (dP − rowsum(P ⊙ dP)), zero past the causal limit
                    for j in 0..<n {
                        let pr = p + j * L, dr = scratch + j * L
                        let valid = s.start + j + 1
                        var dot: Float = 0
                        for i in 0..<valid { dot += pr[i] * dr[i] }
                        for i in 0..<valid { dr[i] = pr[i] * (dr[i] - dot) }
                        for i in valid..<L { dr[i] = 0 }
                    }
                    // dQ = scale · dS K ; dK += scale · dSᵀ Q
                    BLAS.single(false, false, n, hs, L, scale, scratch, L, kg, KC, 0, dqh, QC)
                    BLAS.single(true, false, L, hs, n, scale, scratch, L, qh, QC, beta, dkg, KC)
                }
            }
        }
    }
}

/// The SwiGLU gate of Llama's feed-forward block: `silu(gate) · up`, `silu(x) = x·σ(x)`.
public enum SwiGLU {
    /// `out[N] = silu(gate[N]) · up[N]` (`out` may alias `gate` or `up`), through
    /// `curec_swiglu` (e^x 8 lanes at a time with AVX2, to about `expf`'s accuracy).
    public static func forward(
        out: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>,
        N: Int
    ) {
        let o = SendablePointer(out)
        Parallel.forRange(N, grain: 4096) { r in
            curec_swiglu(o.p + r.lowerBound, gate + r.lowerBound, up + r.lowerBound, Int64(r.count))
        }
    }

    /// Writes `dgate[N] = dout · up · σ(g)(1 + g(1 − σ(g)))` and `dup[N] = dout · silu(g)`.
    /// `dgate` may alias `dout`.
    public static func backward(
        dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>,
        dout: UnsafePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, N: Int
    ) {
        let dg = SendablePointer(dgate), du = SendablePointer(dup)
        Parallel.forRange(N, grain: 4096) { r in
            for i in r {
                let g = gate[i], d = dout[i]
                let sig = 1 / (1 + expf(-g))
                du.p[i] = d * g * sig
                dg.p[i] = d * up[i] * sig * (1 + g * (1 - sig))
            }
        }
    }
}
