import Foundation

/// Log-probabilities of given completions under any ``CausalLanguageModel``, e.g. for the
/// policy-gradient ratios and KL terms of reinforcement learning.
public struct CompletionScorer<Model: CausalLanguageModel> {
    /// The model that scores.
    public let model: Model
    /// Most logits values (scored tokens × vocabulary size) one model step may return; longer
    /// batches run in several steps, which bounds memory for large vocabularies.
    public var logitsBudget: Int

    /// A scorer over `model`.
    public init(model: Model, logitsBudget: Int = 1 << 24) {
        self.model = model
        self.logitsBudget = logitsBudget
    }

    /// Log-probability of each continuation token given its prompt and the tokens before it:
    /// `result[i][j] = log p(continuations[i][j] | prompts[i] + continuations[i][..<j])`.
    ///
    /// Each prompt must be non-empty and `prompt.count + continuation.count` at most the
    /// context length; an empty continuation gives an empty result row.
    public func logProbabilities(prompts: [[Int]], continuations: [[Int]]) throws(GenerationError) -> [[Float]] {
        guard !prompts.isEmpty else { throw .emptyInput("no prompts") }
        guard prompts.count == continuations.count else {
            throw .invalidArgument("\(prompts.count) prompts but \(continuations.count) continuations")
        }
        for (row, (prompt, continuation)) in zip(prompts, continuations).enumerated() {
            guard !prompt.isEmpty else { throw .emptyInput("prompt \(row) has no tokens") }
            try model.validate(prompt + continuation, row: row, what: "sequence")
        }
        let V = model.vocabularySize
        var result = continuations.map { continuation -> [Float] in
            var row: [Float] = []
            row.reserveCapacity(continuation.count)
            return row
        }
        // Inputs are every token but the last of each scored sequence; the logits after input
        // position prompt.count - 1 + j score continuation token j.
        let capacity = zip(prompts, continuations).map { $1.isEmpty ? 1 : $0.count + $1.count - 1 }.max() ?? 1
        let cache = model.makeCache(rows: prompts.count, capacity: capacity)
        let maxScored = max(1, logitsBudget / max(V, 1))
        var rows: [Int] = [], tokens: [Int32] = [], want: [Int] = [], targets: [(row: Int, token: Int)] = []

        func flush() {
            guard !rows.isEmpty else { return }
            let logits = model.step(cache: cache, rows: rows, tokens: tokens, want: want)
            logits.withUnsafeBufferPointer { buffer in
                guard let base = buffer.baseAddress else { return }
                for (j, target) in targets.enumerated() {
                    result[target.row].append(Self.logSoftmax(base + j * V, count: V, at: target.token))
                }
            }
            rows.removeAll(keepingCapacity: true)
            tokens.removeAll(keepingCapacity: true)
            want.removeAll(keepingCapacity: true)
            targets.removeAll(keepingCapacity: true)
        }

        for (row, (prompt, continuation)) in zip(prompts, continuations).enumerated() where !continuation.isEmpty {
            let sequence = prompt + continuation
            for position in 0..<(sequence.count - 1) {
                rows.append(row)
                tokens.append(Int32(sequence[position]))
                if position >= prompt.count - 1 {
                    want.append(rows.count - 1)
                    targets.append((row, sequence[position + 1]))
                    if want.count == maxScored { flush() }
                }
            }
        }
        flush()
        return result
    }

    /// `log softmax(x)[index]`, with the normaliser summed in double precision.
    static func logSoftmax(_ x: UnsafePointer<Float>, count: Int, at index: Int) -> Float {
        var mx = -Float.infinity
        for i in 0..<count where x[i] > mx { mx = x[i] }
        var sum: Double = 0
        for i in 0..<count { sum += Double(expf(x[i] - mx)) }
        return x[index] - mx - Float(log(sum))
    }
}

extension CompletionScorer: Sendable where Model: Sendable {}
