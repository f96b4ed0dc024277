import CQuantKernels
import CURecTensor
import Foundation
import Testing

/// Finite-difference checks of the Llama layers' backward passes, with the method, step and
/// tolerance of ``GradientCheckTests`` (central differences, `ε = 1e-2`, loss summed in double,
/// error relative to the largest numeric gradient, tolerance 5e-4; observed errors range from
/// 9e-7 (RMSNorm weight) to 6.4e-5 (attention keys)), plus forward checks against
/// double-precision formulas and between the training and cached uses of attention.
@Suite("Llama layers")
struct LlamaLayerTests {
    typealias G = GradientCheckTests

    @Test("linear [out, in]: input, weight, fused residual, accumulated input gradient")
    func linear() {
        let N = 5, C = 4, OC = 6
        let x = G.random([N, C], seed: 30), w = G.random([OC, C], seed: 31)
        let res = G.random([N, OC], seed: 32)
        let out = Tensor(uncheckedZeros: [N, OC]), r = G.random([N, OC], seed: 33)
        func loss() -> Double {
            Linear.forward(out: out.data, inp: x.data, weight: w.data, N: N, C: C, OC: OC, residual: res.data)
            return G.dot(out, r)
        }
        _ = loss()
        // y = x Wᵀ + res, element by element in double.
        for n in 0..<N {
            for o in 0..<OC {
                var s = Double(res[n * OC + o])
                for i in 0..<C { s += Double(x[n * C + i]) * Double(w[o * C + i]) }
                #expect(abs(s - Double(out[n * OC + o])) < 1e-5)
            }
        }
        let dx = Tensor(uncheckedZeros: [N, C]), dw = Tensor(uncheckedZeros: [OC, C])
        Linear.backward(dinp: dx.data, dweight: dw.data, dout: r.data, inp: x.data, weight: w.data, N: N, C: C, OC: OC)
        #expect(G.check(x, analytic: dx.values, loss: loss) < G.tolerance)
        #expect(G.check(w, analytic: dw.values, loss: loss) < G.tolerance)
        #expect(G.check(res, analytic: r.values, loss: loss) < G.tolerance)
        // accumulateInput adds to what is there; a nil weight gradient leaves it alone.
        let acc = Tensor(uncheckedZeros: [N, C]); acc.fill(1)
        Linear.backward(dinp: acc.data, dweight: nil, dout: r.data, inp: x.data, weight: w.data, N: N, C: C, OC: OC, accumulateInput: true)
        for i in 0..<(N * C) { #expect(abs(acc[i] - 1 - dx[i]) < 1e-5) }
    }

    @Test("rmsnorm: input, weight; forward against double")
    func rmsNorm() {
        let N = 4, C = 6
        let eps: Float = 1e-5
        let x = G.random([N, C], seed: 34), w = G.random([C], seed: 35)
        let out = Tensor(uncheckedZeros: [N, C]), rstd = Tensor(uncheckedZeros: [N])
        let r = G.random([N, C], seed: 36)
        func loss() -> Double {
            RMSNorm.forward(out: out.data, rstd: rstd.data, inp: x.data, weight: w.data, eps: eps, N: N, C: C)
            return G.dot(out, r)
        }
        _ = loss()
        for n in 0..<N {
            var ms = 0.0
            for i in 0..<C { ms += Double(x[n * C + i]) * Double(x[n * C + i]) }
            let s = 1 / (ms / Double(C) + Double(eps)).squareRoot()
            for i in 0..<C {
                #expect(abs(Double(x[n * C + i]) * s * Double(w[i]) - Double(out[n * C + i])) < 1e-5)
            }
        }
        let dx = Tensor(uncheckedZeros: [N, C]), dw = Tensor(uncheckedZeros: [C])
        RMSNorm.backward(dinp: dx.data, dweight: dw.data, dout: r.data, inp: x.data, weight: w.data, rstd: rstd.data, N: N, C: C)
        #expect(G.check(x, analytic: dx.values, loss: loss) < G.tolerance)
        #expect(G.check(w, analytic: dw.values, loss: loss) < G.tolerance)
    }

    @Test("rotary embedding: adjacent pairs, per-row positions, gradient")
    func rotary() {
        let N = 4, H = 2, hs = 6
        let rope = RotaryEmbedding(headSize: hs, base: 10_000, maxPositions: 16)
        let positions: [Int32] = [0, 3, 7, 15]
        let x = G.random([N, H, hs], seed: 37)
        let out = Tensor(uncheckedZeros: [N, H, hs]), r = G.random([N, H, hs], seed: 38)
        func apply(_ t: Tensor) {
            positions.withUnsafeBufferPointer { rope.forward(t.data, positions: $0.baseAddress!, N: N, heads: H) }
        }
        func loss() -> Double {
            out.data.update(from: x.data, count: x.count)
            apply(out)
            return G.dot(out, r)
        }
        _ = loss()
        // Pair (2i, 2i+1) of every head turns by p · base^(−2i/hs); position 0 is the identity.
        for n in 0..<N {
            for h in 0..<H {
                for i in 0..<(hs / 2) {
                    let angle = Double(positions[n]) * pow(10_000, -2 * Double(i) / Double(hs))
                    let o = (n * H + h) * hs + 2 * i
                    let a = Double(x[o]), b = Double(x[o + 1])
                    #expect(abs(a * cos(angle) - b * sin(angle) - Double(out[o])) < 1e-5)
                    #expect(abs(a * sin(angle) + b * cos(angle) - Double(out[o + 1])) < 1e-5)
                }
            }
        }
        let dx = r.copy()
        positions.withUnsafeBufferPointer { rope.backward(dx.data, positions: $0.baseAddress!, N: N, heads: H) }
        #expect(G.check(x, analytic: dx.values, loss: loss) < G.tolerance)
        // Relative positions: ⟨rope(q, p+d), rope(k, p)⟩ does not depend on p.
        let q = G.random([1, 1, hs], seed: 39), k = G.random([1, 1, hs], seed: 40)
        func score(_ pq: Int32, _ pk: Int32) -> Double {
            let a = q.copy(), b = k.copy()
            [pq].withUnsafeBufferPointer { rope.forward(a.data, positions: $0.baseAddress!, N: 1, heads: 1) }
            [pk].withUnsafeBufferPointer { rope.forward(b.data, positions: $0.baseAddress!, N: 1, heads: 1) }
            return G.dot(a, b)
        }
        #expect(abs(score(5, 2) - score(12, 9)) < 1e-5)
    }

    @Test("token embedding: rows of the table, repeated tokens accumulate")
    func tokenEmbedding() {
        let N = 6, C = 4, V = 5
        let wte = G.random([V, C], seed: 52)
        let tokens: [Int32] = [1, 4, 1, 0, 2, 1]
        let out = Tensor(uncheckedZeros: [N, C]), r = G.random([N, C], seed: 53)
        func loss() -> Double {
            tokens.withUnsafeBufferPointer { TokenEmbedding.forward(out: out.data, tokens: $0.baseAddress!, wte: wte.data, N: N, C: C) }
            return G.dot(out, r)
        }
        _ = loss()
        for n in 0..<N { for i in 0..<C { #expect(out[n * C + i] == wte[Int(tokens[n]) * C + i]) } }
        let dwte = Tensor(uncheckedZeros: [V, C])
        tokens.withUnsafeBufferPointer { TokenEmbedding.backward(dwte: dwte.data, dout: r.data, tokens: $0.baseAddress!, N: N, C: C) }
        #expect(G.check(wte, analytic: dwte.values, loss: loss) < G.tolerance)
    }

    @Test("swiglu kernel: relative error of expf's size over the whole range, extremes, odd lengths")
    func swigluKernel() {
        // Gates from -120 to 120 (past the clamp at ±88.3 in e^-g), 4001 values: 500 vector
        // lanes and a scalar tail.
        let gates = (0...4000).map { Float($0 - 2000) * 0.06 } + [0, -0.0, 1e-30, -1e-30, 88.5, -88.5]
        let ups = gates.indices.map { Float(1 + $0 % 3) * ($0 % 2 == 0 ? 1 : -1) }
        var out = [Float](repeating: .nan, count: gates.count)
        curec_swiglu(&out, gates, ups, Int64(gates.count))
        var worst = 0.0
        for i in gates.indices {
            let g = Double(gates[i]), exact = g / (1 + exp(-g)) * Double(ups[i])
            let error = abs(Double(out[i]) - exact)
            if abs(exact) > 1e-30 { worst = max(worst, error / abs(exact)) }
            // Below -85 silu is under 1e-35 and comes out as 0 (e^-g clamped at e^88.3).
            #expect(error <= 1e-6 * abs(exact) + 1e-30, "gate \(gates[i]): \(out[i]) vs \(exact)")
        }
        print("swiglu kernel: largest relative error \(worst)")
        var nan = [Float](repeating: 0, count: 9)
        curec_swiglu(&nan, [Float](repeating: .nan, count: 9), [Float](repeating: 1, count: 9), 9)
        #expect(nan.allSatisfy { $0.isNaN })
    }

    @Test("swiglu: gate and up")
    func swiglu() {
        let N = 40
        let g = G.random([N], seed: 41, std: 2), u = G.random([N], seed: 42)
        let out = Tensor(uncheckedZeros: [N]), r = G.random([N], seed: 43)
        func loss() -> Double {
            SwiGLU.forward(out: out.data, gate: g.data, up: u.data, N: N)
            return G.dot(out, r)
        }
        _ = loss()
        for i in 0..<N {
            let gi = Double(g[i])
            #expect(abs(gi / (1 + exp(-gi)) * Double(u[i]) - Double(out[i])) < 1e-5)
        }
        let dg = Tensor(uncheckedZeros: [N]), du = Tensor(uncheckedZeros: [N])
        SwiGLU.backward(dgate: dg.data, dup: du.data, dout: r.data, gate: g.data, up: u.data, N: N)
        #expect(G.check(g, analytic: dg.values, loss: loss) < G.tolerance)
        #expect(G.check(u, analytic: du.values, loss: loss) < G.tolerance)
        // dgate may alias dout.
        let inPlace = r.copy()
        SwiGLU.backward(dgate: inPlace.data, dup: du.data, dout: inPlace.data, gate: g.data, up: u.data, N: N)
        #expect(inPlace.values == dg.values)
    }

    static let B = 2, T = 5, NH = 4, NKV = 2, hs = 3

    static func trainingSpans() -> [AttentionSpan] {
        (0..<B).map { AttentionSpan(row: $0, start: 0, first: $0 * T, count: T) }
    }

    @Test("grouped-query attention: queries, keys, values; causal probabilities")
    func attention() {
        let B = Self.B, T = Self.T, NH = Self.NH, NKV = Self.NKV, hs = Self.hs
        let spans = Self.trainingSpans()
        let q = G.random([B, T, NH * hs], seed: 44), k = G.random([B, T, NKV * hs], seed: 45)
        let v = G.random([B, T, NKV * hs], seed: 46)
        let out = Tensor(uncheckedZeros: [B, T, NH * hs]), r = G.random([B, T, NH * hs], seed: 47)
        let size = GroupedQueryAttention.probabilityOffsets(spans, NH: NH).total
        #expect(size == B * NH * T * T)
        let probs = Tensor(uncheckedZeros: [size])
        func loss() -> Double {
            GroupedQueryAttention.forward(out: out.data, probs: probs.data, q: q.data, keys: k.data, values: v.data,
                                          capacity: T, spans: spans, NH: NH, NKV: NKV, hs: hs)
            return G.dot(out, r)
        }
        _ = loss()
        for bh in 0..<(B * NH) {
            for i in 0..<T {
                var s: Float = 0
                for j in 0..<T {
                    let p = probs[bh * T * T + i * T + j]
                    if j > i { #expect(p == 0) }
                    s += p
                }
                #expect(abs(s - 1) < 1e-6)
            }
        }
        let dq = Tensor(uncheckedZeros: [B, T, NH * hs])
        let dk = Tensor(uncheckedZeros: [B, T, NKV * hs]), dv = Tensor(uncheckedZeros: [B, T, NKV * hs])
        GroupedQueryAttention.backward(dq: dq.data, dkeys: dk.data, dvalues: dv.data, dout: r.data, q: q.data,
                                       keys: k.data, values: v.data, probs: probs.data, capacity: T,
                                       spans: spans, NH: NH, NKV: NKV, hs: hs)
        #expect(G.check(q, analytic: dq.values, loss: loss) < G.tolerance)
        #expect(G.check(k, analytic: dk.values, loss: loss) < G.tolerance)
        #expect(G.check(v, analytic: dv.values, loss: loss) < G.tolerance)
    }

    @Test("grouped-query attention: one key/value head per query head equals CausalSelfAttention")
    func attentionMatchesMultiHead() {
        let B = 2, T = 6, NH = 3, hs = 4, C = NH * hs
        let qkv = G.random([B, T, 3 * C], seed: 48)
        let expected = Tensor(uncheckedZeros: [B, T, C]), att = Tensor(uncheckedZeros: [B, NH, T, T])
        CausalSelfAttention.forward(out: expected.data, att: att.data, qkv: qkv.data, B: B, T: T, C: C, NH: NH)
        let q = Tensor(uncheckedZeros: [B, T, C]), k = Tensor(uncheckedZeros: [B, T, C]), v = Tensor(uncheckedZeros: [B, T, C])
        for n in 0..<(B * T) {
            (q.data + n * C).update(from: qkv.data + n * 3 * C, count: C)
            (k.data + n * C).update(from: qkv.data + n * 3 * C + C, count: C)
            (v.data + n * C).update(from: qkv.data + n * 3 * C + 2 * C, count: C)
        }
        let out = Tensor(uncheckedZeros: [B, T, C])
        let spans = (0..<B).map { AttentionSpan(row: $0, start: 0, first: $0 * T, count: T) }
        GroupedQueryAttention.forward(out: out.data, probs: nil, q: q.data, keys: k.data, values: v.data,
                                      capacity: T, spans: spans, NH: NH, NKV: NH, hs: hs)
        for i in 0..<out.count { #expect(abs(out[i] - expected[i]) < 1e-5) }
    }

    @Test("decoding attention kernel against double, head sizes of every path (plain C, AVX2, AVX-512)",
          arguments: [3, 8, 24, 16, 64])
    func singleQueryKernel(hs: Int) {
        let group = 3, L = 37, ld = 2 * hs + 5, scale = 1 / Float(hs).squareRoot()
        let q = G.random([group, hs], seed: 60), k = G.random([L, ld], seed: 61), v = G.random([L, ld], seed: 62)
        let p = Tensor(uncheckedZeros: [group, L]), out = Tensor(uncheckedZeros: [group, hs])
        curec_attention_single(q.data, k.data + 2, v.data + 2, Int64(L), Int64(ld), Int64(group), Int64(hs), scale,
                               p.data, out.data)
        for h in 0..<group {
            var s = (0..<L).map { i in (0..<hs).reduce(0.0) { $0 + Double(q[h * hs + $1]) * Double(k[i * ld + 2 + $1]) } * Double(scale) }
            let mx = s.max() ?? 0
            s = s.map { exp($0 - mx) }
            let sum = s.reduce(0, +)
            for i in 0..<L { #expect(abs(Double(p[h * L + i]) - s[i] / sum) < 1e-6, "hs \(hs) head \(h) position \(i)") }
            for d in 0..<hs {
                let y = (0..<L).reduce(0.0) { $0 + s[$1] / sum * Double(v[$1 * ld + 2 + d]) }
                #expect(abs(Double(out[h * hs + d]) - y) < 1e-5, "hs \(hs) head \(h) element \(d)")
            }
        }
    }

    @Test("grouped-query attention: cached spans reproduce the training pass")
    func attentionCached() {
        let B = Self.B, T = Self.T, NH = Self.NH, NKV = Self.NKV, hs = Self.hs
        let q = G.random([B, T, NH * hs], seed: 49), k = G.random([B, T, NKV * hs], seed: 50)
        let v = G.random([B, T, NKV * hs], seed: 51)
        let full = Tensor(uncheckedZeros: [B, T, NH * hs])
        GroupedQueryAttention.forward(out: full.data, probs: nil, q: q.data, keys: k.data, values: v.data,
                                      capacity: T, spans: Self.trainingSpans(), NH: NH, NKV: NKV, hs: hs)
        // A cache with room for 8 positions per row, rows swapped: row b of the batch lives in
        // cache row 1-b. Row 0 is fed as a 2-token prefill then one token at a time; row 1 as
        // one 3-token span then one token at a time; the query buffer holds only the new
        // tokens. Steps of single-token spans only take the decoding path.
        let capacity = 8, KC = NKV * hs, QC = NH * hs
        let kc = Tensor(uncheckedZeros: [B, capacity, KC]), vc = Tensor(uncheckedZeros: [B, capacity, KC])
        for b in 0..<B {
            (kc.data + (1 - b) * capacity * KC).update(from: k.data + b * T * KC, count: T * KC)
            (vc.data + (1 - b) * capacity * KC).update(from: v.data + b * T * KC, count: T * KC)
        }
        let schedule: [[(b: Int, start: Int, count: Int)]] = [
            [(0, 0, 2), (1, 0, 3)], [(0, 2, 1), (1, 3, 1)], [(1, 4, 1), (0, 3, 1)], [(0, 4, 1)],
        ]
        for stepSpans in schedule {
            let n = stepSpans.reduce(0) { $0 + $1.count }
            let qs = Tensor(uncheckedZeros: [n, QC]), out = Tensor(uncheckedZeros: [n, QC])
            var spans: [AttentionSpan] = []
            var first = 0
            for s in stepSpans {
                (qs.data + first * QC).update(from: q.data + (s.b * T + s.start) * QC, count: s.count * QC)
                spans.append(AttentionSpan(row: 1 - s.b, start: s.start, first: first, count: s.count))
                first += s.count
            }
            GroupedQueryAttention.forward(out: out.data, probs: nil, q: qs.data, keys: kc.data, values: vc.data,
                                          capacity: capacity, spans: spans, NH: NH, NKV: NKV, hs: hs)
            for (span, s) in zip(spans, stepSpans) {
                for j in 0..<(s.count * QC) {
                    #expect(abs(out[span.first * QC + j] - full[(s.b * T + s.start) * QC + j]) < 1e-5)
                }
            }
        }
    }
}
