import CURecTensor
import Foundation
import Testing

/// Finite-difference checks of every layer's backward pass.
///
/// Each layer is reduced to the scalar `L = Σ out ⊙ R` (R random), so `dout = R`. The numeric
/// gradient is the central difference `(L(x+ε) − L(x−ε)) / 2ε` with `ε = 1e-2`, float32 kernels
/// and `L` summed in double. Reported error: `max |analytic − numeric| / max |numeric|` over all
/// elements of the input. Float32 rounding in `L` contributes ~1e-5 to that ratio and the
/// truncation error of the central difference O(ε²) about the same. Observed errors range from
/// 8e-7 (linear layers) to 3.4e-5 (LayerNorm input); the tolerance is 5e-4, while a wrong term in
/// a backward pass gives errors of order 1e-1 or more.
@Suite("Gradient checks")
struct GradientCheckTests {
    static let tolerance = 5e-4
    static let eps: Float = 1e-2

    static func random(_ shape: [Int], seed: UInt64, std: Float = 1) -> Tensor {
        let t = Tensor(uncheckedZeros: shape)
        var rng = Xoshiro256(seed: seed)
        rng.fillGaussian(t.data, count: t.count, std: std)
        return t
    }

    static func dot(_ a: Tensor, _ r: Tensor) -> Double {
        var s = 0.0
        for i in 0..<a.count { s += Double(a[i]) * Double(r[i]) }
        return s
    }

    /// Relative error of `analytic` against central differences of `loss` w.r.t. `x`.
    static func check(_ x: Tensor, analytic: [Float], loss: () -> Double) -> Double {
        var worst = 0.0, scale = 0.0
        for i in 0..<x.count {
            let old = x[i]
            x[i] = old + eps
            let lp = loss()
            x[i] = old - eps
            let lm = loss()
            x[i] = old
            let numeric = (lp - lm) / Double(2 * eps)
            worst = max(worst, abs(numeric - Double(analytic[i])))
            scale = max(scale, abs(numeric))
        }
        return worst / max(scale, 1e-12)
    }

    @Test("embedding: wte and wpe")
    func embedding() {
        let B = 2, T = 3, C = 4, V = 5
        let wte = Self.random([V, C], seed: 1), wpe = Self.random([T, C], seed: 2)
        let tokens: [Int32] = [1, 4, 1, 0, 2, 1]
        let out = Tensor(uncheckedZeros: [B, T, C]), r = Self.random([B, T, C], seed: 3)
        func loss() -> Double {
            tokens.withUnsafeBufferPointer { Embedding.forward(out: out.data, tokens: $0.baseAddress!, wte: wte.data, wpe: wpe.data, B: B, T: T, C: C) }
            return Self.dot(out, r)
        }
        let dwte = Tensor(uncheckedZeros: [V, C]), dwpe = Tensor(uncheckedZeros: [T, C])
        tokens.withUnsafeBufferPointer { Embedding.backward(dwte: dwte.data, dwpe: dwpe.data, dout: r.data, tokens: $0.baseAddress!, B: B, T: T, C: C) }
        #expect(Self.check(wte, analytic: dwte.values, loss: loss) < Self.tolerance)
        #expect(Self.check(wpe, analytic: dwpe.values, loss: loss) < Self.tolerance)
    }

    @Test("layernorm: input, weight, bias")
    func layerNorm() {
        let N = 4, C = 6
        let x = Self.random([N, C], seed: 4), w = Self.random([C], seed: 5), b = Self.random([C], seed: 6)
        let out = Tensor(uncheckedZeros: [N, C]), mean = Tensor(uncheckedZeros: [N]), rstd = Tensor(uncheckedZeros: [N])
        let r = Self.random([N, C], seed: 7)
        func loss() -> Double {
            LayerNorm.forward(out: out.data, mean: mean.data, rstd: rstd.data, inp: x.data, weight: w.data, bias: b.data, N: N, C: C)
            return Self.dot(out, r)
        }
        _ = loss()
        let dx = Tensor(uncheckedZeros: [N, C]), dw = Tensor(uncheckedZeros: [C]), db = Tensor(uncheckedZeros: [C])
        LayerNorm.backward(dinp: dx.data, dweight: dw.data, dbias: db.data, dout: r.data, inp: x.data, weight: w.data, mean: mean.data, rstd: rstd.data, N: N, C: C)
        #expect(Self.check(x, analytic: dx.values, loss: loss) < Self.tolerance)
        #expect(Self.check(w, analytic: dw.values, loss: loss) < Self.tolerance)
        #expect(Self.check(b, analytic: db.values, loss: loss) < Self.tolerance)
    }

    @Test("matmul: input, weight, bias (with fused residual)")
    func matmul() {
        let N = 5, C = 4, OC = 6
        let x = Self.random([N, C], seed: 8), w = Self.random([C, OC], seed: 9), b = Self.random([OC], seed: 10)
        let res = Self.random([N, OC], seed: 11)
        let out = Tensor(uncheckedZeros: [N, OC]), r = Self.random([N, OC], seed: 12)
        func loss() -> Double {
            Matmul.forward(out: out.data, inp: x.data, weight: w.data, bias: b.data, N: N, C: C, OC: OC, residual: res.data)
            return Self.dot(out, r)
        }
        let dx = Tensor(uncheckedZeros: [N, C]), dw = Tensor(uncheckedZeros: [C, OC]), db = Tensor(uncheckedZeros: [OC])
        Matmul.backward(dinp: dx.data, dweight: dw.data, dbias: db.data, dout: r.data, inp: x.data, weight: w.data, N: N, C: C, OC: OC)
        #expect(Self.check(x, analytic: dx.values, loss: loss) < Self.tolerance)
        #expect(Self.check(w, analytic: dw.values, loss: loss) < Self.tolerance)
        #expect(Self.check(b, analytic: db.values, loss: loss) < Self.tolerance)
        #expect(Self.check(res, analytic: r.values, loss: loss) < Self.tolerance)
    }

    @Test("causal self-attention: packed qkv")
    func attention() {
        let B = 2, T = 5, C = 8, NH = 2
        let qkv = Self.random([B, T, 3 * C], seed: 13)
        let out = Tensor(uncheckedZeros: [B, T, C]), att = Tensor(uncheckedZeros: [B, NH, T, T])
        let r = Self.random([B, T, C], seed: 14)
        func loss() -> Double {
            CausalSelfAttention.forward(out: out.data, att: att.data, qkv: qkv.data, B: B, T: T, C: C, NH: NH)
            return Self.dot(out, r)
        }
        _ = loss()
        // Causality: probabilities above the diagonal are zero and rows sum to one.
        for bh in 0..<(B * NH) {
            for i in 0..<T {
                var s: Float = 0
                for j in 0..<T {
                    let p = att[bh * T * T + i * T + j]
                    if j > i { #expect(p == 0) }
                    s += p
                }
                #expect(abs(s - 1) < 1e-6)
            }
        }
        let dqkv = Tensor(uncheckedZeros: [B, T, 3 * C])
        CausalSelfAttention.backward(dqkv: dqkv.data, dout: r.data, qkv: qkv.data, att: att.data, B: B, T: T, C: C, NH: NH)
        #expect(Self.check(qkv, analytic: dqkv.values, loss: loss) < Self.tolerance)
    }

    @Test("gelu")
    func gelu() {
        let N = 40
        let x = Self.random([N], seed: 15, std: 2), out = Tensor(uncheckedZeros: [N]), r = Self.random([N], seed: 16)
        func loss() -> Double {
            GELU.forward(out: out.data, inp: x.data, N: N)
            return Self.dot(out, r)
        }
        let dx = Tensor(uncheckedZeros: [N])
        GELU.backward(dinp: dx.data, inp: x.data, dout: r.data, N: N)
        #expect(Self.check(x, analytic: dx.values, loss: loss) < Self.tolerance)
        // GPT-2 values: gelu(1) ≈ 0.841192, gelu(-1) ≈ -0.158808.
        let probe = Tensor(uncheckedZeros: [2]); probe[0] = 1; probe[1] = -1
        GELU.forward(out: probe.data, inp: probe.data, N: 2)
        #expect(abs(probe[0] - 0.841192) < 1e-5 && abs(probe[1] + 0.158808) < 1e-5)
    }

    @Test("residual")
    func residual() {
        let N = 10
        let a = Self.random([N], seed: 17), b = Self.random([N], seed: 18)
        let out = Tensor(uncheckedZeros: [N]), r = Self.random([N], seed: 19)
        func loss() -> Double {
            Residual.forward(out: out.data, a: a.data, b: b.data, N: N)
            return Self.dot(out, r)
        }
        let da = Tensor(uncheckedZeros: [N]), db = Tensor(uncheckedZeros: [N])
        Residual.backward(da: da.data, db: db.data, dout: r.data, N: N)
        #expect(Self.check(a, analytic: da.values, loss: loss) < Self.tolerance)
        #expect(Self.check(b, analytic: db.values, loss: loss) < Self.tolerance)
    }

    @Test("softmax cross-entropy: separate and fused passes, ignored targets")
    func crossEntropy() {
        let N = 4, V = 7
        let logits = Self.random([N, V], seed: 20, std: 2)
        let targets: [Int32] = [3, 0, -1, 6]
        let dloss = Self.random([N], seed: 21)
        let probs = Tensor(uncheckedZeros: [N, V]), losses = Tensor(uncheckedZeros: [N])
        func loss() -> Double {
            targets.withUnsafeBufferPointer { SoftmaxCrossEntropy.forward(losses: losses.data, probs: probs.data, logits: logits.data, targets: $0.baseAddress!, N: N, V: V) }
            return Self.dot(losses, dloss)
        }
        _ = loss()
        #expect(losses[2] == 0)
        let dlogits = Tensor(uncheckedZeros: [N, V])
        targets.withUnsafeBufferPointer { SoftmaxCrossEntropy.backward(dlogits: dlogits.data, probs: probs.data, targets: $0.baseAddress!, dloss: dloss.data, N: N, V: V) }
        #expect(Self.check(logits, analytic: dlogits.values, loss: loss) < Self.tolerance)
        // The fused pass with a uniform dloss equals the separate passes.
        let fused = logits.copy(), fusedLosses = Tensor(uncheckedZeros: [N])
        let g: Float = 0.25
        targets.withUnsafeBufferPointer { SoftmaxCrossEntropy.forwardBackward(losses: fusedLosses.data, logits: fused.data, targets: $0.baseAddress!, dloss: g, N: N, V: V) }
        _ = loss()
        let uniform = Tensor(uncheckedZeros: [N]); uniform.fill(g)
        targets.withUnsafeBufferPointer { SoftmaxCrossEntropy.backward(dlogits: dlogits.data, probs: probs.data, targets: $0.baseAddress!, dloss: uniform.data, N: N, V: V) }
        for i in 0..<(N * V) { #expect(abs(fused[i] - dlogits[i]) < 1e-6) }
        for n in 0..<N { #expect(abs(fusedLosses[n] - losses[n]) < 1e-5) }
    }

    @Test("tied LM head: input and embedding")
    func lmHead() {
        let N = 3, C = 4, V = 6
        let x = Self.random([N, C], seed: 22), wte = Self.random([V, C], seed: 23)
        let logits = Tensor(uncheckedZeros: [N, V]), r = Self.random([N, V], seed: 24)
        func loss() -> Double {
            TiedLMHead.forward(logits: logits.data, inp: x.data, wte: wte.data, N: N, C: C, V: V)
            return Self.dot(logits, r)
        }
        let dx = Tensor(uncheckedZeros: [N, C]), dwte = Tensor(uncheckedZeros: [V, C])
        TiedLMHead.backward(dinp: dx.data, dwte: dwte.data, dlogits: r.data, inp: x.data, wte: wte.data, N: N, C: C, V: V)
        #expect(Self.check(x, analytic: dx.values, loss: loss) < Self.tolerance)
        #expect(Self.check(wte, analytic: dwte.values, loss: loss) < Self.tolerance)
    }
}
