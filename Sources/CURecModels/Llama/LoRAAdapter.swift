import CURecTensor
import Foundation

// Kernels of a low-rank adapter on a linear layer `[out, in]`, in the style of Layers.swift:
// row-major float32 buffers, shapes in comments, parameter gradients ACCUMULATED (+=),
// activation gradients ADDED into the layer's input gradient.
//
//   forward:  xd[N,in]  = dropout(x)                (x itself without dropout)
//             h[N,r]    = xd · Aᵀ                   A [r,in]   (h kept for backward)
//             y[N,out] += s · h · Bᵀ                B [out,r]
//   backward: dh[N,r]   = s · dy · B
//             dB[out,r] += s · dyᵀ · h
//             dA[r,in]  += dhᵀ · xd                 (xd rebuilt from x and the kept mask)
//             dx[N,in]  += mask ⊙ keepScale ⊙ (dh · A)

/// Inverted dropout on an adapter's input with a mask that is kept for the backward pass.
enum LoRADropout {
    /// Resolution of the keep/drop decision: each element compares 16 random bits.
    static let levels: UInt32 = 1 << 16

    /// The drop threshold for probability `p`: an element is dropped when its 16-bit uniform is
    /// below it, so the exact drop probability is `threshold / 65536`.
    static func threshold(_ p: Float) -> UInt32 {
        UInt32((Double(p) * Double(levels)).rounded())
    }

    /// Scale of the kept elements, `1 / (exact keep probability)`.
    static func keepScale(threshold: UInt32) -> Float {
        Float(Double(levels) / Double(levels - threshold))
    }

    /// Draws `mask[N, C]` (1 keep, 0 drop). Row `n` uses its own generator seeded from
    /// `(seed, n)`, so the mask does not depend on how the rows are split over threads.
    static func draw(mask: UnsafeMutablePointer<UInt8>, N: Int, C: Int, seed: UInt64, threshold: UInt32) {
        let m = SendablePointer(mask)
        Parallel.forRange(N, grain: 8) { rows in
            for n in rows {
                var rng = Xoshiro256(seed: seed ^ (UInt64(n + 1) &* 0x9E37_79B9_7F4A_7C15))
                let row = m.p + n * C
                var i = 0
                while i < C {
                    var bits = rng.next()
                    for _ in 0..<4 where i < C {
                        row[i] = UInt32(bits & 0xFFFF) < threshold ? 0 : 1
                        bits >>= 16
                        i += 1
                    }
                }
            }
        }
    }

    /// `out[i] = inp[i] · mask[i] · scale` for `i < count`.
    static func apply(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                      mask: UnsafePointer<UInt8>, scale: Float, count: Int) {
        let o = SendablePointer(out)
        Parallel.forRange(count, grain: 65536) { r in
            for i in r { o.p[i] = mask[i] != 0 ? inp[i] * scale : 0 }
        }
    }

    /// `dinp[i] += d[i] · mask[i] · scale` for `i < count`.
    static func backwardAdd(dinp: UnsafeMutablePointer<Float>, d: UnsafePointer<Float>,
                            mask: UnsafePointer<UInt8>, scale: Float, count: Int) {
        let o = SendablePointer(dinp)
        Parallel.forRange(count, grain: 65536) { r in
            for i in r where mask[i] != 0 { o.p[i] += d[i] * scale }
        }
    }
}

/// Parameters, gradients and training state shared by the adapters of one ``LlamaLoRA``.
///
/// The adapters of a model run one after the other, so they share one scratch buffer for the
/// dropped-out input (and, in backward, its gradient) and one for `dh`.
final class LoRAStorage: @unchecked Sendable {
    let parameters: Tensor
    let gradients: Tensor
    /// Dropout is applied only while true.
    var training = false
    /// Draws one seed per adapter forward pass with dropout.
    var generator: Xoshiro256
    private var scratch = Tensor(uncheckedZeros: [0])
    private var dhidden = Tensor(uncheckedZeros: [0])

    init(count: Int, dropoutSeed: UInt64) {
        parameters = Tensor(uncheckedZeros: [count])
        gradients = Tensor(uncheckedZeros: [count])
        generator = Xoshiro256(seed: dropoutSeed)
    }

    /// At least `count` floats of scratch (contents undefined).
    func scratch(_ count: Int) -> UnsafeMutablePointer<Float> {
        if scratch.count < count { scratch = Tensor(uncheckedZeros: [count]) }
        return scratch.data
    }

    /// At least `count` floats for `dh` (contents undefined).
    func dhidden(_ count: Int) -> UnsafeMutablePointer<Float> {
        if dhidden.count < count { dhidden = Tensor(uncheckedZeros: [count]) }
        return dhidden.data
    }
}

/// A low-rank adapter on one projection: `y += s · dropout(x)·Aᵀ·Bᵀ` (see ``LoRAConfig``).
///
/// `A` and `B` live in the owning ``LlamaLoRA``'s flat buffer (``LoRASlot``), their gradients
/// in its gradient buffer. A training forward keeps `h = xd·Aᵀ [N, r]` and the dropout mask
/// `[N, in]` for the backward pass that follows it; a forward outside training (evaluation,
/// cached decoding) applies no dropout.
public final class LoRAAdapter: LlamaLinearAdapter, @unchecked Sendable {
    /// Where the adapter's parameters sit.
    public let slot: LoRASlot
    /// The rank `r`.
    public let rank: Int
    /// The output scale `s`.
    public let scaling: Float
    /// The dropout probability during training.
    public let dropout: Float
    let storage: LoRAStorage
    let threshold: UInt32
    let keepScale: Float
    /// `h [N, r]` of the last forward pass.
    private var hidden = Tensor(uncheckedZeros: [0])
    /// The dropout mask `[N, in]` of the last training forward pass.
    private var mask: [UInt8] = []
    /// Rows of the last forward pass and whether its input was dropped out.
    private var lastN = 0, masked = false

    init(slot: LoRASlot, config: LoRAConfig, storage: LoRAStorage) {
        self.slot = slot
        self.rank = config.rank
        self.scaling = config.scaling
        self.dropout = config.dropout
        self.storage = storage
        self.threshold = LoRADropout.threshold(config.dropout)
        self.keepScale = LoRADropout.keepScale(threshold: LoRADropout.threshold(config.dropout))
    }

    private var a: UnsafeMutablePointer<Float> { storage.parameters.data + slot.a.lowerBound }
    private var b: UnsafeMutablePointer<Float> { storage.parameters.data + slot.b.lowerBound }
    private var da: UnsafeMutablePointer<Float> { storage.gradients.data + slot.a.lowerBound }
    private var db: UnsafeMutablePointer<Float> { storage.gradients.data + slot.b.lowerBound }

    /// `out[N, out] += s · dropout(inp[N, in]) · Aᵀ · Bᵀ`.
    public func forward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, N: Int) {
        let C = slot.inFeatures, OC = slot.outFeatures, r = rank
        if hidden.count < N * r { hidden = Tensor(uncheckedZeros: [N * r]) }
        lastN = N
        masked = storage.training && threshold > 0
        var x = inp
        if masked {
            if mask.count < N * C { mask = [UInt8](repeating: 0, count: N * C) }
            let xd = storage.scratch(N * C)
            let seed = storage.generator.next()
            mask.withUnsafeMutableBufferPointer { m in
                guard let mp = m.baseAddress else { return }
                LoRADropout.draw(mask: mp, N: N, C: C, seed: seed, threshold: threshold)
                LoRADropout.apply(out: xd, inp: inp, mask: mp, scale: keepScale, count: N * C)
            }
            x = UnsafePointer(xd)
        }
        // h[N,r] = xd[N,in] · A[r,in]ᵀ
        BLAS.gemm(transA: false, transB: true, m: N, n: r, k: C, a: x, lda: C, b: a, ldb: C,
                  c: hidden.data, ldc: r)
        // out[N,out] += s · h[N,r] · B[out,r]ᵀ
        BLAS.gemm(transA: false, transB: true, m: N, n: OC, k: r, alpha: scaling, a: hidden.data,
                  lda: r, b: b, ldb: r, beta: 1, c: out, ldc: OC)
    }

    /// Accumulates `dA`, `dB` from `dout[N, out]` and ADDS the input gradient into
    /// `dinp[N, in]` (when non-nil). Must follow the forward pass of the same rows.
    public func backward(dinp: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
                         inp: UnsafePointer<Float>, N: Int) {
        precondition(N == lastN, "LoRA backward over \(N) rows after a forward over \(lastN)")
        let C = slot.inFeatures, OC = slot.outFeatures, r = rank
        let dh = storage.dhidden(N * r)
        // dh[N,r] = s · dout[N,out] · B[out,r]
        BLAS.gemm(transA: false, transB: false, m: N, n: r, k: OC, alpha: scaling, a: dout, lda: OC,
                  b: b, ldb: r, c: dh, ldc: r)
        // dB[out,r] += s · doutᵀ · h[N,r]
        BLAS.gemm(transA: true, transB: false, m: OC, n: r, k: N, alpha: scaling, a: dout, lda: OC,
                  b: hidden.data, ldb: r, beta: 1, c: db, ldc: r)
        mask.withUnsafeBufferPointer { m in
            if masked, let mp = m.baseAddress {
                // Rebuild xd from the kept mask, then dA[r,in] += dhᵀ · xd.
                let xd = storage.scratch(N * C)
                LoRADropout.apply(out: xd, inp: inp, mask: mp, scale: keepScale, count: N * C)
                BLAS.gemm(transA: true, transB: false, m: r, n: C, k: N, a: dh, lda: r, b: xd, ldb: C,
                          beta: 1, c: da, ldc: C)
                guard let dinp else { return }
                // dxd[N,in] = dh · A[r,in]; dinp += mask ⊙ keepScale ⊙ dxd (xd no longer needed).
                BLAS.gemm(transA: false, transB: false, m: N, n: C, k: r, a: dh, lda: r, b: a, ldb: C,
                          c: xd, ldc: C)
                LoRADropout.backwardAdd(dinp: dinp, d: xd, mask: mp, scale: keepScale, count: N * C)
            } else {
                // dA[r,in] += dhᵀ · x; dinp[N,in] += dh · A.
                BLAS.gemm(transA: true, transB: false, m: r, n: C, k: N, a: dh, lda: r, b: inp, ldb: C,
                          beta: 1, c: da, ldc: C)
                if let dinp {
                    BLAS.gemm(transA: false, transB: false, m: N, n: C, k: r, a: dh, lda: r, b: a,
                              ldb: C, beta: 1, c: dinp, ldc: C)
                }
            }
        }
    }
}
