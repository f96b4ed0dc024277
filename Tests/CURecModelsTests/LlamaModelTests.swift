@testable import CURecModels
import CURecTensor
import Foundation
import Testing

/// A low-rank adapter `out += (x·Aᵀ)·Bᵀ` written against ``LlamaLinearAdapter``, to check
/// that adapters attach to the blocks' linear layers and receive correct gradients.
final class TestLowRankAdapter: LlamaLinearAdapter {
    let rank: Int, inFeatures: Int, outFeatures: Int
    let a: Tensor, b: Tensor, da: Tensor, db: Tensor   // A [r,in], B [out,r]

    init(inFeatures: Int, outFeatures: Int, rank: Int, seed: UInt64) {
        self.rank = rank
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        a = Tensor(uncheckedZeros: [rank, inFeatures])
        b = Tensor(uncheckedZeros: [outFeatures, rank])
        da = Tensor(uncheckedZeros: [rank, inFeatures])
        db = Tensor(uncheckedZeros: [outFeatures, rank])
        var rng = Xoshiro256(seed: seed)
        rng.fillGaussian(a.data, count: a.count, std: 0.3)
        rng.fillGaussian(b.data, count: b.count, std: 0.3)
    }

    func forward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, N: Int) {
        let h = Tensor(uncheckedZeros: [N, rank])
        Linear.forward(out: h.data, inp: inp, weight: a.data, N: N, C: inFeatures, OC: rank)
        Linear.forward(out: out, inp: h.data, weight: b.data, N: N, C: rank, OC: outFeatures, residual: out)
    }

    func backward(dinp: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, N: Int) {
        let h = Tensor(uncheckedZeros: [N, rank]), dh = Tensor(uncheckedZeros: [N, rank])
        Linear.forward(out: h.data, inp: inp, weight: a.data, N: N, C: inFeatures, OC: rank)
        Linear.backward(dinp: dh.data, dweight: db.data, dout: dout, inp: h.data, weight: b.data, N: N, C: rank, OC: outFeatures)
        Linear.backward(dinp: dinp, dweight: da.data, dout: dh.data, inp: inp, weight: a.data, N: N,
                        C: inFeatures, OC: rank, accumulateInput: true)
    }
}

/// The Llama model on a tiny random configuration: gradient checks of one block and of the
/// whole loss, the cached path against the training path, freezing, adapters, training.
///
/// Gradient checks use central differences with `ε = 1e-2` on float32 kernels and report
/// `max |analytic − numeric| / max |numeric|` per tensor; weights have std 0.2 so that
/// gradients stand well above float32 noise.
///   * One block, loss `Σ out ⊙ R` summed in double: observed 4e-6 (down) to 1.2e-4 (query);
///     tolerance 5e-4 as for the single layers.
///   * Whole model, mean cross-entropy (computed in float32, so each loss carries ~1e-6 of
///     rounding noise, ~5e-5 in a numeric gradient): observed 7e-5 to 4e-4, and 2.4e-3 for
///     the tied embedding, whose entries enter the logits directly and curve the loss most —
///     its error is O(ε²) truncation (2.6e-4 at ε = 3e-3, where the noise of the other tensors
///     grows instead). Tolerance 5e-3; a wrong term in a backward pass gives 1e-1 or more.
@Suite("Llama model")
struct LlamaModelTests {
    static let config = LlamaConfig(layers: 2, width: 32, hidden: 48, heads: 4, kvHeads: 2,
                                    ropeBase: 10_000, rmsEps: 1e-5, context: 16, vocab: 37)
    static let blockTolerance = 5e-4
    static let tolerance = 5e-3
    static let eps: Float = 1e-2

    /// A tiny model with weights of std 0.2 and norm weights near 1.
    static func model(seed: UInt64 = 7) throws -> LlamaModel {
        let m = try LlamaModel(config: config, seed: seed)
        var rng = Xoshiro256(seed: seed &+ 100)
        for p in LlamaParam.allCases {
            for l in 0..<(p.perLayer ? config.layers : 1) {
                let ptr = m.store.value(p, l), n = m.layout.sizes[p.rawValue]
                let norm = p == .attentionNorm || p == .ffnNorm || p == .outputNorm
                for i in 0..<n { ptr[i] = norm ? 1 + 0.1 * rng.nextGaussian() : 0.2 * rng.nextGaussian() }
            }
        }
        return m
    }

    static let inputs = [[3, 14, 15, 9, 2, 6, 5], [35, 8, 9, 7, 9, 3, 2]]
    static let targets = [[-1, -1, 9, 2, 6, 5, 3], [8, -1, -1, 9, 3, 2, 36]]

    /// Central-difference error of `analytic` against `loss` for the entries `indices` of `x`.
    static func check(_ x: UnsafeMutablePointer<Float>, indices: some Sequence<Int>,
                      analytic: (Int) -> Float, loss: () -> Double) -> Double {
        var worst = 0.0, scale = 0.0
        for i in indices {
            let old = x[i]
            x[i] = old + eps
            let lp = loss()
            x[i] = old - eps
            let lm = loss()
            x[i] = old
            let numeric = (lp - lm) / Double(2 * eps)
            worst = max(worst, abs(numeric - Double(analytic(i))))
            scale = max(scale, abs(numeric))
        }
        return worst / max(scale, 1e-12)
    }

    @Test("one block: input and every parameter against central differences")
    func blockGradients() throws {
        let m = try Self.model()
        let c = Self.config, B = 2, T = 5, N = B * T, C = c.width
        let block = m.blocks[1]
        let layout = LlamaTokenLayout.training(B: B, T: T)
        let buffers = LlamaBlockBuffers(config: c, N: N, probabilities: B * c.heads * T * T)
        let x = GradientProbe.random([N, C], seed: 60), r = GradientProbe.random([N, C], seed: 61)
        let out = Tensor(uncheckedZeros: [N, C])
        func loss() -> Double {
            block.forward(out: out.data, inp: x.data, buffers: buffers, layout: layout,
                          kv: buffers.ownKeyValues(T: T, config: Self.config), saveProbabilities: true)
            return GradientProbe.dot(out, r)
        }
        _ = loss()
        let grads = m.store.ensureGradients()
        grads.zero()
        let dres = r.copy()
        block.backward(dres: dres.data, inp: x.data, buffers: buffers, layout: layout, T: T,
                       gradients: LlamaBlockGradients(config: c, N: N))
        let dx = Self.check(x.data, indices: 0..<x.count, analytic: { dres[$0] }, loss: loss)
        #expect(dx < Self.blockTolerance, "input: \(dx)")
        for p in LlamaParam.allCases where p.perLayer {
            let w = m.store.value(p, 1), g = grads.data + m.layout.offset(p, layer: 1)
            let e = Self.check(w, indices: 0..<m.layout.sizes[p.rawValue], analytic: { g[$0] }, loss: loss)
            #expect(e < Self.blockTolerance, "\(p): \(e)")
        }
    }

    @Test("whole model: mean cross-entropy gradient of every tensor (sampled entries)")
    func modelGradients() throws {
        let m = try Self.model()
        let loss0 = try m.forwardBackward(inputs: Self.inputs, targets: Self.targets)
        let grads = try #require(m.gradients).copy()
        #expect(abs(Double(loss0) - Double(try m.loss(inputs: Self.inputs, targets: Self.targets))) < 1e-6)
        func loss() -> Double { Double((try? m.loss(inputs: Self.inputs, targets: Self.targets)) ?? .nan) }
        for p in LlamaParam.allCases {
            for l in 0..<(p.perLayer ? Self.config.layers : 1) {
                let o = m.layout.offset(p, layer: l), n = m.layout.sizes[p.rawValue]
                let e = Self.check(m.parameters.data + o, indices: stride(from: l % 3, to: n, by: 3),
                                   analytic: { grads[o + $0] }, loss: loss)
                #expect(e < Self.tolerance, "\(p) layer \(l): \(e)")
            }
        }
    }

    @Test("adapters on linear layers: their gradients flow through the frozen model")
    func adapterGradients() throws {
        let m = try Self.model()
        let c = Self.config
        m.setTrainable(false)
        let qa = TestLowRankAdapter(inFeatures: c.width, outFeatures: c.width, rank: 2, seed: 1)
        let da = TestLowRankAdapter(inFeatures: c.hidden, outFeatures: c.width, rank: 2, seed: 2)
        m.blocks[0].query.adapter = qa
        m.blocks[1].down.adapter = da
        let before = try m.loss(inputs: Self.inputs, targets: Self.targets)
        try m.forwardBackward(inputs: Self.inputs, targets: Self.targets)
        #expect(m.gradients?.values.allSatisfy { $0 == 0 } ?? true)
        func loss() -> Double { Double((try? m.loss(inputs: Self.inputs, targets: Self.targets)) ?? .nan) }
        for adapter in [qa, da] {
            let ga = adapter.da.values, gb = adapter.db.values
            #expect(Self.check(adapter.a.data, indices: 0..<adapter.a.count, analytic: { ga[$0] }, loss: loss) < Self.tolerance)
            #expect(Self.check(adapter.b.data, indices: 0..<adapter.b.count, analytic: { gb[$0] }, loss: loss) < Self.tolerance)
        }
        m.blocks[0].query.adapter = nil
        m.blocks[1].down.adapter = nil
        #expect(try m.loss(inputs: Self.inputs, targets: Self.targets) != before)
    }

    @Test("cached steps reproduce the training pass, whatever the split into steps")
    func cachedMatchesTraining() throws {
        let m = try Self.model()
        let c = Self.config, V = c.vocab
        let everywhere = Self.inputs.map { row in row.indices.map { t in row[(t + 1) % row.count] } }
        _ = try m.loss(inputs: Self.inputs, targets: everywhere)
        let reference = try #require(m.head).losses.values   // [B*T] per-position losses
        func crossEntropy(_ logits: ArraySlice<Float>, _ target: Int) -> Double {
            let mx = Double(logits.max() ?? 0)
            let lse = mx + log(logits.reduce(0.0) { $0 + exp(Double($1) - mx) })
            return lse - Double(logits[logits.startIndex + target])
        }
        // Row 1 in cache row 0 and row 0 in cache row 2 (row 1 of the cache unused); row 0 fed
        // as a 3-token prefill and then token by token, row 1 in spans of 2, 1, 4 interleaved.
        let cache = try LlamaKVCache(config: c, rows: 3, capacity: 9)
        let T = Self.inputs[0].count
        let plan: [[(b: Int, from: Int, count: Int)]] = [
            [(0, 0, 3), (1, 0, 2)], [(1, 2, 1), (0, 3, 1)], [(0, 4, 1), (1, 3, 4), (0, 5, 2)],
        ]
        var seen = 0
        for stepPlan in plan {
            var rows: [Int] = [], tokens: [Int] = [], where_: [(Int, Int)] = []
            for s in stepPlan {
                for t in s.from..<(s.from + s.count) {
                    rows.append(s.b == 0 ? 2 : 0)
                    tokens.append(Self.inputs[s.b][t])
                    where_.append((s.b, t))
                }
            }
            let logits = try m.step(cache: cache, rows: rows, tokens: tokens, want: Array(0..<rows.count))
            for (j, (b, t)) in where_.enumerated() {
                let ce = crossEntropy(logits[(j * V)..<((j + 1) * V)], everywhere[b][t])
                #expect(abs(ce - Double(reference[b * T + t])) < 1e-4, "row \(b) position \(t)")
                seen += 1
            }
        }
        #expect(seen == 2 * T)
        #expect(cache.lengths == [T, 0, T])
        // Greedy decoding: batched rows equal rows decoded alone.
        let prompts = [[1, 2, 3], [30, 4, 4, 4, 8]]
        let both = try m.greedy(prompts: prompts, maxTokens: 6)
        #expect(both[0] == (try m.greedy(prompts: [prompts[0]], maxTokens: 6))[0])
        #expect(both[1] == (try m.greedy(prompts: [prompts[1]], maxTokens: 6))[0])
        #expect(both.allSatisfy { $0.count == 6 })
        // Stop tokens end a row after the token.
        // (The first token of row 1 after its first that did not occur before.)
        let stop = try #require((1..<6).first { !both[1][..<$0].contains(both[1][$0]) })
        let stopped = try m.greedy(prompts: prompts, maxTokens: 6, stopTokens: [both[1][stop]])
        #expect(stopped[1] == Array(both[1].prefix(stop + 1)))
    }

    @Test("refusals: bad tokens, rows, capacity and batches leave the cache unchanged")
    func refusals() throws {
        let m = try Self.model()
        let cache = try LlamaKVCache(config: Self.config, rows: 2, capacity: 4)
        #expect(throws: LlamaError.tokenOutOfRange(token: 37, row: 0, position: 0, vocab: 37)) {
            try m.step(cache: cache, rows: [0], tokens: [37], want: [0])
        }
        #expect(throws: LlamaError.rowOutOfRange(row: 2, rows: 2)) {
            try m.step(cache: cache, rows: [2], tokens: [1], want: [])
        }
        #expect(throws: LlamaError.sequenceTooLong(row: 1, length: 5, context: 4)) {
            try m.step(cache: cache, rows: [1, 1, 1, 1, 1], tokens: [1, 2, 3, 4, 5], want: [])
        }
        #expect(cache.lengths == [0, 0])
        #expect(throws: LlamaError.self) { try LlamaKVCache(config: Self.config, rows: 1, capacity: 17) }
        #expect(throws: LlamaError.noTargets) { try m.loss(inputs: [[1, 2]], targets: [[-1, -1]]) }
        #expect(throws: LlamaError.raggedBatch(row: 1, length: 1, expected: 2)) {
            try m.forwardBackward(inputs: [[1, 2], [3]], targets: [[1, 2], [3]])
        }
        #expect(throws: LlamaError.self) {
            try LlamaModel(config: LlamaConfig(layers: 1, width: 30, hidden: 8, heads: 4, kvHeads: 2, context: 4, vocab: 5), seed: 1)
        }
        #expect(throws: LlamaError.self) {
            try LlamaModel(config: LlamaConfig(layers: 1, width: 32, hidden: 8, heads: 4, kvHeads: 3, context: 4, vocab: 5), seed: 1)
        }
    }

    @Test("training: loss falls; frozen tensors and their optimizer moments never move")
    func training() throws {
        let m = try LlamaModel(config: Self.config, seed: 3)
        m.setTrainable(false, [.outputNorm, .query])
        m.setTrainable(false, [.gate], layers: 1..<2)
        #expect(!m.isTrainable(.query, layer: 0) && !m.isTrainable(.gate, layer: 1) && m.isTrainable(.gate, layer: 0))
        let frozen = [m.layout.range(.outputNorm), m.layout.range(.query, layer: 0),
                      m.layout.range(.query, layer: 1), m.layout.range(.gate, layer: 1)]
        #expect(m.trainableParameterCount == m.layout.total - frozen.reduce(0) { $0 + $1.count })
        let before = m.parameters.copy()
        let optimizer = m.makeOptimizer(weightDecay: 0.1)
        let first = try m.trainStep(inputs: Self.inputs, targets: Self.targets, optimizer: optimizer, learningRate: 1e-2)
        var last = first.loss
        for _ in 0..<60 {
            last = try m.trainStep(inputs: Self.inputs, targets: Self.targets, optimizer: optimizer, learningRate: 1e-2).loss
        }
        #expect(last < first.loss * 0.2, "loss \(first.loss) -> \(last)")
        for r in frozen {
            for i in r {
                #expect(m.parameters[i] == before[i])
                #expect(optimizer.m[i] == 0)
            }
        }
        #expect(m.parameters[m.layout.offset(.gate, layer: 0)] != before[m.layout.offset(.gate, layer: 0)])
    }

    @Test("row order: GGUF and Hugging Face orders are inverse permutations")
    func rowOrder() throws {
        let hs = 8
        // GGUF rows 0..7 of a head are HF rows 0,4,1,5,2,6,3,7.
        #expect((0..<8).map { LlamaRowOrder.huggingFaceRow(ggufRow: $0, headSize: hs) } == [0, 4, 1, 5, 2, 6, 3, 7])
        for r in 0..<24 {
            #expect(LlamaRowOrder.ggufRow(huggingFaceRow: LlamaRowOrder.huggingFaceRow(ggufRow: r, headSize: hs), headSize: hs) == r)
        }
        let matrix = (0..<(16 * 3)).map { Float($0) }
        let hf = try LlamaRowOrder.huggingFaceOrder(matrix, columns: 3, headSize: hs)
        #expect(Array(hf[3..<6]) == [6, 7, 8])   // HF row 1 of head 0 is GGUF row 2
        #expect(try LlamaRowOrder.ggufOrder(hf, columns: 3, headSize: hs) == matrix)
        #expect(throws: LlamaError.self) { try LlamaRowOrder.huggingFaceOrder(matrix, columns: 5, headSize: hs) }
    }
}

/// Random tensors and dot products for the gradient checks.
enum GradientProbe {
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
}
