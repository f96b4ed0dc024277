import CURecTensor
import Foundation

// Kernels specific to SASRec, in the conventions of CURecTensor/Layers.swift: row-major
// float32, parameter gradients ACCUMULATED (+=), activation gradients OVERWRITTEN.

/// Item embeddings with fixed side features: `table = idEmbedding + features @ projection`.
///
/// This is how item features (content features, or sentence embeddings of recommendation
/// reasons) enter the recommender: every item's vector is its learned ID embedding plus a
/// learned linear map of its fixed feature vector.
public enum FeatureProjection {
    /// `table[n,C] = emb[n,C] + features[n,D] @ weight[D,C]`; with `D == 0` a copy of `emb`.
    public static func forward(
        table: UnsafeMutablePointer<Float>, emb: UnsafePointer<Float>,
        features: UnsafePointer<Float>?, weight: UnsafePointer<Float>, n: Int, D: Int, C: Int
    ) {
        table.update(from: emb, count: n * C)
        guard D > 0, let features else { return }
        BLAS.gemm(transA: false, transB: false, m: n, n: C, k: D, a: features, lda: D,
                  b: weight, ldb: C, beta: 1, c: table, ldc: C)
    }

    /// Given `dtable[n,C]`, adds `dweight[D,C] += featuresᵀ @ dtable`. The gradient of `emb`
    /// is `dtable` itself (the caller accumulates it there directly).
    public static func backward(
        dweight: UnsafeMutablePointer<Float>, dtable: UnsafePointer<Float>,
        features: UnsafePointer<Float>?, n: Int, D: Int, C: Int
    ) {
        guard D > 0, let features else { return }
        BLAS.gemm(transA: true, transB: false, m: D, n: C, k: n, a: features, lda: D,
                  b: dtable, ldb: C, beta: 1, c: dweight, ldc: C)
    }
}

/// User features: a learned linear map of each user's fixed feature vector, added to the
/// input embedding of every position of that user's sequence.
///
/// `userTable[U,C] = Fu[U,Du] @ Wu[Du,C]` is computed once per weight update (like the item
/// table); a row `b` of a batch belongs to user `users[b]`, and
/// `encoded[b,t,:] += userTable[users[b],:]` for every `t` (padding positions too: causal
/// attention keeps them from reaching real positions). There is no bias: a bias added at
/// every position of every row is already expressed by the position embedding.
public enum UserProjection {
    /// `table[U,C] = features[U,Du] @ weight[Du,C]`; with `Du == 0` nothing is written.
    public static func table(
        table: UnsafeMutablePointer<Float>, features: UnsafePointer<Float>?, weight: UnsafePointer<Float>,
        U: Int, Du: Int, C: Int
    ) {
        guard Du > 0, U > 0, let features else { return }
        BLAS.gemm(transA: false, transB: false, m: U, n: C, k: Du, a: features, lda: Du,
                  b: weight, ldb: C, beta: 0, c: table, ldc: C)
    }

    /// `encoded[b,t,:] += table[users[b],:]` for `encoded` `[B,T,C]`, `users` `[B]` in `0..<U`.
    public static func forward(
        encoded: UnsafeMutablePointer<Float>, table: UnsafePointer<Float>, users: UnsafePointer<Int32>,
        B: Int, T: Int, C: Int
    ) {
        for b in 0..<B {
            let row = table + Int(users[b]) * C
            for t in 0..<T {
                let x = encoded + (b * T + t) * C
                for i in 0..<C { x[i] += row[i] }
            }
        }
    }

    /// Given `dencoded[B,T,C]`, adds `dweight[Du,C] += Σ_b features[users[b]]ᵀ ⊗ Σ_t dencoded[b,t]`
    /// (the chain rule through the gathered table row and the projection).
    public static func backward(
        dweight: UnsafeMutablePointer<Float>, dencoded: UnsafePointer<Float>, features: UnsafePointer<Float>?,
        users: UnsafePointer<Int32>, B: Int, T: Int, Du: Int, C: Int
    ) {
        guard Du > 0, let features else { return }
        var duser = [Float](repeating: 0, count: C)   // Σ_t dencoded[b,t] [C]
        duser.withUnsafeMutableBufferPointer { d in
            let du = d.baseAddress!
            for b in 0..<B {
                du.update(repeating: 0, count: C)
                for t in 0..<T {
                    let g = dencoded + (b * T + t) * C
                    for i in 0..<C { du[i] += g[i] }
                }
                let f = features + Int(users[b]) * Du
                for k in 0..<Du where f[k] != 0 {
                    let w = dweight + k * C, fk = f[k]
                    for i in 0..<C { w[i] += fk * du[i] }
                }
            }
        }
    }
}

/// Binary cross-entropy with one sampled negative per position (the SASRec paper's loss).
///
/// For a position `r` with positive item `p = positives[r]` (negative values mark padding,
/// which contributes nothing) and negative item `q = negatives[r]`:
/// `sp = h[r]·table[p]`, `sq = h[r]·table[q]`,
/// `loss[r] = −log σ(sp) − log(1 − σ(sq)) = softplus(−sp) + softplus(sq)`.
public enum SampledBCE {
    @inline(__always) static func softplus(_ x: Float) -> Float {
        max(x, 0) + log1pf(expf(-abs(x)))
    }

    @inline(__always) static func sigmoid(_ x: Float) -> Float {
        x >= 0 ? 1 / (1 + expf(-x)) : { let e = expf(x); return e / (1 + e) }()
    }

    @inline(__always) static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ C: Int) -> Float {
        var s: Float = 0
        for i in 0..<C { s += a[i] * b[i] }
        return s
    }

    /// Forward only: writes `losses[N]` (0 for padding) and returns their sum.
    ///
    /// - Parameters: `h` `[N,C]`; `table` `[n,C]`; `positives`, `negatives` `[N]`, in `0..<n`
    ///   (positives may be negative for padding).
    @discardableResult
    public static func forward(
        losses: UnsafeMutablePointer<Float>, h: UnsafePointer<Float>, table: UnsafePointer<Float>,
        positives: UnsafePointer<Int32>, negatives: UnsafePointer<Int32>, N: Int, C: Int
    ) -> Double {
        var total: Double = 0
        for r in 0..<N {
            let p = Int(positives[r])
            guard p >= 0 else { losses[r] = 0; continue }
            let q = Int(negatives[r])
            let x = h + r * C
            let l = softplus(-dot(x, table + p * C, C)) + softplus(dot(x, table + q * C, C))
            losses[r] = l
            total += Double(l)
        }
        return total
    }

    /// Forward and backward with the loss scaled by `dloss` (e.g. 1 / number of positions).
    ///
    /// Writes `losses[N]` (unscaled) and `dh[N,C] = dloss·((σ(sp)−1)·table[p] + σ(sq)·table[q])`
    /// (zero rows for padding); adds `dtable[p] += dloss·(σ(sp)−1)·h[r]` and
    /// `dtable[q] += dloss·σ(sq)·h[r]`. Returns the sum of the unscaled losses.
    @discardableResult
    public static func forwardBackward(
        losses: UnsafeMutablePointer<Float>, dh: UnsafeMutablePointer<Float>,
        dtable: UnsafeMutablePointer<Float>, h: UnsafePointer<Float>, table: UnsafePointer<Float>,
        positives: UnsafePointer<Int32>, negatives: UnsafePointer<Int32>, dloss: Float, N: Int, C: Int
    ) -> Double {
        var total: Double = 0
        // Serial: dtable rows are shared between positions (N·C work, small next to the blocks).
        for r in 0..<N {
            let d = dh + r * C
            let p = Int(positives[r])
            guard p >= 0 else {
                losses[r] = 0
                d.update(repeating: 0, count: C)
                continue
            }
            let q = Int(negatives[r])
            let x = h + r * C, ep = table + p * C, eq = table + q * C
            let sp = dot(x, ep, C), sq = dot(x, eq, C)
            let l = softplus(-sp) + softplus(sq)
            losses[r] = l
            total += Double(l)
            let gp = dloss * (sigmoid(sp) - 1), gq = dloss * sigmoid(sq)
            let dp = dtable + p * C, dq = dtable + q * C
            for i in 0..<C {
                d[i] = gp * ep[i] + gq * eq[i]
                dp[i] += gp * x[i]
                dq[i] += gq * x[i]
            }
        }
        return total
    }
}
