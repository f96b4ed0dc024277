import CURecModels
import CURecTensor
import Foundation
import Testing

@Suite("GPT training")
struct GPTTrainingTests {
    static let corpus = [
        "the cat sat on the mat",
        "a dog ran to the park!",
        "we like green tea now.",
    ]

    /// Byte-level vocabulary of the corpus.
    static func vocabulary() -> [Character] {
        Array(Set(corpus.joined())).sorted()
    }

    @Test("a tiny model overfits a small corpus below loss 0.05 and reproduces a line greedily")
    func overfitAndRecite() throws {
        let chars = Self.vocabulary()
        let index = Dictionary(uniqueKeysWithValues: chars.enumerated().map { ($1, $0) })
        let lines = Self.corpus.map { $0.compactMap { index[$0] } }
        let T = lines[0].count - 1
        let config = GPTConfig(layers: 2, heads: 2, width: 32, context: 24, vocab: chars.count)
        let model = try GPTModel(config: config, seed: 42)
        let opt = model.makeOptimizer(weightDecay: 0)
        let inputs = lines.map { Array($0[0..<T]) }
        let targets = lines.map { Array($0[1...T]) }
        let schedule = CosineSchedule(maxLR: 1e-2, minLR: 1e-3, warmupSteps: 10, totalSteps: 150)
        var loss: Float = .infinity
        for step in 0..<150 {
            loss = try model.trainStep(inputs: inputs, targets: targets, optimizer: opt,
                                       learningRate: schedule.learningRate(step: step)).loss
        }
        #expect(loss < 0.05)
        // Greedy decoding from the first 3 characters reproduces each line.
        for line in lines {
            var streamed: [Int] = []
            let out = try model.generate(
                prompts: [Array(line[0..<3])],
                options: GPTSamplingOptions(maxTokens: line.count - 3, temperature: 0)) { _, t in
                    streamed.append(t)
                }
            #expect(out[0].tokens == Array(line[3...]))
            #expect(streamed == out[0].tokens)
            #expect(out[0].finishReason == .maxTokens)
        }
    }

    @Test("training is deterministic for a seed")
    func deterministic() throws {
        let config = GPTConfig(layers: 1, heads: 2, width: 16, context: 8, vocab: 20)
        func run() throws -> [Float] {
            let m = try GPTModel(config: config, seed: 9)
            let opt = m.makeOptimizer()
            for _ in 0..<3 {
                try m.trainStep(inputs: [[1, 2, 3, 4], [5, 6, 7, 8]], targets: [[2, 3, 4, 5], [6, 7, 8, 9]],
                                optimizer: opt, learningRate: 1e-3)
            }
            return m.parameters.values
        }
        #expect(try run() == run())
    }

    @Test("a NaN in the weights refuses the step and leaves weights and optimizer untouched")
    func nanRefused() throws {
        let config = GPTConfig(layers: 1, heads: 2, width: 16, context: 8, vocab: 20)
        let model = try GPTModel(config: config, seed: 1)
        let opt = model.makeOptimizer()
        let x = [[1, 2, 3]], y = [[2, 3, 4]]
        try model.trainStep(inputs: x, targets: y, optimizer: opt, learningRate: 1e-3)
        // Poison one weight of the last MLP projection: the loss becomes NaN.
        model.parameters[model.layout.offset(.fcprojw) + 5] = .nan
        let before = model.parameters.values
        let m = opt.m.values, v = opt.v.values, step = opt.step
        #expect(throws: GPTError.self) {
            try model.trainStep(inputs: x, targets: y, optimizer: opt, learningRate: 1e-3)
        }
        let after = model.parameters.values
        #expect(zip(before, after).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) })
        #expect(opt.m.values == m && opt.v.values == v && opt.step == step)

        // An infinite embedding entry of a used token is refused as well.
        let model2 = try GPTModel(config: config, seed: 1)
        model2.parameters[model2.layout.offset(.wte) + 1 * 16] = .infinity
        do {
            try model2.trainStep(inputs: x, targets: y, optimizer: model2.makeOptimizer(), learningRate: 1e-3)
            Issue.record("step with an infinite weight was accepted")
        } catch {
            switch error {
            case .nonFiniteLoss, .nonFiniteGradient: break
            default: Issue.record("unexpected error \(error)")
            }
            #expect(error.description.contains("refused"))
        }
    }

    @Test("input errors name the offending token, row and limit")
    func inputErrors() throws {
        let config = GPTConfig(layers: 1, heads: 2, width: 16, context: 8, vocab: 20)
        let model = try GPTModel(config: config, seed: 1)
        #expect(throws: GPTError.tokenOutOfRange(token: 20, row: 1, position: 2, vocab: 20)) {
            try model.logits(inputs: [[1, 2, 3], [4, 5, 20]])
        }
        #expect(throws: GPTError.tokenOutOfRange(token: -1, row: 0, position: 0, vocab: 20)) {
            try model.logits(inputs: [[-1]])
        }
        #expect(throws: GPTError.sequenceTooLong(row: 0, length: 9, context: 8)) {
            try model.logits(inputs: [Array(repeating: 1, count: 9)])
        }
        #expect(throws: GPTError.raggedBatch(row: 1, length: 2, expected: 3)) {
            try model.logits(inputs: [[1, 2, 3], [1, 2]])
        }
        #expect(throws: GPTError.targetOutOfRange(token: 25, row: 0, position: 1, vocab: 20)) {
            try model.forwardBackward(inputs: [[1, 2]], targets: [[2, 25]])
        }
        #expect(throws: GPTError.noTargets) {
            try model.forwardBackward(inputs: [[1, 2]], targets: [[-1, -1]])
        }
        #expect(throws: GPTError.invalidConfig("width 10 is not divisible by heads 3")) {
            try GPTModel(config: GPTConfig(layers: 1, heads: 3, width: 10, context: 4, vocab: 5), seed: 0)
        }
        #expect(throws: GPTError.sequenceTooLong(row: 0, length: 9, context: 8)) {
            try model.generate(prompts: [Array(repeating: 1, count: 9)], options: GPTSamplingOptions())
        }
        let e = GPTError.tokenOutOfRange(token: 20, row: 1, position: 2, vocab: 20)
        #expect(e.description == "token id 20 at row 1, position 2 is outside the vocabulary 0..<20")
        #expect(throws: GPTError.optimizerMismatch(expected: model.layout.total, got: 3)) {
            try model.trainStep(inputs: [[1]], targets: [[2]], optimizer: AdamW(parameterCount: 3),
                                learningRate: 1e-3)
        }
    }

    @Test("cosine schedule: linear warm-up, cosine decay, floor")
    func schedule() {
        let s = CosineSchedule(maxLR: 1.0, minLR: 0.1, warmupSteps: 4, totalSteps: 14)
        #expect(s.learningRate(step: 0) == 0.25)
        #expect(s.learningRate(step: 3) == 1.0)
        #expect(abs(s.learningRate(step: 4) - 1.0) < 1e-6)
        #expect(abs(s.learningRate(step: 9) - 0.55) < 1e-6)
        #expect(s.learningRate(step: 14) == 0.1)
        #expect(s.learningRate(step: 100) == 0.1)
    }
}

@Suite("GPT weighted loss")
struct GPTWeightedLossTests {
    @Test("per-position weights scale loss and gradients; weight 0 equals an ignored target")
    func weights() throws {
        let config = GPTConfig(layers: 1, heads: 2, width: 16, context: 8, vocab: 20)
        let m = try GPTModel(config: config, seed: 4)
        let x = [[1, 2, 3, 4]], y = [[2, 3, 4, 5]]
        let plain = try m.forwardBackward(inputs: x, targets: y)
        let g1 = m.gradients.values
        let doubled = try m.forwardBackward(inputs: x, targets: y, weights: [[2, 2, 2, 2]])
        #expect(abs(doubled - 2 * plain) < 1e-5)
        #expect(relativeError(m.gradients.values, g1.map { 2 * $0 }) < 1e-6)
        // Weight 0 on the last position equals ignoring it, up to the 4-vs-3 normaliser.
        let ignored = try m.forwardBackward(inputs: x, targets: [[2, 3, 4, -1]])
        let gi = m.gradients.values
        let zeroed = try m.forwardBackward(inputs: x, targets: y, weights: [[1, 1, 1, 0]])
        #expect(abs(zeroed - ignored * 3 / 4) < 1e-5)
        #expect(relativeError(m.gradients.values, gi.map { $0 * 3 / 4 }) < 1e-6)
        #expect(throws: GPTError.self) {
            try m.forwardBackward(inputs: x, targets: y, weights: [[1, 1]])
        }
    }
}
