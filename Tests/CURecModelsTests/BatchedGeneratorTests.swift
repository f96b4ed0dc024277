import CURecModels
import Foundation
import Testing

/// The cache of ``SumModel``: every token each row has seen.
private final class HistoryCache: KeyValueCache {
    let rows: Int
    let capacity: Int
    var history: [[Int32]]
    var lengths: [Int] { history.map(\.count) }

    init(rows: Int, capacity: Int) {
        self.rows = rows
        self.capacity = capacity
        history = Array(repeating: [], count: rows)
    }
}

/// A model whose next-token logits depend on the whole cached history: the most likely token
/// is the sum of the row's tokens so far modulo the vocabulary size, and the logits fall off
/// linearly from it. It exercises the protocol without any network.
private struct SumModel: CausalLanguageModel {
    let vocabularySize = 7
    let contextLength = 10

    func makeCache(rows: Int, capacity: Int) -> HistoryCache {
        HistoryCache(rows: rows, capacity: capacity)
    }

    func step(cache: HistoryCache, rows: [Int], tokens: [Int32], want: [Int]) -> [Float] {
        var logitsAfter: [[Float]] = []
        for (row, token) in zip(rows, tokens) {
            precondition(cache.history[row].count < cache.capacity, "a row outgrew the cache")
            cache.history[row].append(token)
            logitsAfter.append(Self.logits(after: cache.history[row].map(Int.init), vocabularySize: vocabularySize))
        }
        return want.flatMap { logitsAfter[$0] }
    }

    static func logits(after history: [Int], vocabularySize: Int) -> [Float] {
        let best = history.reduce(0, +) % vocabularySize
        return (0..<vocabularySize).map { -Float(abs($0 - best)) }
    }

    /// Greedy continuation of `prompt`, computed directly.
    func greedy(_ prompt: [Int], count: Int) -> [Int] {
        var sequence = prompt
        var out: [Int] = []
        for _ in 0..<count {
            let next = sequence.reduce(0, +) % vocabularySize
            out.append(next)
            sequence.append(next)
        }
        return out
    }
}

@Suite("Batched generation over any causal LM")
struct BatchedGeneratorTests {
    @Test("greedy decoding follows the cached history, batched or alone, within the cache capacity")
    func greedy() throws {
        let model = SumModel()
        let prompts = [[1, 2], [6], [3, 3, 3]]
        let generator = BatchedGenerator(model: model)
        let batched = try generator.generate(prompts: prompts, options: SamplingOptions(maxTokens: 4, temperature: 0))
        for (row, prompt) in prompts.enumerated() {
            #expect(batched[row] == GenerationResult(tokens: model.greedy(prompt, count: 4), finishReason: .maxTokens))
            #expect(try generator.generate(prompts: [prompt], options: SamplingOptions(maxTokens: 4, temperature: 0))[0] == batched[row])
        }
    }

    @Test("a full context, cancellation and stop sequences end rows with their reason; streaming holds back stop prefixes")
    func finishReasons() throws {
        let model = SumModel()
        let generator = BatchedGenerator(model: model)
        let long = [1, 1, 1, 1, 1, 1, 1, 1]
        let full = try generator.generate(prompts: [long], options: SamplingOptions(maxTokens: 50, temperature: 0))
        #expect(full[0].finishReason == .contextFull)
        #expect(full[0].tokens == model.greedy(long, count: 3))

        // Polled once before the prefill, then before each token.
        var polls = 0
        let cancelled = try generator.generate(
            prompts: [[1], [2]], options: SamplingOptions(maxTokens: 9, temperature: 0),
            shouldStop: { polls += 1; return polls > 3 })
        #expect(cancelled.map(\.finishReason) == [.cancelled, .cancelled])
        #expect(cancelled.map(\.tokens.count) == [2, 2])
        // A caller gone before the start costs no prefill and gets no tokens.
        let gone = try generator.generate(
            prompts: [[1], [2]], options: SamplingOptions(maxTokens: 9, temperature: 0), shouldStop: { true })
        #expect(gone.map(\.finishReason) == [.cancelled, .cancelled] && gone.allSatisfy { $0.tokens.isEmpty })

        let plain = model.greedy([1, 2], count: 6)
        let stop = Array(plain[2...3])
        var streamed: [Int] = []
        let stopped = try generator.generate(
            prompts: [[1, 2]], options: SamplingOptions(maxTokens: 6, temperature: 0, stopSequences: [[5, 5, 5, 5, 5], stop]),
            onToken: { _, token in streamed.append(token) })
        #expect(stopped[0].finishReason == .stopSequence && stopped[0].stopSequenceIndex == 1)
        #expect(stopped[0].tokens == Array(plain[..<2]))
        #expect(streamed == stopped[0].tokens)
    }

    @Test("sampling is seeded per row; refused inputs throw typed errors")
    func samplingAndErrors() throws {
        let generator = BatchedGenerator(model: SumModel())
        let options = SamplingOptions(maxTokens: 5, temperature: 1.5, topK: 4, topP: 0.95, seed: 9, repetitionPenalty: 1.3)
        let both = try generator.generate(prompts: [[1], [4, 2]], options: options)
        #expect(try generator.generate(prompts: [[1], [4, 2]], options: options) == both)
        #expect(try generator.generate(prompts: [[1]], options: options)[0] == both[0])
        #expect(throws: GenerationError.emptyInput("no prompts")) { try generator.generate(prompts: [], options: options) }
        #expect(throws: GenerationError.tokenOutOfRange(token: 7, row: 1, position: 0, vocab: 7)) {
            try generator.generate(prompts: [[1], [7]], options: options)
        }
        #expect(throws: GenerationError.sequenceTooLong(row: 0, length: 11, context: 10)) {
            try generator.generate(prompts: [Array(repeating: 1, count: 11)], options: options)
        }
        #expect(throws: GenerationError.self) { try generator.generate(prompts: [[1]], options: SamplingOptions(topK: -1)) }
    }

    @Test("log-probabilities are log-softmax of the model's logits, in one step or many")
    func logProbabilities() throws {
        let model = SumModel()
        let prompts = [[1, 2, 3], [4], [5, 5]]
        let continuations = [[6, 0], [1, 2, 3, 4], []]
        let whole = try CompletionScorer(model: model).logProbabilities(prompts: prompts, continuations: continuations)
        for (row, (prompt, continuation)) in zip(prompts, continuations).enumerated() {
            #expect(whole[row].count == continuation.count)
            for (j, token) in continuation.enumerated() {
                let logits = SumModel.logits(after: prompt + continuation[..<j], vocabularySize: 7)
                let normaliser = log(logits.reduce(0) { $0 + exp(Double($1)) })
                #expect(abs(Double(whole[row][j]) - (Double(logits[token]) - normaliser)) < 1e-5)
            }
        }
        // One scored token per step: the cache carries rows across steps.
        let oneByOne = CompletionScorer(model: model, logitsBudget: 1)
        #expect(try oneByOne.logProbabilities(prompts: prompts, continuations: continuations) == whole)
        #expect(throws: GenerationError.self) {
            try CompletionScorer(model: model).logProbabilities(prompts: [[1]], continuations: [])
        }
        #expect(throws: GenerationError.sequenceTooLong(row: 0, length: 11, context: 10)) {
            try CompletionScorer(model: model).logProbabilities(prompts: [[1, 2, 3]], continuations: [Array(repeating: 1, count: 8)])
        }
    }

    @Test("the GPT model scores the same through the shared scorer in small steps")
    func gptScoresInSteps() throws {
        let model = try GPTInferenceTests.model()
        let prompts = [[1, 2, 3], [4]]
        let continuations = [[5, 6], [7, 8, 9, 10, 11]]
        let whole = try model.logProbabilities(prompts: prompts, continuations: continuations)
        let stepped = try CompletionScorer(model: model, logitsBudget: model.vocabularySize)
            .logProbabilities(prompts: prompts, continuations: continuations)
        for (a, b) in zip(whole.joined(), stepped.joined()) { #expect(abs(a - b) < 1e-5) }
    }
}
