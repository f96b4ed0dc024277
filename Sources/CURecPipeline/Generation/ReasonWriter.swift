import CURecModels
import Foundation

/// Errors of writing reasons with the language model.
public enum ReasonWriterError: Error, CustomStringConvertible, Sendable {
    /// The answer budget leaves no room for a prompt in the model's context.
    case noRoomForPrompt(maxTokens: Int, context: Int)
    /// The model refused the batch (e.g. a token outside its vocabulary).
    case generationFailed(String)
    /// The caller asked to stop.
    case cancelled

    public var description: String {
        switch self {
        case .noRoomForPrompt(let maxTokens, let context):
            return "an answer budget of \(maxTokens) tokens leaves no room for the prompt in a context of \(context) tokens"
        case .generationFailed(let detail): return "reason generation failed: \(detail)"
        case .cancelled: return "reason generation was cancelled"
        }
    }
}

/// One written answer: the whole completion (reasoning steps and reason block) and the
/// reason extracted from it.
public struct WrittenReason: Sendable, Hashable {
    /// Completion token ids (without the stop sequence).
    public var tokens: [Int]
    /// The decoded completion.
    public var completion: String
    /// The text of the reason block; empty when the model wrote none.
    public var reason: String
}

/// Writes reasons with a ``ReasonLanguageModel`` for prompts in the corpus format: encodes
/// the prompt as the model reads it and fits it to the context, samples until the end of the
/// answer, and extracts the text of the reason block.
public struct ReasonWriter: @unchecked Sendable {
    /// The language model (not thread-safe: one writer per thread).
    public let languageModel: any ReasonLanguageModel
    /// Answer budget in tokens (reasoning steps plus reason).
    public let maxTokens: Int
    /// Rows generated together.
    public let batchSize: Int
    /// Repetition penalty of every write (see ``SamplingOptions/repetitionPenalty``); a
    /// small LM decoding greedily otherwise tends to loop.
    public let repetitionPenalty: Float
    /// Tokens of the second pass that writes the reason of an answer whose reasoning ran out
    /// of budget (or ended) before the reason marker: the marker is appended and the model
    /// continues from it. 0: no second pass.
    public var reasonTokens = 64

    /// - Parameters:
    ///   - maxTokens: the answer budget; at most the context minus 16 prompt tokens.
    ///   - batchSize: rows per `generate` call (>= 1).
    ///   - repetitionPenalty: >= 1; 1 disables it.
    public init(languageModel: any ReasonLanguageModel, maxTokens: Int, batchSize: Int = 32,
                repetitionPenalty: Float = 1) throws(ReasonWriterError) {
        guard maxTokens >= 1, languageModel.contextLength - maxTokens >= 16 else {
            throw .noRoomForPrompt(maxTokens: maxTokens, context: languageModel.contextLength)
        }
        guard repetitionPenalty >= 1, repetitionPenalty.isFinite else {
            throw .generationFailed("repetitionPenalty must be finite and >= 1, got \(repetitionPenalty)")
        }
        self.repetitionPenalty = repetitionPenalty
        self.languageModel = languageModel
        self.maxTokens = maxTokens
        self.batchSize = max(1, batchSize)
    }

    /// A writer for the built-in GPT and its tokenizer.
    public init(model: GPTModel, tokenizer: BPETokenizer, maxTokens: Int, batchSize: Int = 32,
                repetitionPenalty: Float = 1) throws(ReasonWriterError) {
        try self.init(languageModel: GPTReasonModel(model: model, tokenizer: tokenizer), maxTokens: maxTokens,
                      batchSize: batchSize, repetitionPenalty: repetitionPenalty)
    }

    /// The prompt's token ids, shortened so `maxTokens` of answer fit the context.
    public func promptTokens(_ prompt: String) -> [Int] {
        languageModel.promptTokens(prompt, limit: languageModel.contextLength - maxTokens)
    }

    /// Token sequences that end an answer.
    public var stopSequences: [[Int]] { languageModel.stopSequences }

    /// The stop sequences of a corpus-trained GPT: the end marker (as one token and as text)
    /// and the end-of-text token that separates training examples.
    public static func stopSequences(_ tokenizer: BPETokenizer) -> [[Int]] {
        var stops: [[Int]] = []
        if let endOfText = tokenizer.id(of: AlignmentPretraining.endOfText) { stops.append([Int(endOfText)]) }
        if let end = tokenizer.id(of: CorpusExample.Marker.end) { stops.append([Int(end)]) }
        let endTokens = tokenizer.encode(CorpusExample.Marker.end).map(Int.init)
        if !endTokens.isEmpty && !stops.contains(endTokens) { stops.append(endTokens) }
        return stops
    }

    /// The reason block of a completion: text after the reason marker, up to the end marker.
    public static func extractReason(from completion: String) -> String {
        // The marker line itself: "### Reason" followed by a line break, not "### Reasoning".
        guard let start = completion.range(of: CorpusExample.Marker.reason + "\n") else { return "" }
        var tail = completion[start.upperBound...]
        if let stop = tail.range(of: CorpusExample.Marker.end) { tail = tail[..<stop.lowerBound] }
        if let marker = tail.range(of: "###") { tail = tail[..<marker.lowerBound] }
        if let marker = tail.range(of: AlignmentPretraining.endOfText) { tail = tail[..<marker.lowerBound] }
        if let marker = tail.range(of: "<|im_end|>") { tail = tail[..<marker.lowerBound] }
        return tail.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The second pass: for each answer without a reason block, the reason marker is put after
    /// its reasoning (cut back to its last whole line) and the model writes the reason from
    /// there, up to ``reasonTokens`` tokens.
    func completeReasons(_ answers: inout [WrittenReason], prompts: [[Int]], temperature: Float, topK: Int, seed: UInt64,
                         isCancelled: () -> Bool) throws(ReasonWriterError) {
        guard reasonTokens > 0 else { return }
        let marker = languageModel.encodeText("\n" + CorpusExample.Marker.reason + "\n")
        var rows: [Int] = [], continued: [[Int]] = [], heads: [[Int]] = []
        for (row, answer) in answers.enumerated() where answer.reason.isEmpty {
            // Keep whole lines of reasoning; drop a line cut by the budget.
            var head = answer.tokens
            if let lastBreak = head.lastIndex(where: { languageModel.decode([$0]).contains("\n") }) {
                head = Array(head[..<lastBreak])
            } else {
                head = []
            }
            let sequence = prompts[row] + head + marker
            guard sequence.count + reasonTokens <= languageModel.contextLength else { continue }
            rows.append(row)
            continued.append(sequence)
            heads.append(head + marker)
        }
        guard !rows.isEmpty else { return }
        if isCancelled() { throw .cancelled }
        let options = SamplingOptions(maxTokens: reasonTokens, temperature: temperature, topK: topK, topP: 1,
                                      stopSequences: stopSequences, seed: seed, repetitionPenalty: repetitionPenalty)
        let generations: [GenerationResult]
        do {
            generations = try languageModel.sample(prompts: continued, options: options, shouldStop: isCancelled)
        } catch {
            throw .generationFailed("\(error)")
        }
        if generations.contains(where: { $0.finishReason == .cancelled }) { throw .cancelled }
        for (index, row) in rows.enumerated() {
            answers[row] = written(heads[index] + generations[index].tokens)
        }
    }

    /// Decodes completion tokens into a ``WrittenReason``.
    public func written(_ tokens: [Int]) -> WrittenReason {
        let text = languageModel.decode(tokens)
        return WrittenReason(tokens: tokens, completion: text, reason: Self.extractReason(from: text))
    }

    /// Writes one answer per prompt (in order), `batchSize` rows at a time.
    ///
    /// - Parameters:
    ///   - temperature: 0 for greedy (deterministic), else sampling with `topK`.
    ///   - seed: sampling seed; row `r` of the call uses a seed derived from it and `r`.
    ///   - progress: called with `(done, total)` after each batch.
    public func write(prompts: [String], temperature: Float = 0, topK: Int = 0, seed: UInt64 = 0,
                      progress: (Int, Int) -> Void = { _, _ in },
                      isCancelled: () -> Bool = { false }) throws(ReasonWriterError) -> [WrittenReason] {
        var results: [WrittenReason] = []
        results.reserveCapacity(prompts.count)
        let stops = stopSequences
        var start = 0
        while start < prompts.count {
            if isCancelled() { throw .cancelled }
            let end = min(prompts.count, start + batchSize)
            let batch = prompts[start..<end].map(promptTokens)
            let options = SamplingOptions(maxTokens: maxTokens, temperature: temperature, topK: topK, topP: 1,
                                          stopSequences: stops, seed: seed &+ UInt64(start) &* 0x2545_F491_4F6C_DD1D,
                                          repetitionPenalty: repetitionPenalty)
            let generations: [GenerationResult]
            do {
                generations = try languageModel.sample(prompts: batch, options: options, shouldStop: isCancelled)
            } catch {
                throw .generationFailed("\(error)")
            }
            if generations.contains(where: { $0.finishReason == .cancelled }) { throw .cancelled }
            var answers = generations.map { written($0.tokens) }
            try completeReasons(&answers, prompts: batch, temperature: temperature, topK: topK,
                                seed: seed &+ UInt64(start) &* 0x9E37_79B9_7F4A_7C15, isCancelled: isCancelled)
            results.append(contentsOf: answers)
            start = end
            progress(start, prompts.count)
        }
        return results
    }
}
