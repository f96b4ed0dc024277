import CURecTensor

/// Generates continuations of a batch of prompts with any ``CausalLanguageModel``, all rows
/// advancing together through one key/value cache.
///
/// Per token and row: the repetition penalty, then greedy choice or sampling (temperature,
/// top-k, top-p) from the row's own seeded stream; a row stops at `maxTokens`, at a stop
/// sequence (removed from its output), when its sequence fills the context, or when the
/// caller cancels.
public struct BatchedGenerator<Model: CausalLanguageModel> {
    /// The model that scores each step.
    public let model: Model

    /// A generator driving `model`.
    public init(model: Model) {
        self.model = model
    }

    /// Generates continuations of `prompts`.
    ///
    /// - Parameters:
    ///   - prompts: token ids per row (each non-empty, at most the context length).
    ///   - options: temperature, top-k, top-p, repetition penalty, stop sequences, token limit
    ///     and seed.
    ///   - onToken: called with `(row, token)` for each token as soon as it is final (tokens
    ///     that might begin a stop sequence are held back until that is decided), e.g. to
    ///     stream text.
    ///   - shouldStop: polled before the prefill and before each token; returning true ends
    ///     every row (finish reason `.cancelled`), e.g. when the caller's deadline passed.
    /// - Returns: one ``GenerationResult`` per prompt.
    public func generate(
        prompts: [[Int]], options: SamplingOptions,
        onToken: (_ row: Int, _ token: Int) -> Void = { _, _ in },
        shouldStop: () -> Bool = { false }
    ) throws(GenerationError) -> [GenerationResult] {
        guard !prompts.isEmpty else { throw .emptyInput("no prompts") }
        for (row, prompt) in prompts.enumerated() { try model.validate(prompt, row: row) }
        try options.validate()
        let B = prompts.count, V = model.vocabularySize, context = model.contextLength
        var results = prompts.map { _ in GenerationResult(tokens: [], finishReason: .maxTokens) }
        if options.maxTokens == 0 { return results }
        // The caller may be gone already: skip the prefill, the costliest single step.
        if shouldStop() { return prompts.map { _ in GenerationResult(tokens: [], finishReason: .cancelled) } }
        // Room for the longest prompt and every fed token, never beyond the context.
        let longest = prompts.map(\.count).max() ?? 1
        let capacity = options.maxTokens >= context ? context : min(context, longest + options.maxTokens)
        let cache = model.makeCache(rows: B, capacity: capacity)
        var sampler = TokenSampler(options: options, vocabularySize: V)
        var rngs = (0..<B).map { Xoshiro256(seed: options.seed &+ UInt64($0) &* 0x9E37_79B9_7F4A_7C15) }
        var emitted = [Int](repeating: 0, count: B)

        // Prefill: all prompt tokens of all rows in one step; logits of each row's last token.
        var rows: [Int] = [], tokens: [Int32] = [], want: [Int] = []
        for (b, prompt) in prompts.enumerated() {
            for token in prompt {
                rows.append(b)
                tokens.append(Int32(token))
            }
            want.append(rows.count - 1)
        }
        var logits = model.step(cache: cache, rows: rows, tokens: tokens, want: want)
        var stepRows = Array(0..<B)   // the rows whose logits the last step returned, in order
        while true {
            if shouldStop() {
                for b in stepRows { results[b].finishReason = .cancelled }
                break
            }
            var nextRows: [Int] = [], nextTokens: [Int32] = []
            for (j, b) in stepRows.enumerated() {
                let token = logits.withUnsafeMutableBufferPointer { buffer -> Int in
                    guard let base = buffer.baseAddress else { return 0 }
                    sampler.penalise(base + j * V, previous: results[b].tokens)
                    return sampler.sample(base + j * V, rng: &rngs[b])
                }
                results[b].tokens.append(token)
                var finish: FinishReason?
                var hold = 0
                if let stopIndex = options.stopSequences.firstIndex(where: { results[b].tokens.ends(with: $0) }) {
                    results[b].tokens.removeLast(options.stopSequences[stopIndex].count)
                    results[b].stopSequenceIndex = stopIndex
                    finish = .stopSequence
                } else if results[b].tokens.count >= options.maxTokens {
                    finish = .maxTokens
                } else if cache.lengths[b] >= context {
                    finish = .contextFull
                } else {
                    hold = Self.pendingStopPrefix(results[b].tokens, options.stopSequences)
                }
                let final = results[b].tokens.count - hold
                while emitted[b] < final {
                    onToken(b, results[b].tokens[emitted[b]])
                    emitted[b] += 1
                }
                if let finish {
                    results[b].finishReason = finish
                } else {
                    nextRows.append(b)
                    nextTokens.append(Int32(token))
                }
            }
            if nextRows.isEmpty { break }
            logits = model.step(cache: cache, rows: nextRows, tokens: nextTokens, want: Array(nextRows.indices))
            stepRows = nextRows
        }
        return results
    }

    /// Length of the longest suffix of `tokens` that is a proper prefix of a stop sequence.
    static func pendingStopPrefix(_ tokens: [Int], _ stops: [[Int]]) -> Int {
        var best = 0
        for stop in stops {
            var n = min(stop.count - 1, tokens.count)
            while n > best {
                if tokens.suffix(n).elementsEqual(stop.prefix(n)) {
                    best = n
                    break
                }
                n -= 1
            }
        }
        return best
    }
}

extension Array where Element: Equatable {
    /// Whether the array ends with `suffix`.
    func ends(with suffix: [Element]) -> Bool {
        suffix.count <= count && self.suffix(suffix.count).elementsEqual(suffix)
    }
}

extension BatchedGenerator: Sendable where Model: Sendable {}
