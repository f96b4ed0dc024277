/// How ``BatchedGenerator`` chooses tokens and when it stops.
public struct SamplingOptions: Sendable, Equatable {
    /// Most tokens generated per row.
    public var maxTokens: Int
    /// Softmax temperature; 0 means greedy (arg-max) decoding.
    public var temperature: Float
    /// Keep only the `topK` most likely tokens (0 disables).
    public var topK: Int
    /// Keep the smallest set of most likely tokens whose probability reaches `topP` (1 disables).
    public var topP: Float
    /// Generation of a row stops when its output ends with one of these token sequences; the
    /// stop sequence itself is not part of the output and is never streamed.
    public var stopSequences: [[Int]]
    /// Seed of the sampler; row `i` uses its own stream derived from `seed` and `i`, so a row's
    /// output does not depend on the other rows of the batch.
    public var seed: UInt64
    /// Discourages tokens the row has already generated: their logits are divided by this
    /// when positive and multiplied when negative before sampling (1 disables; must be >= 1).
    public var repetitionPenalty: Float

    public init(maxTokens: Int = 64, temperature: Float = 1, topK: Int = 0, topP: Float = 1,
                stopSequences: [[Int]] = [], seed: UInt64 = 0, repetitionPenalty: Float = 1) {
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.stopSequences = stopSequences
        self.seed = seed
        self.repetitionPenalty = repetitionPenalty
    }

    /// Throws ``GenerationError/invalidArgument(_:)`` for an option out of range.
    public func validate() throws(GenerationError) {
        guard maxTokens >= 0 else { throw .invalidArgument("maxTokens must be >= 0, got \(maxTokens)") }
        guard temperature >= 0, temperature.isFinite else {
            throw .invalidArgument("temperature must be finite and >= 0, got \(temperature)")
        }
        guard topK >= 0 else { throw .invalidArgument("topK must be >= 0, got \(topK)") }
        guard topP > 0, topP <= 1 else { throw .invalidArgument("topP must be in (0, 1], got \(topP)") }
        guard stopSequences.allSatisfy({ !$0.isEmpty }) else {
            throw .invalidArgument("stop sequences must not be empty")
        }
        guard repetitionPenalty >= 1, repetitionPenalty.isFinite else {
            throw .invalidArgument("repetitionPenalty must be finite and >= 1, got \(repetitionPenalty)")
        }
    }
}

/// Why a row stopped generating.
public enum FinishReason: Sendable, Equatable {
    /// `maxTokens` tokens were produced.
    case maxTokens
    /// The output ended with a stop sequence (removed from `tokens`).
    case stopSequence
    /// The sequence filled the model's context.
    case contextFull
    /// The caller's `shouldStop` ended generation.
    case cancelled
}

/// The output of one prompt.
public struct GenerationResult: Sendable, Equatable {
    /// Generated token ids (prompt and stop sequence excluded).
    public var tokens: [Int]
    /// Why generation stopped.
    public var finishReason: FinishReason
    /// With finish reason `.stopSequence`, the index in `options.stopSequences` of the stop
    /// sequence that ended the row (removed from `tokens`); nil otherwise.
    public var stopSequenceIndex: Int? = nil

    public init(tokens: [Int], finishReason: FinishReason, stopSequenceIndex: Int? = nil) {
        self.tokens = tokens
        self.finishReason = finishReason
        self.stopSequenceIndex = stopSequenceIndex
    }
}
