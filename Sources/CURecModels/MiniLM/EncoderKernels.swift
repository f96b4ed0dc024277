import CURecTensor
import Foundation

// Inference kernels of the BERT encoder. Sequences are packed: the rows of every activation
// buffer are the real tokens of all texts back to back (no padding rows), and only attention
// looks at sequence boundaries, so padding costs nothing. Rows are split over the cores.

/// A read-only pointer that may be captured by worker closures.
struct SendableConstPointer<T>: @unchecked Sendable {
    let p: UnsafePointer<T>
    init(_ p: UnsafePointer<T>) { self.p = p }
}

/// Where each packed sequence starts and how long it is.
struct PackedSequences: Sendable {
    /// First row of each sequence.
    let starts: [Int]
    /// Length of each sequence.
    let lengths: [Int]
    /// Total rows.
    let totalTokens: Int

    init(lengths: [Int]) {
        var starts: [Int] = []
        starts.reserveCapacity(lengths.count)
        var total = 0
        for length in lengths {
            starts.append(total)
            total += length
        }
        self.starts = starts
        self.lengths = lengths
        self.totalTokens = total
    }
}

enum EncoderKernels {
    /// `out[t] = LayerNorm(word[ids[t]] + position[positions[t]] + type[0])` for `tokens` rows.
    static func embed(
        out: UnsafeMutablePointer<Float>, ids: UnsafePointer<Int32>, positions: UnsafePointer<Int32>,
        tokens: Int, weights: MiniLMWeights, width: Int, epsilon: Float
    ) {
        let o = SendablePointer(out)
        let idp = SendableConstPointer(ids), posp = SendableConstPointer(positions)
        let word = SendableConstPointer(weights.wordEmbeddings.base)
        let position = SendableConstPointer(weights.positionEmbeddings.base)
        let type = SendableConstPointer(weights.tokenTypeEmbeddings.base)
        let scale = SendableConstPointer(weights.embeddingNormScale.base)
        let shift = SendableConstPointer(weights.embeddingNormShift.base)
        Parallel.forRange(tokens, grain: 32) { rows in
            for t in rows {
                let row = o.p + t * width
                let w = word.p + Int(idp.p[t]) * width
                let p = position.p + Int(posp.p[t]) * width
                for i in 0..<width { row[i] = w[i] + p[i] + type.p[i] }
                normalizeRow(row, width: width, scale: scale.p, shift: shift.p, epsilon: epsilon)
            }
        }
    }

    /// `x[r] = LayerNorm(x[r] + residual[r])` for every row.
    static func addAndNormalize(
        _ x: UnsafeMutablePointer<Float>, residual: UnsafePointer<Float>, rows: Int, width: Int,
        scale: FrozenFloats, shift: FrozenFloats, epsilon: Float
    ) {
        let xp = SendablePointer(x), rp = SendableConstPointer(residual)
        let s = SendableConstPointer(scale.base), b = SendableConstPointer(shift.base)
        Parallel.forRange(rows, grain: 32) { range in
            for r in range {
                let row = xp.p + r * width, add = rp.p + r * width
                for i in 0..<width { row[i] += add[i] }
                normalizeRow(row, width: width, scale: s.p, shift: b.p, epsilon: epsilon)
            }
        }
    }

    /// LayerNorm of one row in place (two-pass mean and variance).
    @inline(__always)
    static func normalizeRow(
        _ row: UnsafeMutablePointer<Float>, width: Int, scale: UnsafePointer<Float>,
        shift: UnsafePointer<Float>, epsilon: Float
    ) {
        var sum: Float = 0
        for i in 0..<width { sum += row[i] }
        let mean = sum / Float(width)
        var squares: Float = 0
        for i in 0..<width {
            let d = row[i] - mean
            squares += d * d
        }
        let inverse = 1 / (squares / Float(width) + epsilon).squareRoot()
        for i in 0..<width { row[i] = (row[i] - mean) * inverse * scale[i] + shift[i] }
    }

    /// Copies `bias` into every row of `out` (`rows x width`), ready for a `beta = 1` product.
    static func broadcastRows(_ out: UnsafeMutablePointer<Float>, bias: FrozenFloats, rows: Int, width: Int) {
        let o = SendablePointer(out), b = SendableConstPointer(bias.base)
        Parallel.forRange(rows, grain: 64) { range in
            for r in range { (o.p + r * width).update(from: b.p, count: width) }
        }
    }

    /// `out = x · Wᵀ + bias` with `x` `[rows, inputs]`, `W` `[outputs, inputs]`.
    static func linear(
        _ x: UnsafePointer<Float>, rows: Int, inputs: Int, weight: FrozenFloats, bias: FrozenFloats,
        outputs: Int, out: UnsafeMutablePointer<Float>
    ) {
        broadcastRows(out, bias: bias, rows: rows, width: outputs)
        BLAS.gemm(
            transA: false, transB: true, m: rows, n: outputs, k: inputs, a: x, lda: inputs,
            b: weight.base, ldb: inputs, beta: 1, c: out, ldc: outputs)
    }

    /// GELU with the error function, `x · ½(1 + erf(x/√2))`, in place (not the tanh
    /// approximation); erf comes from `vectorErf`, whose error is below Float32 rounding.
    static func gelu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        let xp = SendablePointer(x)
        Parallel.forRange(count, grain: 8192) { range in
            let base = xp.p + range.lowerBound
            for i in 0..<range.count {
                let v = base[i]
                base[i] = 0.5 * v * (1 + vectorErf(v * 0.70710678118654752))
            }
        }
    }

    /// erf(z) as `z · P(z²) / Q(z²)` evaluated in Double, saturating to ±1 beyond |z| = 4
    /// (where erf differs from ±1 by less than 2e-8). The rational coefficients were fitted
    /// to erf on [0, 4]; the fit's largest error is 2.2e-8, below half a Float32 ulp of
    /// values near 1. Branch-free so loops calling it vectorise (glibc's `erff` does not).
    @inline(__always)
    static func vectorErf(_ z: Float) -> Float {
        let a = Double(Swift.min(Swift.max(z, -4), 4))
        let s = a * a
        let p = ((((1.974276257637845e-06 * s + 0.00028803764576941645) * s + 0.004004636187051778) * s
            + 0.05347038565034586) * s + 0.19627542777031068) * s + 1.128378976494572
        let q = ((((3.747493640777202e-05 * s + 0.001216552693210646) * s + 0.015446405503292572) * s
            + 0.1164868233525079) * s + 0.5072757270910516) * s + 1.0
        return Float(Swift.min(Swift.max(a * p / q, -1), 1))
    }

    /// Multi-head self-attention over each packed sequence, attending only within it.
    ///
    /// `qkv` is `[tokens, 3 * width]` (queries, keys, values side by side); `out` is
    /// `[tokens, width]` with the heads' outputs side by side.
    static func attention(
        qkv: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, sequences: PackedSequences,
        width: Int, heads: Int
    ) {
        let headSize = width / heads
        let stride = 3 * width
        let scale = 1 / Float(headSize).squareRoot()
        let items = sequences.lengths.count * heads
        let longest = sequences.lengths.max() ?? 0
        let q = SendableConstPointer(qkv), o = SendablePointer(out)
        let workers = min(Parallel.workers, items)
        let saved = BLAS.enterConcurrentRegion()
        defer { BLAS.restore(saved) }
        // Worker w takes items w, w + workers, ... so long and short sequences are shared evenly.
        Parallel.forEach(workers) { worker in
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: max(longest * longest, 1))
            defer { scores.deallocate() }
            var item = worker
            while item < items {
                let sequence = item / heads, head = item % heads
                let n = sequences.lengths[sequence], start = sequences.starts[sequence]
                let query = q.p + start * stride + head * headSize
                let key = query + width, value = query + 2 * width
                BLAS.single(false, true, n, n, headSize, scale, query, stride, key, stride, 0, scores, n)
                for r in 0..<n { softmaxRow(scores + r * n, count: n) }
                BLAS.single(
                    false, false, n, headSize, n, 1, scores, n, value, stride, 0,
                    o.p + start * width + head * headSize, width)
                item += workers
            }
        }
    }

    @inline(__always)
    static func softmaxRow(_ row: UnsafeMutablePointer<Float>, count: Int) {
        var maximum = -Float.infinity
        for i in 0..<count { maximum = max(maximum, row[i]) }
        var sum: Float = 0
        for i in 0..<count {
            let e = expf(row[i] - maximum)
            row[i] = e
            sum += e
        }
        let inverse = 1 / sum
        for i in 0..<count { row[i] *= inverse }
    }

    /// Mean of each sequence's token vectors, scaled to unit length (norm clamped at 1e-12).
    static func meanPoolAndNormalize(
        _ x: UnsafePointer<Float>, sequences: PackedSequences, width: Int
    ) -> [[Float]] {
        sequences.lengths.indices.map { s in
            var mean = [Float](repeating: 0, count: width)
            let start = sequences.starts[s], n = sequences.lengths[s]
            for t in start..<(start + n) {
                let row = x + t * width
                for i in 0..<width { mean[i] += row[i] }
            }
            let inverseCount = 1 / Float(max(n, 1))
            var norm: Float = 0
            for i in 0..<width {
                mean[i] *= inverseCount
                norm += mean[i] * mean[i]
            }
            let inverseNorm = 1 / max(norm.squareRoot(), 1e-12)
            for i in 0..<width { mean[i] *= inverseNorm }
            return mean
        }
    }
}
