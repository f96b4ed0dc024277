@testable import CURecModels
import CURecTensor
import Foundation
import Testing

/// Test helpers: GGUF block quantization of float32 weights, and a tiny Llama model in both
/// weight formats with the very same weights.
enum LlamaQuantizedFixture {
    /// IEEE half bytes (little-endian) of `value`, and the value they hold.
    static func half(_ value: Float) -> ([UInt8], Float) {
        let h = Float16(value)
        return ([UInt8(h.bitPattern & 0xFF), UInt8(h.bitPattern >> 8)], Float(h))
    }

    /// `W[rows, columns]` as GGUF blocks: Q8_0 (d = max|w| / 127, q = round(w / d)) or Q4_1
    /// (m = min w, d = (max − min) / 15, q = round((w − m) / d) in 0...15, low nibbles the
    /// first 16 elements).
    static func quantize(_ w: UnsafePointer<Float>, rows: Int, columns: Int, type: GGMLType) -> QuantizedMatrix {
        var bytes: [UInt8] = []
        for start in stride(from: 0, to: rows * columns, by: 32) {
            let x = UnsafeBufferPointer(start: w + start, count: 32)
            if type == .q8_0 {
                let (db, d) = half((x.map { abs($0) }.max() ?? 0) / 127)
                bytes += db
                bytes += x.map { UInt8(bitPattern: Int8(d == 0 ? 0 : max(-127, min(127, ($0 / d).rounded())))) }
            } else {
                let lo = x.min() ?? 0, hi = x.max() ?? 0
                let (db, d) = half((hi - lo) / 15), (mb, m) = half(lo)
                bytes += db + mb
                let q = x.map { UInt8(d == 0 ? 0 : max(0, min(15, (($0 - m) / d).rounded()))) }
                bytes += (0..<16).map { q[$0] | q[$0 + 16] << 4 }
            }
        }
        return QuantizedMatrix(type: type, rows: rows, columns: columns, blocks: bytes)
    }

    /// A random model (`seed`, weights std `std`) with its projections in Q4_1 and its
    /// embedding in Q8_0, and a float32 model holding exactly the dequantized blocks.
    static func pair(config c: LlamaConfig, seed: UInt64, std: Float = 0.2) throws
        -> (quantized: LlamaModel, float32: LlamaModel)
    {
        let dense = try LlamaModel(config: c, seed: seed)
        var rng = Xoshiro256(seed: seed &+ 1)
        let layout = dense.layout
        for p in LlamaParam.allCases where p.isMatrix {
            let n = layout.sizes[p.rawValue] * (p.perLayer ? c.layers : 1)
            rng.fillGaussian(dense.parameters.data + layout.offsets[p.rawValue], count: n, std: std)
        }
        var matrices = [[QuantizedMatrix]](repeating: [], count: LlamaParam.allCases.count)
        for p in LlamaParam.allCases where p.isMatrix {
            for l in 0..<(p.perLayer ? c.layers : 1) {
                let shape = p.shape(c), w = dense.store.value(p, l)
                let q = quantize(w, rows: shape[0], columns: shape[1], type: p == .tokenEmbedding ? .q8_0 : .q4_1)
                let back = q.dequantized()
                w.update(from: back, count: back.count)
                matrices[p.rawValue].append(q)
            }
        }
        let normLayout = LlamaLayout(config: c, format: .quantized)
        let norms = Tensor(uncheckedZeros: [normLayout.total])
        for p in LlamaParam.allCases where !p.isMatrix {
            for l in 0..<(p.perLayer ? c.layers : 1) {
                (norms.data + normLayout.offset(p, layer: l)).update(from: dense.store.value(p, l), count: layout.sizes[p.rawValue])
            }
        }
        let store = LlamaParameterStore(layout: normLayout, values: norms)
        let quantized = LlamaModel(validConfig: c, store: store, format: .quantized) { p, l in
            .quantized(matrices[p.rawValue][p.perLayer ? l : 0])
        }
        return (quantized, dense)
    }

    static func crossEntropy(_ logits: ArraySlice<Float>, _ target: Int) -> Double {
        let mx = Double(logits.max() ?? 0)
        let lse = mx + log(logits.reduce(0.0) { $0 + exp(Double($1) - mx) })
        return lse - Double(logits[logits.startIndex + target])
    }
}

/// A Llama model with quantized weights on a tiny random configuration (width and hidden
/// multiples of 32, as the blocks need): the cached steps, the training-path loss, adapters
/// and the refusals, with the float32 model of the same dequantized weights as the reference.
@Suite("Llama quantized weights")
struct LlamaQuantizedTests {
    static let config = LlamaConfig(layers: 2, width: 64, hidden: 96, heads: 4, kvHeads: 2,
                                    ropeBase: 10_000, rmsEps: 1e-5, context: 16, vocab: 37)
    static let inputs = [[3, 17, 5, 9, 30, 2, 11], [8, 8, 1, 36, 4, 22, 7]]

    @Test("the parameter buffer holds only the norms; matrices stay in their blocks")
    func storage() throws {
        let (q, f) = try LlamaQuantizedFixture.pair(config: Self.config, seed: 1)
        let c = Self.config
        #expect(q.weightFormat == .quantized && f.weightFormat == .float32)
        #expect(q.parameters.count == (2 * c.layers + 1) * c.width)
        #expect(q.layout.sizes[LlamaParam.query.rawValue] == 0)
        #expect(q.blocks.allSatisfy { $0.linears.allSatisfy { $0.1.weight.isQuantized } })
        #expect(q.embedding.weight.isQuantized && !f.embedding.weight.isQuantized)
        // parameter(_:layer:) dequantizes: the same values as the float32 model.
        for p in LlamaParam.allCases {
            #expect(q.parameter(p, layer: 1) == f.parameter(p, layer: 1), "\(p)")
        }
    }

    /// The two models differ only by the 8-bit rounding of each product's input (at most
    /// max|x_block| / 254 per element, about 0.5% rms of a product's output; the products
    /// themselves are checked against that bound in QuantizedMatrixTests), compounded over 2
    /// blocks and the head. The per-position cross-entropies (about 4 nats with these weights
    /// of std 0.2) move by up to 0.054; the bound is 0.2, and the test checks that one wrong
    /// weight (block 0's gate taking block 1's) moves them well beyond it.
    @Test("logits: close to the float32 model of the same weights; steps agree however split")
    func steps() throws {
        let (q, f) = try LlamaQuantizedFixture.pair(config: Self.config, seed: 2)
        let c = Self.config, V = c.vocab, T = Self.inputs[0].count
        let everywhere = Self.inputs.map { row in row.indices.map { t in row[(t + 1) % row.count] } }
        // Training path (no cache) per-position losses of both models.
        _ = try q.loss(inputs: Self.inputs, targets: everywhere)
        let quantizedLosses = try #require(q.head).losses.values
        _ = try f.loss(inputs: Self.inputs, targets: everywhere)
        let floatLosses = try #require(f.head).losses.values
        var worst = 0.0
        for i in 0..<(2 * T) { worst = max(worst, abs(Double(quantizedLosses[i] - floatLosses[i]))) }
        print("quantized tiny model: largest cross-entropy difference from float32 \(worst)")
        #expect(worst < 0.2)
        #expect(worst > 0)   // the quantized path really ran
        // Cached steps in an interleaved plan reproduce the quantized training pass (same
        // arithmetic up to the order of float sums).
        let cache = try LlamaKVCache(config: c, rows: 3, capacity: 9)
        let plan: [[(b: Int, from: Int, count: Int)]] = [
            [(0, 0, 3), (1, 0, 2)], [(1, 2, 1), (0, 3, 1)], [(0, 4, 1), (1, 3, 4), (0, 5, 2)],
        ]
        for stepPlan in plan {
            var rows: [Int] = [], tokens: [Int] = [], where_: [(Int, Int)] = []
            for s in stepPlan {
                for t in s.from..<(s.from + s.count) {
                    rows.append(s.b == 0 ? 2 : 0)
                    tokens.append(Self.inputs[s.b][t])
                    where_.append((s.b, t))
                }
            }
            let logits = try q.step(cache: cache, rows: rows, tokens: tokens, want: Array(0..<rows.count))
            for (j, (b, t)) in where_.enumerated() {
                let ce = LlamaQuantizedFixture.crossEntropy(logits[(j * V)..<((j + 1) * V)], everywhere[b][t])
                #expect(abs(ce - Double(quantizedLosses[b * T + t])) < 1e-4, "row \(b) position \(t)")
            }
        }
        #expect(cache.lengths == [T, 0, T])
        // Batched greedy rows equal rows decoded alone.
        let prompts = [[1, 2, 3], [30, 4, 4, 4, 8]]
        let both = try q.greedy(prompts: prompts, maxTokens: 6)
        #expect(both[0] == (try q.greedy(prompts: [prompts[0]], maxTokens: 6))[0])
        #expect(both[1] == (try q.greedy(prompts: [prompts[1]], maxTokens: 6))[0])
        // A wrong weight moves the losses far beyond the bound.
        q.blocks[0].gate.weight = q.blocks[1].gate.weight
        _ = try q.loss(inputs: Self.inputs, targets: everywhere)
        let wrong = try #require(q.head).losses.values
        let moved = (0..<(2 * T)).map { abs(Double(wrong[$0] - floatLosses[$0])) }.max() ?? 0
        #expect(moved > 1, "a wrong gate weight moved the losses by only \(moved)")
    }

    @Test("adapters attach to quantized projections and add the same effect as on float32")
    func adapters() throws {
        let (q, f) = try LlamaQuantizedFixture.pair(config: Self.config, seed: 3)
        let lora = try LlamaLoRA(config: LoRAConfig(rank: 2, alpha: 4, dropout: 0, targets: LoRATarget.allCases),
                                 modelConfig: Self.config, seed: 5)
        var rng = Xoshiro256(seed: 6)
        for slot in lora.layout.slots {
            rng.fillGaussian(lora.parameters.data + slot.b.lowerBound, count: slot.b.count, std: 0.3)
        }
        let tokens = Self.inputs[0], V = Self.config.vocab
        func logits(_ m: LlamaModel) throws -> [Float] {
            let cache = try LlamaKVCache(config: Self.config, rows: 1, capacity: tokens.count)
            return try m.step(cache: cache, rows: [Int](repeating: 0, count: tokens.count), tokens: tokens,
                              want: Array(tokens.indices))
        }
        let qBase = try logits(q), fBase = try logits(f)
        try lora.attach(to: q)
        try lora.attach(to: f)
        let qAdapted = try logits(q), fAdapted = try logits(f)
        var effect = 0.0, worst = 0.0
        for i in 0..<(tokens.count * V) {
            let fe = Double(fAdapted[i] - fBase[i]), qe = Double(qAdapted[i] - qBase[i])
            effect = max(effect, abs(fe))
            worst = max(worst, abs(qe - fe))
        }
        print("quantized tiny model: adapter effect up to \(effect), differs from float32 by up to \(worst)")
        #expect(effect > 0.5)
        #expect(worst < 0.05 * effect)
        lora.detach(from: q)
        #expect(try logits(q) == qBase)
        // Merging needs float32 weights.
        #expect(throws: LoRAError.quantizedModel) { try lora.merge(into: q) }
    }

    @Test("training is refused with a typed error, before any kernel runs")
    func refusals() throws {
        let (q, _) = try LlamaQuantizedFixture.pair(config: Self.config, seed: 4)
        let x = [[1, 2, 3]], y = [[2, 3, 4]]
        #expect(throws: LlamaError.quantizedWeights(operation: "a backward pass")) {
            try q.forwardBackward(inputs: x, targets: y)
        }
        #expect(throws: LlamaError.quantizedWeights(operation: "training")) {
            try q.trainStep(inputs: x, targets: y, optimizer: q.makeOptimizer(), learningRate: 1e-3)
        }
        let data = try LlamaChatDataset(sequences: [LlamaTrainingSequence(tokens: [1, 2, 3, 4], completionStart: 2)])
        #expect(throws: LlamaFineTuningError.model(.quantizedWeights(operation: "fine-tuning"))) {
            try LlamaFineTuner(model: q, dataset: data, config: LlamaFineTuningConfig(
                method: .lora(LoRAConfig(rank: 2, alpha: 4, dropout: 0, targets: [.query])), batchSize: 1))
        }
        #expect(throws: LlamaError.quantizedWeights(operation: "loading full weights")) {
            try LlamaWeightsFile.load(path: "/nonexistent/model.safetensors", into: q)
        }
        #expect(LlamaError.quantizedWeights(operation: "training").description.contains("weights: .float32"))
        // The forward-only loss still works.
        #expect(try q.loss(inputs: x, targets: y).isFinite)
    }

    @Test("a GGUF file with float32 matrices loads as .quantized with float32 products")
    func float32File() throws {
        let path = try LlamaGGUFTests.tinyFile().write()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let f = try LlamaModel.load(path: path), q = try LlamaModel.load(path: path, weights: .quantized)
        #expect(q.weightFormat == .quantized)
        let cf = try LlamaKVCache(config: f.config, rows: 1, capacity: 4)
        let cq = try LlamaKVCache(config: q.config, rows: 1, capacity: 4)
        let a = try f.step(cache: cf, rows: [0, 0, 0], tokens: [1, 4, 2], want: [0, 1, 2])
        let b = try q.step(cache: cq, rows: [0, 0, 0], tokens: [1, 4, 2], want: [0, 1, 2])
        #expect(zip(a, b).allSatisfy { abs($0 - $1) <= 1e-5 * max(1, abs($0)) })
    }
}

/// `llama_quantized_reference.json`, written by `Fixtures/make_llama_quantized_reference.py`:
/// llama.cpp on the same file and the prompts of `llama_reference.json`.
struct LlamaQuantizedReference: Decodable {
    struct Prompt: Decodable {
        let ids: [Int]
        /// `[T][vocab_ids.count]`
        let logits: [[Double]]
        let argmax: [Int]
        let top2_margin: [Double]
        let logsumexp: [Double]
    }
    struct Greedy: Decodable {
        let prompt: Int
        let tokens: [Int]
    }
    let vocab_ids: [Int]
    let max_abs_logit_vs_float64: Double
    let prompts: [Prompt]
    let greedy: [Greedy]

    static func load() throws -> LlamaQuantizedReference {
        let url = URL(fileURLWithPath: ModelsFixturePaths.directory + "/llama_quantized_reference.json")
        return try JSONDecoder().decode(LlamaQuantizedReference.self, from: Data(contentsOf: url))
    }
}

/// SmolLM2-135M-Instruct loaded with `.quantized` (Q4_1 projections, Q8_0 embedding and head,
/// as stored) against the same file loaded as float32, on the prompts of the transformers
/// parity fixture (`llama_reference.json`).
@Suite("Llama quantized weights (SmolLM2-135M-Instruct)", .serialized, .enabled(if: LlamaAssets.available))
struct LlamaQuantizedSmolLM2Tests {
    nonisolated(unsafe) static var cached: (quantized: LlamaModel, float32: LlamaModel)?
    static func models() throws -> (quantized: LlamaModel, float32: LlamaModel) {
        if let m = cached { return m }
        let gguf = try GGUFFile.read(path: LlamaAssets.modelPath)
        let m = (try LlamaModel.load(gguf: gguf, weights: .quantized), try LlamaModel.load(gguf: gguf))
        cached = m
        return m
    }

    @Test("no float32 copy of the matrices: the buffer holds the norms, the blocks stay in the file")
    func storage() throws {
        let (q, _) = try Self.models()
        let c = q.config
        #expect(q.parameters.count == (2 * c.layers + 1) * c.width)   // 35,136 floats
        guard case .quantized(let head) = q.embedding.weight else { Issue.record("embedding is not quantized"); return }
        #expect(head.type == .q8_0 && head.rows == c.vocab)
        for block in q.blocks {
            for (p, linear) in block.linears {
                guard case .quantized(let m) = linear.weight else { Issue.record("\(p) is not quantized"); continue }
                #expect(m.type == .q4_1, "\(p)")
            }
        }
    }

    /// Bound: llama.cpp, which multiplies the same stored blocks by 8-bit activations, is
    /// the measure of what that rounding does to this model. Its logits deviate from the
    /// float64 reference of the dequantized weights by up to 1.43 on the fixture's sampled ids
    /// (`max_abs_logit_vs_float64`): the 30 blocks amplify a relative input error of ~0.5% per
    /// product (float32 rounding, 1e-7 relative, gives 1e-4 in the logits, the same
    /// amplification). The quantized model must stay within 1.5 times llama.cpp's deviation of
    /// the reference on those ids (observed 1.33) and within twice it of the float32 model over
    /// the whole vocabulary (observed 1.81, rms 0.29 against a logit spread of 3.5); arg-max
    /// must agree wherever the float32 top-2 margin exceeds twice that bound (observed: 93 of
    /// 98 positions agree, llama.cpp 96). The gap between the float32 model's two best tokens
    /// moves by up to 0.76 (the basis of ``comfortableMargin``). An error in the wiring (a
    /// weight of another block, rows out of order, a lost residual) moves logits by 10 or more.
    @Test("logits against the float32 model, the float64 reference and llama.cpp")
    func logits() throws {
        let (q, f) = try Self.models()
        let reference = try LlamaReference.load()
        let V = q.config.vocab
        var worst = 0.0, sumSquares = 0.0, spread = 0.0, count = 0.0, worstReference = 0.0
        var argmaxAgree = 0, positions = 0
        let peer = try LlamaQuantizedReference.load()
        var worstPeer = 0.0, peerArgmax = 0, worstPeerLSE = 0.0, worstGap = 0.0
        for (p, prompt) in reference.prompts.enumerated() {
            let T = prompt.ids.count
            func run(_ m: LlamaModel) throws -> [Float] {
                let cache = try LlamaKVCache(config: m.config, rows: 1, capacity: T)
                return try m.step(cache: cache, rows: [Int](repeating: 0, count: T), tokens: prompt.ids, want: Array(0..<T))
            }
            let a = try run(q), b = try run(f)
            for t in 0..<T {
                let row = b[(t * V)..<((t + 1) * V)]
                let mean = row.reduce(0.0) { $0 + Double($1) } / Double(V)
                for i in (t * V)..<((t + 1) * V) {
                    let d = Double(a[i] - b[i])
                    worst = max(worst, abs(d))
                    sumSquares += d * d
                    spread += (Double(b[i]) - mean) * (Double(b[i]) - mean)
                    count += 1
                }
                for (j, id) in reference.vocab_ids.enumerated() {
                    worstReference = max(worstReference, abs(Double(a[t * V + id]) - prompt.logits[t][j]))
                    worstPeer = max(worstPeer, abs(Double(a[t * V + id]) - peer.prompts[p].logits[t][j]))
                }
                var best = t * V
                for i in (t * V)..<((t + 1) * V) where a[i] > a[best] { best = i }
                // The float32 model's two best tokens, and how much their gap moves.
                var f1 = t * V, f2 = t * V + 1
                if b[f2] > b[f1] { swap(&f1, &f2) }
                for i in (t * V + 2)..<((t + 1) * V) {
                    if b[i] > b[f1] { f2 = f1; f1 = i } else if b[i] > b[f2] { f2 = i }
                }
                worstGap = max(worstGap, abs(Double((a[f1] - a[f2]) - (b[f1] - b[f2]))))
                if best - t * V == prompt.argmax[t] { argmaxAgree += 1 }
                if prompt.top2_margin[t] > 4 * peer.max_abs_logit_vs_float64 {
                    #expect(best - t * V == prompt.argmax[t], "prompt \(p) position \(t)")
                }
                if best - t * V == peer.prompts[p].argmax[t] { peerArgmax += 1 }
                let mx = Double(a[best])
                let lse = mx + log(a[(t * V)..<((t + 1) * V)].reduce(0.0) { $0 + exp(Double($1) - mx) })
                worstPeerLSE = max(worstPeerLSE, abs(lse - peer.prompts[p].logsumexp[t]))
                positions += 1
            }
        }
        let rms = (sumSquares / count).squareRoot(), scale = (spread / count).squareRoot()
        #expect(worstReference < 1.5 * peer.max_abs_logit_vs_float64)
        #expect(worst < 2 * peer.max_abs_logit_vs_float64)
        #expect(rms < 0.15 * scale)
        #expect(argmaxAgree >= positions * 9 / 10)
        #expect(worstGap < Double(Self.comfortableMargin))
        print("SmolLM2 quantized vs float32: max |Δlogit| \(worst), rms \(rms) (logit spread rms \(scale)); vs float64 reference max \(worstReference); arg-max agrees at \(argmaxAgree) of \(positions); vs llama.cpp max \(worstPeer), logsumexp \(worstPeerLSE), arg-max \(peerArgmax); top-2 gap moves by up to \(worstGap); llama.cpp vs float64 \(peer.max_abs_logit_vs_float64)")
    }

    /// Greedy continuations of `prompts` (`n` tokens) by both models: per prompt, how many
    /// leading tokens agree and for how many the float32 top-2 margin stays at least
    /// ``comfortableMargin``.
    static func greedyAgreement(_ prompts: [[Int]], n: Int) throws
        -> (agree: [Int], comfortable: [Int], quantized: [[Int]], float32: [[Int]])
    {
        let (q, f) = try models()
        let V = q.config.vocab
        let expected = try f.greedy(prompts: prompts, maxTokens: n)
        let got = try q.greedy(prompts: prompts, maxTokens: n)
        var agree: [Int] = [], comfortable: [Int] = []
        for (p, prompt) in prompts.enumerated() {
            // The float32 top-2 margin at each generated position (teacher-forced).
            let sequence = prompt + expected[p].dropLast()
            let cache = try LlamaKVCache(config: f.config, rows: 1, capacity: sequence.count)
            let logits = try f.step(cache: cache, rows: [Int](repeating: 0, count: sequence.count), tokens: sequence,
                                    want: Array((prompt.count - 1)..<sequence.count))
            let margins = (0..<n).map { j -> Float in
                let row = logits[(j * V)..<((j + 1) * V)].sorted(by: >)
                return row[0] - row[1]
            }
            agree.append(zip(expected[p], got[p]).prefix { $0 == $1 }.count)
            comfortable.append(margins.firstIndex { $0 < comfortableMargin } ?? n)
        }
        return (agree, comfortable, got, expected)
    }

    /// A float32 top-2 margin the quantized model cannot reverse: about 1.5 times the largest
    /// change of the float32 top-2 gap seen over the 98 positions of ``logits()`` (0.76).
    static let comfortableMargin: Float = 1.2

    /// Greedy decoding follows the float32 model token for token at least while the float32
    /// top-2 margin stays above ``comfortableMargin``. For prompts whose continuation is
    /// determined (counting) it does for all 16 tokens, and the continuations must be
    /// identical; a copying prompt and a code prompt, whose margins dip below it, are held to
    /// their comfortable prefix (observed: they agree for all 16 tokens as well).
    @Test("greedy continuations agree with float32 while its top-2 margin is comfortable")
    func greedyComfortable() throws {
        let tokenizer = try PretrainedTokenizer(gguf: GGUFFile.read(path: LlamaAssets.modelPath))
        let determined = ["1, 2, 3, 4, 5, 6, 7, 8,", "10, 20, 30, 40,", "2, 4, 6, 8, 10,", "0 1 2 3 4 5 6 7 8 9 10"]
        let others = [
            "<|im_start|>user\nRepeat exactly: the cat sat on the mat<|im_end|>\n<|im_start|>assistant\n",
            "for i in range(10):\n    print(i)\nfor i in range(10):\n",
        ]
        let texts = determined + others
        let r = try Self.greedyAgreement(texts.map { tokenizer.encode($0).map(Int.init) }, n: 16)
        for p in texts.indices {
            print("SmolLM2 quantized greedy, \(texts[p].debugDescription): \(r.agree[p]) of 16 tokens as float32, margin comfortable for \(r.comfortable[p])")
            #expect(r.agree[p] >= r.comfortable[p], "prompt \(p)")
            if p < determined.count {
                #expect(r.comfortable[p] == 16 && r.quantized[p] == r.float32[p], "prompt \(p)")
            }
        }
    }

    /// The fixture's greedy prompts pass through near-ties (float32 top-2 margins down to
    /// 0.026), where 8-bit rounding may choose the other token and the continuations part, as
    /// llama.cpp's do. Reported, and checked only up to the first uncomfortable margin.
    /// Observed with the VNNI kernels: 33, 27 and 2 of 64 tokens agree with float32 (llama.cpp:
    /// 30, 12, 2), and 30, 12 and 18 with llama.cpp's own continuations (each change of
    /// rounding order moves these; only the comfortable prefix is checked).
    @Test("greedy continuations of the reference prompts: agreement with float32 and llama.cpp")
    func greedyReference() throws {
        let reference = try LlamaReference.load(), peer = try LlamaQuantizedReference.load()
        let prompts = reference.greedy.map { reference.prompts[$0.prompt].ids }
        let r = try Self.greedyAgreement(prompts, n: 64)
        for p in prompts.indices {
            #expect(r.agree[p] >= r.comfortable[p], "prompt \(p)")
            let theirs = peer.greedy[p].tokens
            print("SmolLM2 quantized greedy, reference prompt \(reference.greedy[p].prompt): \(r.agree[p]) of 64 tokens as float32, \(zip(theirs, r.quantized[p]).prefix { $0 == $1 }.count) as llama.cpp (llama.cpp as float32: \(zip(theirs, r.float32[p]).prefix { $0 == $1 }.count))")
        }
    }
}
