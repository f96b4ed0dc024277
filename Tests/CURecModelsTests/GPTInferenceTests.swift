import CURecModels
import CURecTensor
import Foundation
import Testing

@Suite("GPT inference")
struct GPTInferenceTests {
    static let config = GPTConfig(layers: 2, heads: 2, width: 16, context: 12, vocab: 24)

    /// A model with larger weights than the init so the distributions are far from uniform.
    static func model() throws -> GPTModel {
        let m = try GPTModel(config: config, seed: 5)
        var rng = Xoshiro256(seed: 77)
        rng.fillGaussian(m.parameters.data, count: m.layout.offset(.ln1w), std: 0.5)
        return m
    }

    @Test("log-probabilities equal log-softmax of the full forward pass; padding has no effect")
    func logProbs() throws {
        let m = try Self.model()
        let prompts = [[1, 2, 3], [4]]
        let conts = [[5, 6], [7, 8, 9, 10, 11]]
        let lp = try m.logProbabilities(prompts: prompts, continuations: conts)
        for (i, (p, c)) in zip(prompts, conts).enumerated() {
            let seq = p + c
            let logits = try m.logits(inputs: [seq])
            let V = Self.config.vocab
            for (j, tok) in c.enumerated() {
                let row = Array(logits[((p.count - 1 + j) * V)..<((p.count + j) * V)])
                let mx = row.max() ?? 0
                let lse = mx + log(row.reduce(Float(0)) { $0 + exp($1 - mx) })
                #expect(abs(lp[i][j] - (row[tok] - lse)) < 1e-5)
            }
        }
    }

    @Test("greedy KV-cache decoding matches arg-max of full forward passes, batched or not")
    func cacheMatchesFullForward() throws {
        let m = try Self.model()
        let prompts = [[1, 2, 3], [7], [9, 9, 4, 2, 11]]
        let opts = GPTSamplingOptions(maxTokens: 5, temperature: 0)
        let batched = try m.generate(prompts: prompts, options: opts)
        for (i, p) in prompts.enumerated() {
            var seq = p
            var expected: [Int] = []
            for _ in 0..<5 {
                let logits = try m.logits(inputs: [seq])
                let last = Array(logits.suffix(Self.config.vocab))
                let arg = last.indices.max { last[$0] < last[$1] } ?? 0
                expected.append(arg)
                seq.append(arg)
            }
            #expect(batched[i].tokens == expected)
            #expect(try m.generate(prompts: [p], options: opts)[0].tokens == expected)
        }
    }

    @Test("sampling: seeded determinism, row independence, top-k 1 is greedy, context limit")
    func sampling() throws {
        let m = try Self.model()
        let opts = GPTSamplingOptions(maxTokens: 6, temperature: 1.0, topK: 5, topP: 0.9, seed: 11)
        let a = try m.generate(prompts: [[1, 2], [3]], options: opts)
        let b = try m.generate(prompts: [[1, 2], [3]], options: opts)
        #expect(a == b)
        let alone = try m.generate(prompts: [[1, 2]], options: opts)
        #expect(alone[0] == a[0])
        let greedy = try m.generate(prompts: [[1, 2]], options: GPTSamplingOptions(maxTokens: 6, temperature: 0))
        let top1 = try m.generate(prompts: [[1, 2]], options: GPTSamplingOptions(maxTokens: 6, temperature: 2, topK: 1, seed: 3))
        #expect(top1[0].tokens == greedy[0].tokens)
        let full = try m.generate(prompts: [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]], options: GPTSamplingOptions(maxTokens: 50, seed: 1))
        #expect(full[0].finishReason == .contextFull)
        #expect(full[0].tokens.count == 3)  // positions 10 and 11 are fed, the 3rd token ends it
        #expect(throws: GPTError.self) {
            try m.generate(prompts: [[1]], options: GPTSamplingOptions(topP: 0))
        }
    }

    @Test("a repetition penalty discourages tokens the row already wrote; bad penalties are refused")
    func repetitionPenalty() throws {
        let m = try Self.model()
        let plain = try m.generate(prompts: [[1, 2, 3]], options: GPTSamplingOptions(maxTokens: 9, temperature: 0))[0].tokens
        let penalised = try m.generate(prompts: [[1, 2, 3]], options: GPTSamplingOptions(
            maxTokens: 9, temperature: 0, repetitionPenalty: 1e9))[0].tokens
        // The first token is the same (nothing written yet); afterwards a huge penalty
        // leaves only unseen tokens with positive logits in the running.
        #expect(penalised.first == plain.first)
        #expect(Set(penalised).count >= Set(plain).count)
        #expect(Set(penalised).count == penalised.count, "a token repeated despite the penalty: \(penalised)")
        #expect(throws: GPTError.self) {
            try m.generate(prompts: [[1]], options: GPTSamplingOptions(maxTokens: 2, repetitionPenalty: 0.5))
        }
    }

    @Test("stop sequences end a row, are removed and never streamed")
    func stopSequences() throws {
        let m = try Self.model()
        let greedy = try m.generate(prompts: [[1, 2]], options: GPTSamplingOptions(maxTokens: 8, temperature: 0))[0].tokens
        #expect(greedy.count == 8)
        let stop = Array(greedy[3...4])
        var streamed: [Int] = []
        let out = try m.generate(prompts: [[1, 2]], options: GPTSamplingOptions(
            maxTokens: 8, temperature: 0, stopSequences: [[23, 23, 23, 23], stop])) { _, t in streamed.append(t) }
        let cut = Self.firstOccurrence(of: stop, in: greedy)
        #expect(out[0].finishReason == .stopSequence)
        #expect(out[0].tokens == Array(greedy[..<cut]))
        #expect(streamed == out[0].tokens)
    }

    static func firstOccurrence(of s: [Int], in a: [Int]) -> Int {
        for i in 0...(a.count - s.count) where Array(a[i..<(i + s.count)]) == s { return i }
        return a.count
    }

    @Test("a frozen copy keeps the reference weights while the policy trains")
    func frozenReference() throws {
        let m = try Self.model()
        let ref = m.frozenCopy()
        let before = try ref.logProbabilities(prompts: [[1]], continuations: [[2, 3]])
        let opt = m.makeOptimizer()
        try m.trainStep(inputs: [[1, 2]], targets: [[2, 3]], optimizer: opt, learningRate: 1e-2)
        #expect(try ref.logProbabilities(prompts: [[1]], continuations: [[2, 3]]) == before)
        #expect(try m.logProbabilities(prompts: [[1]], continuations: [[2, 3]]) != before)
        #expect(ref.parameters.data != m.parameters.data)
    }
}
